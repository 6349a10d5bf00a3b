"""The answer cache: normalised exact match, LRU bounds by entries and bytes, a new bundle
never sees an old bundle's answers, Prometheus names."""

from __future__ import annotations

import pytest

from edge_runtime.answer_cache import AnswerCache, manifest_digest, normalise


def _key(value, bundle="b1", **kw):
    return AnswerCache.key(bundle=bundle, task="t", value=value, **kw)


def test_whitespace_is_normalised_but_text_is_not():
    assert normalise("  a\tb \n c ") == "a b c"
    assert normalise([" x  y", "z "]) == "x y\nz"
    assert _key("Hello  world ") == _key("Hello world")
    assert _key("Hello world") != _key("hello world") != _key("Hello world!")
    assert _key("q", context="faq 1") != _key("q", context="faq 2")
    assert _key("q", settings=[0.5, None]) != _key("q", settings=[0.9, None])


def test_a_changed_bundle_misses():
    m = {"model": "m.gguf", "files": {"m.gguf": {"sha256": "aa", "bytes": 1}}}
    changed = {**m, "files": {"m.gguf": {"sha256": "bb", "bytes": 1}}}
    assert manifest_digest(m) != manifest_digest(changed)
    cache = AnswerCache()
    cache.put(_key("x", bundle=manifest_digest(m)), {"answer": {"label": "a"}}, 0.5)
    assert cache.get(_key("x", bundle=manifest_digest(changed))) is None
    assert cache.get(_key("x", bundle=manifest_digest(m))) == {"answer": {"label": "a"}}


def test_hits_misses_and_saved_seconds():
    cache = AnswerCache()
    assert cache.get(_key("a")) is None
    cache.put(_key("a"), {"answer": {"label": "x"}}, 0.25)
    got = cache.get(_key("a"))
    got["answer"]["label"] = "mutated"  # a copy: the cache keeps what it was given
    assert cache.get(_key("a")) == {"answer": {"label": "x"}}
    assert (cache.hits, cache.misses, cache.saved_s) == (2, 1, 0.5)


def test_lru_bounds_entries_and_bytes():
    cache = AnswerCache(max_entries=3, max_bytes=10_000)
    for i in range(5):
        cache.put(_key(str(i)), {"answer": {"label": str(i)}}, 0.1)
        if i == 2:
            cache.get(_key("0"))  # recently used: survives the next evictions
    assert len(cache) == 3 and cache.evictions == 2
    assert cache.get(_key("0")) is not None and cache.get(_key("1")) is None and cache.get(_key("2")) is None
    small = AnswerCache(max_entries=100, max_bytes=600)
    for i in range(20):
        small.put(_key(str(i)), {"answer": {"text": "z" * 100}}, 0.1)
    assert small.bytes <= 600 and 0 < len(small) < 20
    assert not small.put(_key("huge"), {"answer": {"text": "z" * 1000}}, 0.1)  # larger than the whole cache
    with pytest.raises(ValueError, match="--no-answer-cache"):
        AnswerCache(max_entries=0)


def test_metrics_follow_prometheus_names():
    from prometheus_client import CollectorRegistry, generate_latest

    reg = CollectorRegistry()
    cache = AnswerCache()
    reg.register(cache)
    cache.get(_key("a"))
    cache.put(_key("a"), {"answer": {}}, 1.5)
    cache.get(_key("a"))
    text = generate_latest(reg).decode()
    for line in ("edge_answer_cache_hits_total 1.0", "edge_answer_cache_misses_total 1.0",
                 "edge_answer_cache_saved_seconds_total 1.5", "edge_answer_cache_entries 1.0",
                 "edge_answer_cache_evictions_total 0.0"):
        assert line in text, line
    assert "_total_total" not in text
