"""Shadow sampling (issue #18 item 2) against a real loopback teacher: the budget is never
exceeded, agreement has a Wilson interval, and a live server exports it in /metrics, the log
and `edge-runtime report`."""

from __future__ import annotations

import json
import random

import httpx
import pytest

from distill.teachers.loopback import RecordingServer
from edge_runtime.report import wilson
from edge_runtime.router import Router, operator_teacher
from edge_runtime.shadow import ShadowSampler, ShadowSettings
from edge_runtime.task import TaskSpec
from tests.edge_runtime.conftest import SENTIMENT, LiveServer
from edge_runtime.server_settings import ServerSettings

TASK = TaskSpec.model_validate(SENTIMENT)


def _teacher(request: dict) -> str:
    """Says negative when the review has 'bad' in it, else positive."""
    return json.dumps({"label": "negative" if "bad" in request["messages"][-1]["content"] else "positive"})


@pytest.fixture()
def teacher():
    with RecordingServer(_teacher) as server:
        yield server


def _finished(label: str, confidence: float = 0.9) -> dict:
    return {"answer": {"label": label}, "confidence": confidence, "source": "student"}


def test_request_budget_is_never_exceeded(teacher):
    router = Router(TASK, 0.5, operator_teacher({}, teacher.url, "m"))
    sampler = ShadowSampler(router, ShadowSettings(fraction=1.0, max_per_hour=5))
    taken = sum(sampler.offer({"text": f"review {i}"}, _finished("positive")) for i in range(40))
    sampler.drain()
    assert taken == 5 and len(teacher.bodies) == 5
    assert sampler.counts[("random", "skipped_budget")] == 35 and sampler.agreement()["n"] == 5
    sampler.close()


def test_usd_budget_is_never_exceeded(teacher):
    t = operator_teacher({}, teacher.url, "deepseek-chat")  # list price: $8.2e-6 a request here
    sampler = ShadowSampler(Router(TASK, 0.5, t), ShadowSettings(fraction=1.0, max_per_hour=None, max_usd_per_hour=3e-5))
    for burst in range(2):  # requests as fast as they come, twice: queued ones must not overrun the budget
        for i in range(40):
            sampler.offer({"text": f"review {burst} {i}"}, _finished("positive"))
        # the first burst: one request until a cost is known; the second: what the cost leaves room for
        assert len(teacher.bodies) + sampler.in_flight == (1 if burst == 0 else 3)
        sampler.drain()
    assert sampler.cost_usd <= 3e-5 and len(teacher.bodies) == 3
    assert sampler.counts[("random", "skipped_budget")] == 77
    sampler.close()


def test_agreement_and_its_interval(teacher):
    router = Router(TASK, 0.5, operator_teacher({}, teacher.url, "m"))
    sampler = ShadowSampler(router, ShadowSettings(fraction=0.5, below=0.3, max_per_hour=None), rng=random.Random(0))
    for i in range(60):  # the student says positive; the teacher says negative for a third of them
        sampler.offer({"text": f"a {'bad' if i % 3 == 0 else 'fine'} thing {i}"}, _finished("positive", 0.2 if i < 10 else 0.9))
    assert not sampler.offer({"text": "x"}, {**_finished("positive"), "escalated": True})  # the teacher already answered
    sampler.drain()
    low, rnd = sampler.agreement("low_confidence"), sampler.agreement("random")
    assert low["n"] == 10 and low["agree"] == 6  # i < 10: 0, 3, 6, 9 are bad
    assert 15 < rnd["n"] < 35 and rnd["ci95"] == list(wilson(rnd["agree"], rnd["n"]))
    assert rnd["ci95"][0] < rnd["ratio"] < rnd["ci95"][1]
    sampler.close()


def test_settings_are_checked():
    with pytest.raises(ValueError, match="--shadow-fraction"):
        ShadowSettings(fraction=1.5)
    with pytest.raises(ValueError, match="--escalation-max-per-hour|whole number"):
        ShadowSettings(fraction=0.1, max_per_hour=-1)
    with pytest.raises(ValueError, match="--teacher-url"):
        ShadowSampler(Router(TASK, 0.5, None), ShadowSettings(fraction=0.1))
    with pytest.raises(ValueError, match="prices"):
        ShadowSampler(Router(TASK, 0.5, operator_teacher({}, "http://127.0.0.1:9/v1", "unlisted")),
                      ShadowSettings(fraction=0.1, max_usd_per_hour=1.0))


def test_live_server_exports_shadow_agreement(sentiment_bundle, teacher, tmp_path, capsys):
    """The real server with the real Gemma bundle: 6 requests, 3 shadowed (the hourly cap)."""
    from edge_runtime.cli import main as cli_main
    from edge_runtime.production import LoopSettings
    from edge_runtime.request_log import LogSettings, read_log
    from edge_runtime.server import create_app

    loop = LoopSettings(log=LogSettings(tmp_path / "log"), answer_cache=False,
                        shadow=ShadowSettings(fraction=1.0, max_per_hour=3))
    app = create_app(sentiment_bundle, ServerSettings(n_threads=2, teacher_url=teacher.url, teacher_model="deepseek-chat", loop=loop))
    with LiveServer(app) as live:
        for i in range(6):
            r = httpx.post(live.url + "/v1/tasks/sentiment", json={"input": f"A bad product, number {i}."}, timeout=120)
            assert r.status_code == 200, r.text
        app.state.loop.shadow.drain()
        metrics = httpx.get(live.url + "/metrics").text
    app.state.loop.close()
    assert len(teacher.bodies) == 3
    assert 'edge_shadow_requests_total{outcome="skipped_budget",sample="random"} 3.0' in metrics
    assert "edge_shadow_agreement_ratio{" in metrics and "edge_shadow_agreement_ci95_lower{" in metrics
    assert "edge_shadow_cost_usd_total" in metrics
    records = list(read_log(tmp_path / "log"))
    shadowed = [r for r in records if "shadow" in r]
    assert len(records) == 6 and len(shadowed) == 3
    assert all(r["teacher_answer"] == {"label": "negative"} and r["shadow"]["cost_usd"] > 0 for r in shadowed)
    capsys.readouterr()
    assert cli_main(["report", str(tmp_path / "log"), "--json", "--no-html"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["shadow"]["n"] == 3 and len(report["shadow"]["ci95"]) == 2
