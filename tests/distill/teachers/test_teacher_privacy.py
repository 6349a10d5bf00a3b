"""teacher.privacy on the training side (issue #18 item 7), against real loopback teachers:
what the teacher receives is checked byte for byte; the audit log against the calls made."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
import yaml

from distill.cli import main as distill_main
from distill.teachers import audit_path, run_teach
from distill.teachers.loopback import FaultProxy, RecordingServer
from edge_runtime.privacy import read_audit

CONTACT = {"name": "contact", "kind": "extraction", "input_field": "text",
           "instructions": "Extract the phone number and the email.", "fields": {"phone": {}, "email": {}}}
TEXTS = ["请联系李伟 手机 13812345678，邮箱 li.wei@example.com", "Call +44 20 7946 0958 or mail bob@example.org",
         "身份证 11010519491231002X 卡号 4111 1111 1111 1111", "nothing private in this one"]
SECRETS = ["13812345678", "li.wei@example.com", "7946 0958", "bob@example.org", "11010519491231002X", "4111 1111 1111 1111"]


def _echo(request: dict) -> str:
    """Extracts what sits where a phone and an email would be (placeholders or values)."""
    prompt = request["messages"][-1]["content"].split("Input")[-1]
    phone = re.search(r"\[PHONE_\d+\]|1[3-9]\d{9}|\+\d[\d ]+\d", prompt)
    email = re.search(r"\[EMAIL_\d+\]|[\w.]+@[\w.]+\w", prompt)
    return json.dumps({"phone": phone.group(0) if phone else "", "email": email.group(0) if email else ""})


def teacher(url, **privacy):
    return {"kind": "openai", "base_url": url, "model": "deepseek-chat", "max_tokens": 64, "max_retries": 3,
            "backoff_s": 0.01, "privacy": {"local_hosts": [], **privacy}}  # loopback counts as remote here


def _labelled(run):
    return {r["id"]: r["answer"] for r in map(json.loads, (run / "teach/labelled.jsonl").read_text().splitlines())}


def test_teach_masks_what_leaves_restores_the_labels_and_audits_each_call(make_recipe, tmp_path):
    with RecordingServer(_echo) as srv:
        recipe, rows, _ = make_recipe(teacher(srv.url), texts=TEXTS, task=CONTACT)
        summary = run_teach(recipe, rows, tmp_path / "run" / "teach")
    sent = b"\n".join(srv.bodies).decode("unicode_escape")  # aiohttp sends \\u-escaped JSON: compare decoded
    assert summary["labelled"] == 4 and len(srv.bodies) == 4
    for secret in SECRETS:
        assert secret not in sent, secret
    assert "[PHONE_1]" in sent and "[EMAIL_1]" in sent and "[ID_1]" in sent and "[CARD_1]" in sent
    labels = _labelled(tmp_path / "run")
    assert labels["r000"] == {"phone": "13812345678", "email": "li.wei@example.com"}  # restored in the answer
    assert labels["r001"] == {"phone": "+44 20 7946 0958", "email": "bob@example.org"}
    audit = read_audit(audit_path(tmp_path / "run"))
    assert len(audit) == 4 and all(a["stage"] == "teach" and a["status"] == 200 and a["model"] == "deepseek-chat"
                                   for a in audit)
    assert sorted(a["sent_sha256"] for a in audit) == sorted(hashlib.sha256(b).hexdigest() for b in srv.bodies)
    assert all("content" not in a for a in audit) and sum(a["prompt_tokens"] for a in audit) == 40
    assert summary["audit_log"] == str(audit_path(tmp_path / "run"))
    raw = audit_path(tmp_path / "run").read_text()
    assert not any(s in raw for s in SECRETS) and "[PHONE_1]" not in raw


def test_retries_are_audited_one_line_per_http_call(make_recipe, tmp_path):
    with RecordingServer(_echo) as srv, FaultProxy(srv.url, faults=["500", "429", "pass"], retry_after=0) as proxy:
        recipe, rows, _ = make_recipe(teacher(proxy.url), texts=TEXTS[:1], task=CONTACT)
        run_teach(recipe, rows, tmp_path / "run" / "teach")
    audit = read_audit(audit_path(tmp_path / "run"))
    assert len(proxy.log) == 3 and [a["status"] for a in audit] == [500, 429, 200]
    assert len({a["sent_sha256"] for a in audit}) == 1  # the same masked request each time


def test_audit_content_writes_the_masked_request(make_recipe, tmp_path):
    with RecordingServer(_echo) as srv:
        recipe, rows, _ = make_recipe(teacher(srv.url, audit_content=True), texts=TEXTS[:1], task=CONTACT)
        run_teach(recipe, rows, tmp_path / "run" / "teach")
    (line,) = read_audit(audit_path(tmp_path / "run"))
    assert json.loads(line["content"]) == json.loads(srv.bodies[0]) and "[PHONE_1]" in line["content"]


def test_mask_false_sends_values_and_a_local_teacher_is_neither_masked_nor_audited(make_recipe, tmp_path):
    with RecordingServer(_echo) as srv:
        recipe, rows, _ = make_recipe(teacher(srv.url, mask=False), texts=TEXTS[:1], task=CONTACT)
        run_teach(recipe, rows, tmp_path / "a" / "teach")
        assert "13812345678" in srv.bodies[-1].decode()
        assert len(read_audit(audit_path(tmp_path / "a"))) == 1
        local = {**teacher(srv.url), "privacy": {}}  # default local_hosts: loopback is on the premises
        recipe, rows, _ = make_recipe(local, texts=TEXTS[:1], task=CONTACT)
        run_teach(recipe, rows, tmp_path / "b" / "teach")
        assert "13812345678" in srv.bodies[-1].decode()
    assert not audit_path(tmp_path / "b").exists()


def test_local_only_refuses_a_remote_teacher_at_validate(make_recipe, tmp_path, capsys):
    _, _, path = make_recipe(teacher("http://127.0.0.1:9/v1"), texts=TEXTS[:1], task=CONTACT)
    raw = yaml.safe_load(path.read_text())
    raw["teacher"].update(base_url="https://user:secret@api.deepseek.com/v1", privacy={"local_only": True})
    path.write_text(yaml.safe_dump(raw))
    assert distill_main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "teacher.privacy.local_only" in err and "api.deepseek.com" in err and "secret" not in err
    raw["teacher"].update(base_url="http://10.0.0.5:8000/v1", privacy={"local_only": True, "local_hosts": ["10.0.0.0/8"]})
    path.write_text(yaml.safe_dump(raw))
    assert distill_main(["validate", str(path)]) == 0
    assert "local_only: true" in capsys.readouterr().out


@pytest.mark.parametrize("hosts", [["10.0.0.0/99"]])
def test_a_bad_local_host_network_is_named(make_recipe, tmp_path, capsys, hosts):
    _, _, path = make_recipe(teacher("http://127.0.0.1:9/v1"), texts=TEXTS[:1], task=CONTACT)
    raw = yaml.safe_load(path.read_text())
    raw["teacher"]["privacy"] = {"local_hosts": hosts}
    path.write_text(yaml.safe_dump(raw))
    assert distill_main(["validate", str(path)]) == 2
    assert "teacher.privacy.local_hosts" in capsys.readouterr().err


def test_evals_teacher_predictor_masks_and_audits_too(make_recipe, tmp_path):
    from distill.eval.predictors import teacher_predictor

    with RecordingServer(_echo) as srv:
        recipe, rows, _ = make_recipe(teacher(srv.url), texts=TEXTS[:1], task=CONTACT)
        built = teacher_predictor(recipe, tmp_path / "run")
        try:
            pred = built.predictor.predict(rows[0])
        finally:
            built.predictor.close()
    assert "13812345678" not in srv.bodies[0].decode() and pred.answer["phone"] == "13812345678"
    (line,) = read_audit(audit_path(tmp_path / "run"))
    assert line["stage"] == "eval"


def test_an_endpoint_list_is_masked_audited_per_endpoint_and_checked_by_local_only(make_recipe, tmp_path, capsys):
    with RecordingServer(_echo) as a, RecordingServer(_echo) as b:
        recipe, rows, path = make_recipe(teacher([a.url, b.url]), texts=TEXTS + [t + " again" for t in TEXTS], task=CONTACT)
        run_teach(recipe, rows, tmp_path / "run" / "teach")
        bodies = a.bodies + b.bodies
    assert a.bodies and b.bodies and len(bodies) == 8
    assert not any("13812345678" in x.decode() for x in bodies)
    audit = read_audit(audit_path(tmp_path / "run"))
    assert sorted(line["endpoint"] for line in audit) == sorted([a.url + "/chat/completions"] * len(a.bodies)
                                                                + [b.url + "/chat/completions"] * len(b.bodies))
    raw = yaml.safe_load(path.read_text())
    raw["teacher"].update(base_url=["http://127.0.0.1:9/v1", "https://api.deepseek.com/v1"],
                          privacy={"local_only": True})
    path.write_text(yaml.safe_dump(raw))
    assert distill_main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "teacher.privacy.local_only" in err and "api.deepseek.com" in err and "127.0.0.1:9" not in err
