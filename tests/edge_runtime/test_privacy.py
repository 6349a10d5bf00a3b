"""Privacy by construction at the runtime (issue #18 items 7 and 8): a real loopback teacher
receives the escalations; what it got is checked byte for byte."""

from __future__ import annotations

import json
import re

import pytest

from distill.teachers.loopback import RecordingServer
from edge_runtime.predictor import Prediction
from edge_runtime.privacy import AuditLog, Masker, is_local, read_audit, sha256_of
from edge_runtime.router import Router, operator_teacher
from edge_runtime.task import TaskSpec
from edge_runtime.server_settings import ServerSettings

CONTACT = TaskSpec.model_validate({
    "name": "contact", "kind": "extraction", "instructions": "Extract the phone number and the email. JSON only.",
    "input_field": "text", "fields": {"phone": {}, "email": {}},
})
PHONE, EMAIL, CN_ID = "13812345678", "li.wei@example.com", "11010519491231002X"
TEXT = f"请联系李伟 手机 {PHONE}，邮箱 {EMAIL}，身份证 {CN_ID}。"


def _echo(request: dict) -> str:
    """A teacher that extracts whatever sits where a phone and an email would be."""
    prompt = request["messages"][-1]["content"]
    phone = re.search(r"\[PHONE_\d+\]|1[3-9]\d{9}", prompt)
    email = re.search(r"\[EMAIL_\d+\]|[\w.]+@[\w.]+", prompt)
    return json.dumps({"phone": phone.group(0) if phone else "", "email": email.group(0) if email else ""})


@pytest.fixture()
def teacher():
    with RecordingServer(_echo) as server:
        yield server


def _low(answer=None) -> Prediction:
    return Prediction(answer=answer or {"phone": "", "email": ""}, raw="", confidence=0.1)


# ---- the masker alone ---------------------------------------------------------------------
def test_masker_numbers_values_and_restores_them():
    m = Masker()
    masked = m.mask(f"{TEXT} again {PHONE}")
    assert PHONE not in masked and EMAIL not in masked and CN_ID not in masked
    assert masked.count("[PHONE_1]") == 2 and "[EMAIL_1]" in masked and "[ID_1]" in masked
    assert m.restore(masked) == f"{TEXT} again {PHONE}"
    assert m.restore("PHONE_1 and [PHONE_9]") == f"{PHONE} and [PHONE_9]"  # brackets dropped by a teacher; unknown kept
    assert m.masked == {"PHONE": 1, "EMAIL": 1, "ID": 1}


def test_is_local_takes_names_addresses_and_networks():
    assert is_local("http://127.0.0.1:8000/v1") and is_local("http://localhost/v1")
    assert not is_local("https://api.deepseek.com/v1")
    assert is_local("http://10.1.2.3:8000/v1", ["10.0.0.0/8"]) and not is_local("http://11.1.2.3/v1", ["10.0.0.0/8"])
    assert not is_local("http://127.0.0.1:8000/v1", [])


# ---- escalation through a real loopback teacher ------------------------------------------
def test_escalation_masks_what_is_sent_restores_the_answer_and_audits(teacher, tmp_path):
    audit = tmp_path / "audit.jsonl"
    t = operator_teacher({}, teacher.url, "deepseek-chat", local_hosts=(), audit_log=str(audit))  # loopback counts as remote
    router = Router(CONTACT, 0.5, t)
    body = router.route({"text": TEXT}, _low())
    sent = b"".join(teacher.bodies)
    assert len(teacher.bodies) == 1
    for value in (PHONE, EMAIL, CN_ID):
        assert value.encode() not in sent and json.dumps(value)[1:-1].encode() not in sent
    assert b"[PHONE_1]" in sent
    assert body["source"] == "teacher" and body["answer"] == {"phone": PHONE, "email": EMAIL}  # restored
    lines = read_audit(audit)
    assert len(lines) == 1
    line = lines[0]
    assert line["stage"] == "escalation" and line["model"] == "deepseek-chat" and line["status"] == 200
    assert line["sent_sha256"] == sha256_of(teacher.bodies[0]) and line["prompt_tokens"] == 10
    assert line["masked"] == {"PHONE": 1, "EMAIL": 1, "ID": 1} and "content" not in line
    raw = audit.read_text()
    assert PHONE not in raw and "[PHONE_1]" not in raw  # neither the value nor the masked content


def test_escalation_is_priced_from_the_shared_table(teacher):
    """Item 8: no price flags, a listed model: the cost is the list price, not $0."""
    t = operator_teacher({}, teacher.url, "deepseek-chat")
    assert "deepseek-chat" in t.price_source
    router = Router(CONTACT, 0.5, t)
    body = router.route({"text": "nothing private here"}, _low())
    expected = (10 * 0.27 + 5 * 1.10) / 1e6
    assert router.stats.cost_usd == pytest.approx(expected) and body["cost_usd"] == round(expected, 6) > 0
    assert operator_teacher({}, teacher.url, "my-own-model").usd_per_1k_input == 0.0  # not listed: $0, said so
    assert operator_teacher({}, teacher.url, "deepseek-chat", None, 1.0, 2.0).usd_per_1k_output == pytest.approx(0.002)


