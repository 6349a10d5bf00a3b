"""Issue #15 (Also): the teacher cache key includes the endpoint, and a 200 with a broken body
is paid for and counted in the ledger, so `max_cost_usd` holds. Real loopback endpoints."""

from __future__ import annotations

import json

from distill.teachers import run_teach
from distill.teachers.cache import ResponseCache
from distill.teachers.loopback import FixedLatencyServer, _response, _Server


def lines(path):
    return [json.loads(l) for l in path.read_text().splitlines()]


def test_two_providers_with_the_same_model_name_do_not_share_answers(make_recipe, tmp_path):
    run_dir = tmp_path / "run"
    with FixedLatencyServer(0.0, content='{"label": "positive"}') as a, \
            FixedLatencyServer(0.0, content='{"label": "negative"}') as b:
        for server, label in ((a, "positive"), (b, "negative")):
            teacher = {"kind": "openai", "base_url": server.url, "model": "same-name", "max_tokens": 16}
            recipe, rows, _ = make_recipe(teacher)
            summary = run_teach(recipe, rows, run_dir / "teach")
            assert server.requests == len(rows), f"{server.url} was not asked: answers came from the other provider"
            assert summary["from_cache"] == 0
            assert {r["answer"]["label"] for r in lines(run_dir / "teach/labelled.jsonl")} == {label}
        # and the same provider again is all cache, even spelled with a trailing slash and credentials
        teacher = {"kind": "openai", "base_url": a.url.replace("http://", "http://u:p@") + "/", "model": "same-name",
                   "max_tokens": 16}
        recipe, rows, _ = make_recipe(teacher)
        before = a.requests
        assert run_teach(recipe, rows, run_dir / "teach")["from_cache"] == len(rows) and a.requests == before


def test_answers_cached_before_the_endpoint_was_in_the_key_are_not_paid_again(make_recipe, tmp_path):
    """A cache written by an older edge-distill (keys without the endpoint) still answers."""
    import sqlite3

    from distill.teachers import cache_path
    from distill.teachers.cache import request_key

    run_dir = tmp_path / "run"
    with FixedLatencyServer(0.0, content='{"label": "positive"}') as srv:
        teacher = {"kind": "openai", "base_url": srv.url, "model": "m", "max_tokens": 16}
        recipe, rows, _ = make_recipe(teacher)
        run_teach(recipe, rows, run_dir / "teach")
        paid = srv.requests
        db = sqlite3.connect(str(cache_path(run_dir)))
        rows_ = db.execute("SELECT key, model, request FROM responses").fetchall()
        assert len(rows_) == paid
        for key, model, request in rows_:  # rewrite them under the old keys
            req = json.loads(request)
            db.execute("UPDATE responses SET key = ? WHERE key = ?", (request_key(model, req["messages"], req["sampling"]), key))
        db.commit()
        db.close()
        summary = run_teach(recipe, rows, run_dir / "teach")
        assert srv.requests == paid and summary["from_cache"] == len(rows)


class BrokenBodyServer(_Server):
    """Answers 200 with a body that is not a usable chat completion but reports its usage
    (what a provider bills), or, with `usage=False`, a body that is not JSON at all."""

    def __init__(self, usage: bool = True):
        super().__init__()
        self.requests = 0
        self.body = (json.dumps({"choices": [], "usage": {"prompt_tokens": 1000, "completion_tokens": 1000}})
                     if usage else '{"choices": [ <html>').encode()

    async def handle(self, req, writer) -> bool:
        self.requests += 1
        writer.write(_response(200, self.body))
        return True


def test_broken_200s_are_in_the_ledger_and_the_budget_holds(make_recipe, tmp_path):
    run_dir = tmp_path / "run"
    with BrokenBodyServer() as srv:
        # $1 per million tokens each way: each broken reply costs $0.002; the budget is $0.01
        teacher = {"kind": "openai", "base_url": srv.url, "model": "m", "max_tokens": 16, "concurrency": 1,
                   "max_retries": 3, "backoff_s": 0.001, "price_input_per_m": 1.0, "price_output_per_m": 1.0,
                   "max_cost_usd": 0.01}
        recipe, rows, _ = make_recipe(teacher)
        summary = run_teach(recipe, rows, run_dir / "teach")
    assert summary["labelled"] == 0
    assert summary["cost_usd"] == srv.requests * 0.002 > 0
    assert summary["cost_usd"] <= 0.01, summary
    assert summary["stopped_by_budget"] is True
    on_disk = ResponseCache(run_dir / "teacher-cache.sqlite").ledger_totals()
    assert on_disk["requests"] == srv.requests and on_disk["cost_usd"] == summary["cost_usd"]


def test_a_non_json_200_is_charged_its_worst_case(make_recipe, tmp_path):
    with BrokenBodyServer(usage=False) as srv:
        teacher = {"kind": "openai", "base_url": srv.url, "model": "m", "max_tokens": 16, "concurrency": 1,
                   "max_retries": 0, "price_input_per_m": 1.0, "price_output_per_m": 1.0}
        recipe, rows, _ = make_recipe(teacher, ["one review"])
        summary = run_teach(recipe, rows, tmp_path / "run" / "teach")
    assert srv.requests == 1 and summary["failed_by_reason"] == {"request": 1}
    assert summary["completion_tokens"] == 16 and summary["prompt_tokens"] > 0 and summary["cost_usd"] > 0
