"""The `openai` teacher through a fault-injecting proxy: in front of a fixed-latency
endpoint (every fault, deterministic order) and in front of llama-cpp-python's real server
with the 270M GGUF. Every input ends labelled or reported failed, with no duplicates, and
the ledger equals the usage of the replies the proxy really delivered."""

import json

import pytest

from distill.teachers import run_teach, teacher_predictor
from distill.teachers.cache import ResponseCache
from distill.teachers.loopback import FaultProxy, FixedLatencyServer


def lines(path):
    return [json.loads(l) for l in path.read_text().splitlines()]


def check_ledger(summary, proxy, run_dir, price_in, price_out, unusable=0, max_tokens=16):
    """The ledger is the usage of every reply delivered, plus the worst case charged for each
    of the `unusable` 200s with a broken body (paid for, never usable: issue #15)."""
    prompt = sum(d["prompt_tokens"] for d in proxy.delivered)
    completion = sum(d["completion_tokens"] for d in proxy.delivered)
    cache = ResponseCache(run_dir / "teacher-cache.sqlite")
    broken = cache._db.execute("SELECT prompt_tokens, completion_tokens FROM ledger WHERE key LIKE 'unusable:%'").fetchall()
    cache.close()
    assert len(broken) == unusable and all(c == max_tokens and p > 0 for p, c in broken)  # worst case
    prompt += sum(p for p, _ in broken)
    completion += sum(c for _, c in broken)
    assert summary["requests"] == len(proxy.delivered)
    assert (summary["prompt_tokens"], summary["completion_tokens"]) == (prompt, completion)
    assert summary["cost_usd"] == pytest.approx((prompt * price_in + completion * price_out) / 1e6, abs=1e-12)
    on_disk = ResponseCache(run_dir / "teacher-cache.sqlite").ledger_totals()
    assert (on_disk["prompt_tokens"], on_disk["completion_tokens"]) == (prompt, completion)


def test_every_fault_ends_labelled_or_failed_with_an_exact_ledger(make_recipe, tmp_path):
    faults = ["hang", "reset", "pass",  # row 0: timeout, reset connection, then through
              "429", "garbage", "pass",  # row 1: rate limited (Retry-After), a garbage body, then through
              "500", "500", "500"]  # row 2: three 500s with max_retries=2: reported failed
    with FixedLatencyServer(0.01) as upstream, FaultProxy(upstream.url, faults, retry_after=0.2) as proxy:
        teacher = {"kind": "openai", "base_url": proxy.url, "model": "m", "concurrency": 1, "timeout_s": 0.5,
                   "max_retries": 2, "backoff_s": 0.05, "max_tokens": 16, "price_input_per_m": 3.0,
                   "price_output_per_m": 7.0}
        recipe, rows, _ = make_recipe(teacher)
        run_dir = tmp_path / "run"
        summary = run_teach(recipe, rows, run_dir / "teach")
        assert proxy.log[:9] == faults and len(proxy.log) == 9 + 3  # rows 3..5 went straight through
        assert summary["labelled"] == 5 and summary["failed_by_reason"] == {"request": 1}
        assert summary["errors"] == {"timeout": 1, "connection": 1, "http 429": 1, "bad body": 1, "http 500": 3}
        failed = lines(run_dir / "teach/failed.jsonl")
        assert [f["id"] for f in failed] == ["r002"] and "HTTP 500" in failed[0]["problems"][0]
        check_ledger(summary, proxy, run_dir, 3.0, 7.0, unusable=1)  # the garbage 200
        # a re-run asks only for the failed row, and ends with every row once
        again = run_teach(recipe, rows, run_dir / "teach")
        assert again["requests"] == 1 and again["labelled"] == 6 and len(proxy.log) == 13
    labelled = lines(run_dir / "teach/labelled.jsonl")
    assert [r["id"] for r in labelled] == [r["id"] for r in rows]


def test_real_llama_server_behind_the_fault_proxy(llama_server, make_recipe, tmp_path):
    faults = ["429", "500", "garbage", "reset"]
    with FaultProxy(llama_server, faults, retry_after=0.5) as proxy:
        teacher = {"kind": "openai", "base_url": proxy.url, "model": "gemma-3-270m", "concurrency": 1,
                   "timeout_s": 120, "backoff_s": 0.05, "max_tokens": 12, "price_input_per_m": 0.5,
                   "price_output_per_m": 1.5}
        recipe, rows, _ = make_recipe(teacher, texts=["Great phone, I love it.", "Awful, it broke."])
        run_dir = tmp_path / "run"
        summary = run_teach(recipe, rows, run_dir / "teach")
        # four injected faults, then the real server rejects `json_schema` (llama-cpp-python takes
        # `json_object` + schema) and the client falls back without counting it as a retry
        assert proxy.log == [*faults, "pass", "pass", "pass"]
        assert summary["retries"] == 4 and summary["labelled"] == 2 and summary["failed"] == 0
        assert len(proxy.delivered) == 2 and all(d["completion_tokens"] > 0 for d in proxy.delivered)
        check_ledger(summary, proxy, run_dir, 0.5, 1.5, unusable=1, max_tokens=12)  # the garbage 200
        labelled = lines(run_dir / "teach/labelled.jsonl")
        assert [r["id"] for r in labelled] == ["r000", "r001"]
        assert all(r["answer"]["label"] in ("positive", "negative") for r in labelled)
        # the predictor reuses the paid answer from the cache, with the original latency and cost
        predictor = teacher_predictor(recipe, cache_path=run_dir / "teacher-cache.sqlite")
        try:
            pred = predictor.predict(rows[0])
        finally:
            predictor.close()
        assert len(proxy.log) == 7 and pred.extra["cached"] and pred.answer == labelled[0]["answer"]
        assert pred.latency_s > 0 and pred.prompt_tokens == proxy.delivered[0]["prompt_tokens"]
        assert pred.cost_usd == pytest.approx((pred.prompt_tokens * 0.5 + pred.completion_tokens * 1.5) / 1e6)


def test_real_server_without_structured_output_retries_once_then_drops(llama_server, make_recipe, tmp_path):
    with FaultProxy(llama_server) as proxy:
        teacher = {"kind": "openai", "base_url": proxy.url, "model": "gemma-3-270m", "response_format": False,
                   "max_tokens": 3, "concurrency": 1}
        recipe, rows, _ = make_recipe(teacher, texts=["Nice."])
        summary = run_teach(recipe, rows, tmp_path / "teach")
        # 3 tokens cannot hold {"label": ...}: invalid, asked again with the error, invalid again, dropped
        assert len(proxy.log) == 2 and summary["failed_by_reason"] == {"invalid": 1} and summary["labelled"] == 0
    failed = lines(tmp_path / "teach/failed.jsonl")
    assert failed[0]["reason"] == "invalid" and any("max_tokens=3" in p for p in failed[0]["problems"])


@pytest.mark.parametrize("status,message", [("401", "refused the API key from \\$OPENAI_API_KEY"), ("404", "check teacher.base_url")])
def test_a_wrong_key_or_url_stops_the_stage_at_once(make_recipe, tmp_path, status, message):
    from distill.teachers.openai_teacher import TeacherFatal

    with FixedLatencyServer(0.01) as upstream, FaultProxy(upstream.url, [status] * 50) as proxy:
        recipe, rows, _ = make_recipe({"kind": "openai", "base_url": proxy.url, "model": "m", "concurrency": 1})
        with pytest.raises(TeacherFatal, match=message):
            run_teach(recipe, rows, tmp_path / "teach")
        assert len(proxy.log) == 1  # no retries, no other rows tried
