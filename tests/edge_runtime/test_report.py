"""`edge-runtime report LOGDIR`: the table and the HTML page from a log the real writer wrote."""

from __future__ import annotations

import json
import re
import sys

import pytest

from edge_runtime.cli import main
from edge_runtime.report import wilson
from edge_runtime.request_log import LogSettings, RequestLog


@pytest.fixture()
def logdir(tmp_path):
    log = RequestLog(LogSettings(tmp_path / "log", inputs="hash", flush_interval_s=0.01))
    for i in range(20):
        rec = {"id": f"task-{i}", "task": "sentiment", "bundle": "b" * 64, "input": f"text {i}",
               "answer": {"label": "positive"}, "confidence": 0.5 if i < 10 else 1.0, "valid": i != 0,
               "escalated": i % 5 == 0, "cached": i in (7, 8), "total_s": (i + 1) / 100,
               "cost_usd": 0.01 if i % 5 == 0 else 0.0}
        if i < 10:
            rec["shadow"] = {"agree": i < 8}
        log.record(rec)
    log.close()
    return tmp_path / "log"


def test_table_and_page(logdir, capsys):
    assert main(["report", str(logdir)]) == 0
    out, err = capsys.readouterr()
    lines = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in out.strip().splitlines())
    assert lines["requests"] == "20" and lines["escalation rate"] == "20.0%" and lines["cache hit rate"] == "10.0%"
    assert lines["mean confidence"] == "0.750" and lines["schema-valid"] == "95.0%"
    assert lines["latency p50"] == "100 ms" and lines["latency p95"] == "190 ms" and lines["teacher cost"] == "$0.0400"
    lo, hi = wilson(8, 10)
    assert lines["shadow agreement"] == f"80.0% (95% CI {100 * lo:.1f}-{100 * hi:.1f}%, n=10)"
    page = (logdir / "report.html").read_text()
    assert "<table>" in page and "data:image/png;base64," in page and "page written" in err
    assert main(["report", str(logdir), "--json", "--no-html"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["shadow"]["n"] == 10 and summary["escalation_rate"] == 0.2


def test_page_without_matplotlib_says_so(logdir, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    assert main(["report", str(logdir), "--html", str(tmp_path / "r.html")]) == 0
    err = capsys.readouterr().err
    assert "matplotlib is not installed" in err and "edge-distill[full]" in err
    page = (tmp_path / "r.html").read_text()
    assert "<table>" in page and "base64" not in page and "matplotlib is not installed" in page


def test_empty_or_missing_log_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "serve --log-dir" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "no records yet" in capsys.readouterr().err


def test_wilson_interval():
    lo, hi = wilson(8, 10)
    assert 0.44 < lo < 0.5 and 0.94 < hi < 0.97
    assert wilson(0, 0) == (0.0, 1.0)
