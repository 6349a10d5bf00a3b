"""The teach stage against loopback endpoints with a fixed answer and latency: the cache,
the budget, reasoning, self-consistency and the API key's handling."""

import json

import pytest

from distill.teachers import run_teach
from distill.teachers.cache import ResponseCache
from distill.teachers.loopback import FixedLatencyServer
from distill.teachers.openai_teacher import TeacherFatal


def openai_teacher(url, **kw):
    return {"kind": "openai", "base_url": url, "model": "loopback-model", "max_tokens": 16,
            "price_input_per_m": 100.0, "price_output_per_m": 200.0, **kw}


def lines(path):
    return [json.loads(l) for l in path.read_text().splitlines()]


def test_a_rerun_pays_nothing_and_duplicates_nothing(make_recipe, tmp_path):
    with FixedLatencyServer(0.05) as srv:
        recipe, rows, _ = make_recipe(openai_teacher(srv.url, concurrency=4), texts=20)
        first = run_teach(recipe, rows, tmp_path / "run" / "teach")
        assert srv.requests == 20 and first["requests"] == 20 and first["labelled"] == 20
        # exact ledger: 10 prompt + 5 completion tokens per request at $100/$200 per M
        assert first["cost_usd"] == pytest.approx(20 * (10 * 100 + 5 * 200) / 1e6)
        second = run_teach(recipe, rows, tmp_path / "run" / "teach")
        assert srv.requests == 20 and second["requests"] == 0 and second["from_cache"] == 20
        assert second["cost_usd"] == 0
    out = lines(tmp_path / "run/teach/labelled.jsonl")
    assert [r["id"] for r in out] == [r["id"] for r in rows]
    assert all(r["answer"] == {"label": "positive"} and r["agreement"] == 1.0 for r in out)
    cache = ResponseCache(tmp_path / "run/teacher-cache.sqlite")
    assert cache.ledger_totals()["requests"] == 20 and len(cache) == 20


def test_identical_inputs_are_sent_once(make_recipe, tmp_path):
    with FixedLatencyServer(0.1) as srv:
        recipe, rows, _ = make_recipe(openai_teacher(srv.url, concurrency=8), texts=["same text"] * 5 + ["other"])
        summary = run_teach(recipe, rows, tmp_path / "teach")
        assert srv.requests == 2 and summary["labelled"] == 6


def test_budget_stops_before_crossing_and_a_bigger_budget_resumes(make_recipe, tmp_path):
    per_request = (10 * 10 + 5 * 500) / 1e6  # $0.0026; the worst case reserved is 16 completion tokens
    teacher = openai_teacher(None, concurrency=2, max_cost_usd=0.03, price_input_per_m=10.0,
                             price_output_per_m=500.0)
    with FixedLatencyServer(0.02) as srv:
        recipe, rows, path = make_recipe({**teacher, "base_url": srv.url}, texts=30)
        summary = run_teach(recipe, rows, tmp_path / "run" / "teach")
        assert summary["stopped_by_budget"] and summary["cost_usd"] <= 0.03
        assert summary["labelled"] >= 3 and summary["cost_usd"] == pytest.approx(summary["labelled"] * per_request)
        failed = lines(tmp_path / "run/teach/failed.jsonl")
        assert {f["reason"] for f in failed} == {"budget"} and len(failed) + summary["labelled"] == 30
        paid_before = srv.requests
        recipe.teacher.max_cost_usd = 1.0
        resumed = run_teach(recipe, rows, tmp_path / "run" / "teach")
        assert resumed["labelled"] == 30 and resumed["requests"] == 30 - summary["labelled"]
        assert srv.requests == paid_before + resumed["requests"]


@pytest.mark.parametrize("mode", ["keep", "drop"])
def test_reasoning_is_kept_or_dropped_and_never_the_answer(make_recipe, tmp_path, mode):
    content = '<think>first I thought {"label": "negative"}</think>{"label": "positive"}'
    with FixedLatencyServer(0.01, content=content, reasoning_content="R1 channel") as srv:
        recipe, rows, _ = make_recipe(openai_teacher(srv.url, reasoning=mode), texts=2)
        run_teach(recipe, rows, tmp_path / "teach")
    out = lines(tmp_path / "teach/labelled.jsonl")
    assert all(r["answer"] == {"label": "positive"} for r in out)
    if mode == "keep":
        assert out[0]["reasoning"] == 'R1 channel\n\nfirst I thought {"label": "negative"}'
    else:
        assert "reasoning" not in out[0]


def test_self_consistency_sends_n_samples_and_keeps_agreement(make_recipe, tmp_path):
    with FixedLatencyServer(0.01) as srv:
        recipe, rows, _ = make_recipe(openai_teacher(srv.url, samples=3, temperature=0.7), texts=4)
        summary = run_teach(recipe, rows, tmp_path / "teach")
        assert srv.requests == 12 and summary["labelled"] == 4
    assert all(r["agreement"] == 1.0 for r in lines(tmp_path / "teach/labelled.jsonl"))


def test_invalid_answers_are_retried_once_then_dropped_and_counted(make_recipe, tmp_path):
    with FixedLatencyServer(0.01, content='{"label": "neutral"}') as srv:
        recipe, rows, _ = make_recipe(openai_teacher(srv.url), texts=3)
        summary = run_teach(recipe, rows, tmp_path / "teach")
        assert srv.requests == 6  # each row: the request and one retry with the validation error
    assert summary["labelled"] == 0 and summary["failed_by_reason"] == {"invalid": 3}
    failed = lines(tmp_path / "teach/failed.jsonl")
    assert "not one of the 2 labels" in failed[0]["problems"][0]


def test_the_api_key_comes_from_the_env_and_never_reaches_disk(make_recipe, tmp_path, monkeypatch):
    recipe, rows, _ = make_recipe(openai_teacher("https://api.deepseek.com/v1", api_key_env="MY_TEACHER_KEY"), texts=2)
    monkeypatch.delenv("MY_TEACHER_KEY", raising=False)
    with pytest.raises(TeacherFatal, match="MY_TEACHER_KEY"):
        run_teach(recipe, rows, tmp_path / "teach")
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("MY_TEACHER_KEY", secret)
    with FixedLatencyServer(0.01) as srv:
        recipe, rows, _ = make_recipe(openai_teacher(srv.url, api_key_env="MY_TEACHER_KEY"), texts=2)
        run_teach(recipe, rows, tmp_path / "run" / "teach")
    for f in (tmp_path / "run").rglob("*"):
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f