def test_a_local_teacher_gets_the_text_as_is_and_no_audit(teacher, tmp_path):
    audit = tmp_path / "audit.jsonl"
    router = Router(CONTACT, 0.5, operator_teacher({}, teacher.url, "m", audit_log=str(audit)))
    router.route({"text": TEXT}, _low())
    assert PHONE.encode() in teacher.bodies[0]
    assert audit.read_text() == ""


def test_no_teacher_mask_sends_the_values_but_still_audits(teacher, tmp_path):
    audit = tmp_path / "a.jsonl"
    t = operator_teacher({}, teacher.url, "m", mask=False, local_hosts=(), audit_log=str(audit), audit_content=True)
    Router(CONTACT, 0.5, t).route({"text": TEXT}, _low())
    assert PHONE.encode() in teacher.bodies[0]
    assert read_audit(audit)[0]["content"] == teacher.bodies[0].decode()


def test_an_unreachable_teacher_is_audited_too(tmp_path):
    audit = tmp_path / "a.jsonl"
    t = operator_teacher({}, "http://127.0.0.1:9/v1", "m", local_hosts=(), audit_log=str(audit))
    body = Router(CONTACT, 0.5, t).route({"text": TEXT}, _low())
    assert body["source"] == "student" and "escalation_error" in body
    (line,) = read_audit(audit)
    assert line["status"] == 0 and line["error"] == "ConnectError"


def test_audit_log_refuses_a_directory(tmp_path):
    with pytest.raises(ValueError, match="is a directory"):
        AuditLog(tmp_path)


def test_serve_flags(tmp_path):
    from edge_runtime.cli import _privacy_flags, build_parser

    a = build_parser().parse_args(["serve", "b", "--no-teacher-mask", "--teacher-local-host", "10.0.0.0/8",
                                   "--audit-log", str(tmp_path / "x.jsonl")])
    assert _privacy_flags(a) == {"mask": False, "local_hosts": ("10.0.0.0/8",), "audit_log": str(tmp_path / "x.jsonl"),
                                 "audit_content": False}
    bad = build_parser().parse_args(["serve", "b", "--teacher-local-host", "10.0.0.0/99"])
    with pytest.raises(ValueError, match="--teacher-local-host"):
        _privacy_flags(bad)


def test_serve_masks_audits_and_prices_escalations_end_to_end(tmp_path, gemma_gguf):
    """The real server, the real Gemma bundle (every answer below its threshold), flags as the
    CLI parses them: the teacher never sees the mobile number, the client gets the teacher's
    answer, the audit log has the call, and the escalation is priced from the table."""
    import httpx

    from edge_runtime.bundle import pack_run
    from edge_runtime.cli import _privacy_flags, build_parser
    from edge_runtime.server import create_app
    from tests.edge_runtime.conftest import SENTIMENT, LiveServer, make_run_dir

    bundle = pack_run(make_run_dir(tmp_path, gemma_gguf, SENTIMENT, threshold=1.01), "router-8gb", tmp_path / "b")
    with RecordingServer(lambda req: json.dumps({"label": "negative"})) as teacher:
        a = build_parser().parse_args(["serve", str(bundle), "--teacher-url", teacher.url, "--teacher-model",
                                       "deepseek-chat", "--teacher-local-host", "example.invalid",
                                       "--audit-log", str(tmp_path / "audit.jsonl")])
        app = create_app(bundle, ServerSettings(n_threads=2, teacher_url=a.teacher_url, teacher_model=a.teacher_model,
                         teacher_privacy=_privacy_flags(a)))
        with LiveServer(app) as live:
            r = httpx.post(live.url + "/v1/tasks/sentiment", json={"input": f"Awful, call me on {PHONE} now."}, timeout=120)
            metrics = httpx.get(live.url + "/metrics").text
    body = r.json()
    assert r.status_code == 200 and body["source"] == "teacher" and body["answer"] == {"label": "negative"}
    assert len(teacher.bodies) == 1 and PHONE.encode() not in teacher.bodies[0] and b"[PHONE_1]" in teacher.bodies[0]
    (line,) = read_audit(tmp_path / "audit.jsonl")
    assert line["stage"] == "escalation" and line["sent_sha256"] == sha256_of(teacher.bodies[0])
    cost = float(re.search(r"^edge_escalation_cost_usd_total (\S+)$", metrics, re.M).group(1))
    assert cost == pytest.approx((10 * 0.27 + 5 * 1.10) / 1e6)


def test_an_unwritable_audit_log_fails_the_escalation_not_the_request(teacher, tmp_path):
    audit = tmp_path / "a.jsonl"
    t = operator_teacher({}, teacher.url, "m", local_hosts=(), audit_log=str(audit))
    t.audit.close()  # its descriptor is gone: every write fails
    body = Router(CONTACT, 0.5, t).route({"text": TEXT}, _low())
    assert body["source"] == "student" and body["escalation_error"] == "escalation unavailable"
