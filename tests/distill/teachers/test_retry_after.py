"""A rate limit's Retry-After that cannot be read (`soon`, `nan`, a broken date) falls back to
the client's own backoff instead of aborting the teach stage or sleeping NaN seconds."""

import pytest

from distill.teachers import run_teach
from distill.teachers.loopback import FaultProxy, FixedLatencyServer
from distill.teachers.openai_teacher import retry_after_s


@pytest.mark.parametrize("headers", [
    {"retry-after": "soon"}, {"retry-after": "nan"}, {"retry-after": "inf"}, {"retry-after": "Wed, 99 Foo"},
    {"retry-after-ms": "nan"}, {"retry-after-ms": "-inf"}, {"retry-after-ms": "later"},
])
def test_unreadable_retry_after_means_no_advice(headers):
    assert retry_after_s(headers) is None


def test_readable_retry_after_still_counts():
    assert retry_after_s({"retry-after-ms": "nan", "retry-after": "2"}) == 2.0
    assert retry_after_s({"retry-after": "-5"}) == 0.0


def test_a_429_with_retry_after_soon_does_not_abort_the_stage(make_recipe, tmp_path):
    faults = ["429", "pass", "429", "pass"]
    with FixedLatencyServer(0.01) as upstream, FaultProxy(upstream.url, faults, retry_after="soon") as proxy:
        teacher = {"kind": "openai", "base_url": proxy.url, "model": "m", "concurrency": 1, "timeout_s": 2,
                   "max_retries": 2, "backoff_s": 0.05, "max_tokens": 16}
        recipe, rows, _ = make_recipe(teacher, 3)
        summary = run_teach(recipe, rows, tmp_path / "teach")
    assert proxy.log[:4] == faults
    assert summary["labelled"] == 3 and summary["errors"] == {"http 429": 2}
