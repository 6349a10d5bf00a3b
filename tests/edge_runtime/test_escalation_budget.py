"""The teacher-escalation budget (issue #15): at most N escalations and X USD in any sliding
hour. Past it the student's answer comes back flagged `escalation_skipped: "budget"`, never an
error; refusals and the budget used are in /metrics. A live server on loopback, a loopback
teacher, and an injected clock instead of waiting an hour."""

from __future__ import annotations

import re
import threading

import httpx
import pytest

from edge_runtime.budget import EscalationBudget
from tests.edge_runtime.conftest import SENTIMENT, LiveServer, make_run_dir
from tests.edge_runtime.test_escalation_policy import _recording_teacher
from edge_runtime.server_settings import ServerSettings


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


# ---- the budget alone ------------------------------------------------------------------
def test_request_budget_slides_over_the_hour():
    clock = Clock()
    b = EscalationBudget(max_per_hour=2, clock=clock)
    assert b.acquire()[0] is not None  # granted at 1000
    clock.t = 2800.0
    assert b.acquire()[0] is not None  # and at 2800
    clock.t = 4000.0
    ticket, why = b.acquire()
    assert ticket is None and "2 per hour is spent" in why and "in 600 s" in why  # the one of 1000 frees at 4600
    clock.t = 4600.5
    assert b.acquire()[0] is not None  # 1000 left the window; 2800 and 4600.5 are in it
    assert b.acquire()[0] is None
    clock.t = 6400.5
    assert b.acquire()[0] is not None
    assert b.used()["requests"] == 2 and b.refused == {"requests": 2, "usd": 0}


def test_request_budget_holds_under_concurrency():
    b = EscalationBudget(max_per_hour=5, clock=Clock())
    granted = []

    def worker():
        for _ in range(50):
            ticket, _ = b.acquire()
            if ticket:
                granted.append(ticket)
                b.settle(ticket, 0.0)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 5 and b.refused["requests"] == 8 * 50 - 5


def test_usd_budget_reserves_for_escalations_in_flight():
    clock = Clock()
    b = EscalationBudget(max_usd_per_hour=0.05, clock=clock)
    first, _ = b.acquire()
    b.settle(first, 0.02)  # now an escalation is known to cost about 0.02
    second, _ = b.acquire()  # 0.02 + 0.02 <= 0.05
    third, why = b.acquire()  # 0.02 spent + 0.02 in flight + 0.02 > 0.05
    assert second and third is None and "0.05 USD per hour is spent" in why
    b.settle(second, 0.02)
    assert b.acquire()[0] is None and b.used()["usd"] == pytest.approx(0.04)
    clock.t += 3601
    assert b.acquire()[0] is not None and b.used()["usd"] == 0.0


@pytest.mark.parametrize("kw", [{"max_per_hour": -1}, {"max_per_hour": 1.5}, {"max_usd_per_hour": float("nan")},
                                {"max_usd_per_hour": -0.1}, {"max_usd_per_hour": float("inf")}])
def test_bad_budgets_are_refused_with_the_flag_named(kw):
    with pytest.raises(ValueError, match="--escalation-max-"):
        EscalationBudget(**kw)


def test_a_usd_budget_without_prices_is_refused_before_the_model_loads(budget_bundle):
    from edge_runtime.server import create_app

    with pytest.raises(ValueError, match="--teacher-price-input-per-m"):
        create_app(budget_bundle, ServerSettings(teacher_url="http://127.0.0.1:9/v1", escalation_max_usd_per_hour=1.0))


def test_cli_lists_the_budget_flags():
    from edge_runtime.cli import build_parser

    serve = build_parser()._subparsers._group_actions[0].choices["serve"].format_help()
    for flag in ("--escalation-max-per-hour", "--escalation-max-usd-per-hour", "--teacher-price-input-per-m"):
        assert flag in serve


# ---- on a live server --------------------------------------------------------------------
@pytest.fixture(scope="module")
def teacher():
    with LiveServer(_recording_teacher()) as live:
        yield live


@pytest.fixture(scope="module")
def budget_bundle(tmp_path_factory, gemma_gguf):
    """Every answer is below the threshold, so every request wants the teacher."""
    from edge_runtime.bundle import pack_run

    root = tmp_path_factory.mktemp("budget")
    return pack_run(make_run_dir(root, gemma_gguf, SENTIMENT, threshold=1.01), "router-8gb", root / "bundle")


