"""The teacher's parts on their own: reasoning split, voting, prices, Retry-After, rate
limits, the budget and the cache."""

import asyncio
import time

import pytest

from distill.teachers.cache import ResponseCache, request_key
from distill.teachers.ledger import BudgetExceeded, Ledger
from distill.teachers.openai_teacher import retry_after_s
from distill.teachers.prices import Price, price_for
from distill.teachers.prompting import flatten, split_reasoning
from distill.teachers.ratelimit import RateLimiter
from distill.teachers.vote import majority
from edge_runtime.task import TaskSpec

RECEIPT = TaskSpec(name="r", kind="extraction", instructions="x",
                   fields={"date": {"type": "date"}, "total": {"type": "amount"}})
SENT = TaskSpec(name="s", kind="classification", instructions="x", labels=["positive", "negative"])


@pytest.mark.parametrize("content,reasoning_content,answer,reasoning", [
    ('{"label": "positive"}', None, '{"label": "positive"}', ""),
    ('<think>maybe {"label": "negative"}</think>\n{"label": "positive"}', None, '{"label": "positive"}', 'maybe {"label": "negative"}'),
    ('weighing it up {"label": "negative"}</think>{"label": "positive"}', None, '{"label": "positive"}', 'weighing it up {"label": "negative"}'),
    ('<think>cut off while thinking {"label": "negative"}', None, "", 'cut off while thinking {"label": "negative"}'),
    ('{"label": "positive"}', 'R1 style {"label": "negative"}', '{"label": "positive"}', 'R1 style {"label": "negative"}'),
    (None, "only reasoning", "", "only reasoning"),
])
def test_reasoning_is_never_taken_for_the_answer(content, reasoning_content, answer, reasoning):
    got_answer, got_reasoning = split_reasoning(content, reasoning_content)
    assert (got_answer, got_reasoning) == (answer, reasoning)
    parsed, _ = SENT.parse(got_answer)
    assert parsed == ({"label": "positive"} if answer else None)


def test_flatten_gives_a_base_model_the_students_prompt():
    msgs = [{"role": "system", "content": "schema"}, {"role": "user", "content": "PROMPT\n"}]
    assert flatten(msgs) == "PROMPT\n"
    retry = flatten([*msgs, {"role": "assistant", "content": "bad"}, {"role": "user", "content": "invalid"}])
    assert retry.startswith("PROMPT\nbad") and retry.endswith("### Output (JSON):\n")


def test_majority_votes_per_field_after_normalising():
    answers = [{"date": "25/12/2018", "total": "9.00"}, {"date": "2018-12-25", "total": "RM 9.00"},
               {"date": "26/12/2018", "total": "9.00"}, None]
    voted, agreement = majority(RECEIPT, answers)
    assert voted == {"date": "25/12/2018", "total": "9.00"}
    assert agreement == pytest.approx((2 / 4 + 3 / 4) / 2)  # dates 2 of 4 agree, totals 3 of 4
    assert majority(SENT, [{"label": "negative"}, {"label": "positive"}, {"label": "negative"}]) == ({"label": "negative"}, 2 / 3)
    assert majority(SENT, [None, None]) == (None, 0.0)


def test_prices_from_the_recipe_win_over_the_table():
    assert price_for("deepseek-reasoner").output_per_m == 2.19
    assert price_for("DeepSeek-Chat").input_per_m == 0.27
    assert price_for("gpt-4o-mini-2024-07-18").input_per_m == 0.15  # longest key first, not gpt-4o
    assert price_for("my-own-model") is None
    assert price_for("gpt-4o", 1.0, 2.0).source == "recipe"
    with pytest.raises(ValueError, match="together"):
        price_for("gpt-4o", 1.0, None)
    assert Price(1.0, 0.25, 2.0).cost(1000, 500, cached_tokens=400) == pytest.approx((600 + 100 + 1000) / 1e6)


def test_retry_after_forms():
    assert retry_after_s({"retry-after": "3"}) == 3.0
    assert retry_after_s({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert 0 <= retry_after_s({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert retry_after_s({}) is None


def test_rate_limiter_holds_requests_and_tokens_per_window():
    async def go(limiter, n, tokens):
        start = time.monotonic()
        for _ in range(n):
            limiter.settle(await limiter.acquire(tokens), tokens)
        return time.monotonic() - start

    assert asyncio.run(go(RateLimiter(rpm=3, window_s=0.5), 3, 0)) < 0.2
    assert asyncio.run(go(RateLimiter(rpm=3, window_s=0.5), 7, 0)) >= 1.0  # two full windows waited
    assert asyncio.run(go(RateLimiter(tpm=100, window_s=0.5), 4, 40)) >= 0.5


def test_budget_reserves_the_worst_case_and_stops_before_crossing():
    with pytest.raises(ValueError, match="price_input_per_m"):
        Ledger(None, max_cost_usd=1.0)
    ledger = Ledger(Price(1000.0, 1000.0, 1000.0), max_cost_usd=0.05)  # $0.001 per token
    held = ledger.reserve(10, 20)  # worst case $0.03
    with pytest.raises(BudgetExceeded):
        ledger.reserve(10, 20)  # 0.03 + 0.03 > 0.05 while the first is in flight
    ledger.release(held)
    assert ledger.record(8, 5, 0, prompt_bytes=40) == pytest.approx(0.013)
    assert ledger.tokens_per_byte == pytest.approx(0.25)
    assert ledger.stopped and ledger.spent_usd <= ledger.max_cost_usd


def test_cache_is_content_addressed_and_keeps_a_ledger(tmp_path):
    msgs = [{"role": "user", "content": "hi"}]
    k = request_key("m", msgs, {"temperature": 0})
    assert k == request_key("m", msgs, {"temperature": 0})
    assert len({k, request_key("m2", msgs, {"temperature": 0}), request_key("m", msgs, {"temperature": 1})}) == 3
    cache = ResponseCache(tmp_path / "c.sqlite")
    assert cache.get(k) is None
    cache.put(k, "m", {"messages": msgs}, {"text": "x"}, (3, 4, 1), 0.5, run="a")
    cache.close()
    again = ResponseCache(tmp_path / "c.sqlite")
    assert again.get(k) == {"text": "x"} and len(again) == 1
    assert again.ledger_totals("a") == {"requests": 1, "prompt_tokens": 3, "completion_tokens": 4,
                                        "cached_tokens": 1, "cost_usd": 0.5}
    assert again._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
