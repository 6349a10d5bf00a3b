"""The production loop in a real server on loopback: the request log (masked, never the API
key), the answer cache for student answers and escalations, drift in /metrics, the serve
flags."""

from __future__ import annotations

import re

import httpx
import pytest

from edge_runtime.request_log import LogSettings, log_files, read_log
from tests.edge_runtime.conftest import LiveServer
from tests.edge_runtime.test_drift import _run_with_inputs
from tests.edge_runtime.test_server import _teacher_app
from edge_runtime.server_settings import ServerSettings

AUTH = {"Authorization": "Bearer sekret"}


@pytest.fixture(scope="module")
def drift_bundle(tmp_path_factory, gemma_gguf):
    from edge_runtime.bundle import pack_run

    root = tmp_path_factory.mktemp("prod")
    return pack_run(_run_with_inputs(root, gemma_gguf), "router-8gb", root / "bundle")


def test_log_cache_and_drift_in_a_live_server(drift_bundle, tmp_path, capsys):
    from edge_runtime.production import LoopSettings
    from edge_runtime.server import create_app

    logdir = tmp_path / "log"
    with LiveServer(_teacher_app({"label": "negative"})) as teacher:
        app = create_app(drift_bundle, ServerSettings(api_key="sekret", n_threads=2, teacher_url=teacher.url + "/v1",
                         loop=LoopSettings(log=LogSettings(logdir, inputs="masked", flush_interval_s=0.05),
                                           drift_window=8, drift_min_samples=4)))
        with LiveServer(app) as live:
            def ask(text):
                r = httpx.post(live.url + "/v1/tasks/sentiment", json={"input": text}, headers=AUTH, timeout=120)
                assert r.status_code == 200, r.text
                return r.json()

            first = ask("Loved it. Write to jane.doe@example.com")
            again = ask("  Loved it.   Write to jane.doe@example.com\n")
            assert "cached" not in first and again["cached"] is True and again["answer"] == first["answer"]
            assert again["latency_s"] == 0.0 and again["id"] != first["id"]

            app.state.router.threshold = 1.01  # every student answer now escalates: a new cache key
            esc = ask("Loved it. Write to jane.doe@example.com")
            assert esc["source"] == "teacher" and esc.get("cached") is None and teacher.app.state.calls == 1
            esc2 = ask("Loved it. Write to jane.doe@example.com")
            assert esc2["cached"] and esc2["answer"] == {"label": "negative"} and esc2["cost_usd"] == 0.0
            assert teacher.app.state.calls == 1  # the escalation was not paid twice

            for _ in range(4):  # traffic unlike the training reviews
                ask("订单号 20240501 金额 999 元，请尽快发货")
            metrics = httpx.get(live.url + "/metrics", headers=AUTH).text
        app.state.close()
    for line in ("edge_answer_cache_hits_total 5.0", "edge_answer_cache_misses_total 3.0", "edge_drift_flag 1.0",
                 'edge_request_log_records_total{outcome="dropped"} 0.0'):
        assert line in metrics, line
    saved = next(ln for ln in metrics.splitlines() if ln.startswith("edge_answer_cache_saved_seconds_total"))
    assert float(saved.split()[1]) > 0
    assert 'edge_drift_psi{feature="char_class"}' in metrics
    # 6 answers came from the teacher (2 inputs, 4 cache hits); it was asked twice
    assert "edge_escalations_total 2.0" in metrics and teacher.app.state.calls == 2

    recs = list(read_log(logdir))
    assert [r["id"] for r in recs[:4]] == [first["id"], again["id"], esc["id"], esc2["id"]] and len(recs) == 8
    assert [r["source"] for r in recs[:4]] == ["student", "cache", "teacher", "cache"]
    assert recs[0]["input"] == "Loved it. Write to [EMAIL]" and recs[0]["input_mode"] == "masked"
    assert recs[2]["escalated"] and recs[2]["teacher_answer"] == {"label": "negative"}
    assert not recs[3]["escalated"] and recs[3]["cached"] and recs[3]["teacher_answer"] == {"label": "negative"}
    assert recs[2]["student_answer"]["label"] in ("positive", "negative") and recs[2]["valid"]
    assert recs[0]["bundle"] == recs[7]["bundle"] and len(recs[0]["bundle"]) == 64
    raw = b"".join(p.read_bytes() for p in log_files(logdir))
    assert b"jane.doe" not in raw and b"sekret" not in raw

    # the report reads the same log; with the bundle it shows the drift too
    from edge_runtime.cli import main

    assert main(["report", str(logdir), "--bundle", str(drift_bundle), "--no-html"]) == 0
    out = capsys.readouterr().out
    table = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in out.strip().splitlines())
    assert table["requests"] == "8" and table["cache hit rate"] == "62.5%" and table["escalation rate"] == "25.0%"
    assert table["drift"].startswith("DRIFTED") and "char_class" in table["drift"]


def test_serve_flags_become_loop_settings(tmp_path):
    from edge_runtime.cli import build_parser
    from edge_runtime.production import settings_from_flags

    p = build_parser()
    a = p.parse_args(["serve", "b", "--log-dir", str(tmp_path), "--log-inputs", "hash", "--log-max-file-mb", "1",
                      "--log-max-total-mb", "4", "--no-answer-cache", "--drift-threshold", "0.3", "--drift-window", "100"])
    s = settings_from_flags(a)
    assert (s.log.inputs, s.log.max_file_bytes, s.log.max_total_bytes) == ("hash", 2**20, 4 * 2**20)
    assert (s.answer_cache, s.drift_threshold, s.drift_window, s.drift_alpha) == (False, 0.3, 100, 0.001)
    d = settings_from_flags(p.parse_args(["serve", "b"]))
    assert d.log is None and d.answer_cache and d.drift_threshold == 0.2
    with pytest.raises(SystemExit):
        p.parse_args(["serve", "b", "--log-inputs", "raw"])
    with pytest.raises(ValueError, match="--drift-threshold must be > 0"):
        settings_from_flags(p.parse_args(["serve", "b", "--drift-threshold", "0"]))