def _post(live, text: str) -> dict:
    r = httpx.post(live.url + "/v1/tasks/sentiment", json={"input": text}, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def _metric(live, name: str, **labels) -> float:
    text = httpx.get(live.url + "/metrics", timeout=10).text
    sel = ",".join(f'{k}="{v}"' for k, v in labels.items())
    m = re.search(rf"^{re.escape(name)}{{{re.escape(sel)}}} (\S+)$" if sel else rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert m, f"{name}{{{sel}}} not in /metrics"
    return float(m.group(1))


def _skipped(body: dict) -> bool:
    return (body["source"] == "student" and body["low_confidence"] and body.get("escalation_skipped") == "budget"
            and "budget of" in body["escalation_skipped_reason"] and "escalated" not in body
            and "escalation_error" not in body and "answer" in body)


def test_request_budget_on_a_live_server(budget_bundle, teacher):
    from edge_runtime.server import create_app

    app = create_app(budget_bundle, ServerSettings(n_threads=2, teacher_url=teacher.url + "/v1", escalation_max_per_hour=2))
    clock = app.state.router.budget.clock = Clock()
    calls = len(teacher.app.state.auth)
    with LiveServer(app) as live:
        bodies: dict[int, dict] = {}
        threads = [threading.Thread(target=lambda i=i: bodies.__setitem__(i, _post(live, f"Review {i}: it was okay.")))
                   for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(bodies) == 6
        assert len(teacher.app.state.auth) - calls == 2  # never more than the budget, concurrent requests included
        assert sum(b["source"] == "teacher" for b in bodies.values()) == 2
        skipped = [i for i, b in bodies.items() if b["source"] != "teacher"]
        assert len(skipped) == 4 and all(_skipped(bodies[i]) for i in skipped), bodies
        assert _metric(live, "edge_escalation_budget_refusals_total", limit="requests") == 4
        assert _metric(live, "edge_escalation_budget_used", kind="requests") == 2
        assert _metric(live, "edge_escalation_budget_limit", kind="requests") == 2
        assert _metric(live, "edge_escalations_total") == 2

        # The window slides: both grants were at t=1000, so at 4599 the budget is still spent...
        clock.t = 4599.0
        still = _post(live, f"Review {skipped[0]}: it was okay.")
        assert _skipped(still) and not still.get("cached")  # a skipped answer is not kept in the answer cache
        # ...and at 4600.5 both have left the hour: two more escalations, then refused again.
        clock.t = 4600.5
        first = _post(live, f"Review {skipped[0]}: it was okay.")
        second = _post(live, "Another review: fine.")
        third = _post(live, "A third one: fine.")
        assert first["source"] == second["source"] == "teacher" and _skipped(third)
        assert len(teacher.app.state.auth) - calls == 4
        assert _metric(live, "edge_escalation_budget_used", kind="requests") == 2
        assert _metric(live, "edge_escalation_budget_refusals_total", limit="requests") == 6
        assert httpx.get(live.url + "/healthz", timeout=10).status_code == 200


def test_usd_budget_on_a_live_server(budget_bundle, teacher):
    from edge_runtime.server import create_app

    # the teacher reports 10 prompt and 2 completion tokens: 10 x 1000/1e6 + 2 x 5000/1e6 = 0.02 USD each
    app = create_app(budget_bundle, ServerSettings(n_threads=2, teacher_url=teacher.url + "/v1", escalation_max_usd_per_hour=0.05,
                     teacher_price_input_per_m=1000, teacher_price_output_per_m=5000))
    clock = app.state.router.budget.clock = Clock()
    calls = len(teacher.app.state.auth)
    with LiveServer(app) as live:
        bodies = [_post(live, f"Priced review {i}: so-so.") for i in range(4)]
        assert [b["source"] for b in bodies] == ["teacher", "teacher", "student", "student"]
        assert [b.get("cost_usd") for b in bodies[:2]] == [0.02, 0.02]
        assert all(_skipped(b) and "0.05 USD per hour" in b["escalation_skipped_reason"] for b in bodies[2:])
        assert len(teacher.app.state.auth) - calls == 2
        assert _metric(live, "edge_escalation_budget_used", kind="usd") == pytest.approx(0.04)
        assert _metric(live, "edge_escalation_budget_refusals_total", limit="usd") == 2
        assert _metric(live, "edge_escalation_cost_usd_total") == pytest.approx(0.04)
        clock.t += 3601
        assert _post(live, "Priced review 2: so-so.")["source"] == "teacher"  # the skipped answer was not cached
        assert _metric(live, "edge_escalation_budget_used", kind="usd") == pytest.approx(0.02)
