"""Fuzz the JSON bodies of every POST endpoint with hypothesis (issue #15): hostile numbers
(NaN/Infinity literals, huge exponents, huge integers), hostile strings (lone surrogates,
NULs, invalid UTF-8, very long), deep nesting and a wrong type at every field, sent as raw
bytes with Content-Type application/json to a real server on loopback.

Whatever arrives: no 5xx, every answer is JSON holding an `error` or a normal body (or, for
a streamed request, server-sent events of JSON), and /healthz is 200 afterwards.
`EDGE_FUZZ_RANDOM=1` explores new examples instead of the fixed (derandomized) ones.
"""

from __future__ import annotations

import json
import os
from collections import Counter

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

AUTH = {"Authorization": "Bearer sekret", "Content-Type": "application/json"}
FUZZ = settings(max_examples=int(os.environ.get("EDGE_FUZZ_EXAMPLES", "30")), deadline=None, database=None,
                derandomize=not os.environ.get("EDGE_FUZZ_RANDOM"), suppress_health_check=list(HealthCheck))


class Raw(str):
    """JSON text sent as is (what json.dumps will not write)."""


# ---- hostile pieces ----------------------------------------------------------------------
NUMBER_LITERALS = ["NaN", "-NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1E+999999999", "1e-400",
                   "0e99999999", "123456789e-999999", "-0", "1.7976931348623157e308", "4.9e-324", "1e309"]
numbers = st.one_of(
    st.sampled_from(NUMBER_LITERALS).map(Raw),
    st.integers(4000, 9000).map(lambda n: Raw("9" * n)),  # past Python's 4300-digit int parsing limit, or near it
    st.integers(), st.integers(min_value=2**63 - 2, max_value=2**128), st.integers(max_value=-(2**63) + 1),
    st.floats(allow_nan=False, allow_infinity=False),
)
chars = st.characters() | st.characters(categories=["Cs"]) | st.sampled_from("\x00\x01\x1f\u2028\ufeff\U0010ffff")
strings = st.one_of(
    st.text(chars, max_size=40),
    st.integers(1_000, 30_000).map(lambda n: "x" * n),  # long, under the 64 KiB body limit
    st.integers(70_000, 90_000).map(lambda n: "y " * (n // 2)),  # over it
    st.sampled_from(['"a\x00b"', '"\\ud800"', '"\\udfff\\ud800"', '"\\u0000"', '"tab\there"', '"\\x41"', "'single'",
                     '"unterminated']).map(Raw),  # raw NUL/tab, escaped surrogates, bad escapes
)
nesting = st.one_of(
    st.integers(1, 5000).map(lambda n: Raw("[" * n + "]" * n)),
    st.integers(1, 5000).map(lambda n: Raw('{"a":' * n + "0" + "}" * n)),
    st.integers(50, 80).map(lambda n: Raw("[" * n + '"deep"' + "]" * n)),  # around the 64-level limit
)
scalars = st.none() | st.booleans() | numbers | strings
json_values = st.recursive(scalars | nesting, lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(st.text(chars, max_size=8), children, max_size=4), max_leaves=10)


def body(required: dict[str, st.SearchStrategy], optional: dict[str, st.SearchStrategy]) -> st.SearchStrategy:
    """Request bodies around a valid one: valid; one field given a hostile value or a wrong
    type; one field dropped; every field valid or hostile at random, with extra keys; or any
    JSON value at all as the whole body."""
    valid = st.fixed_dictionaries(required, optional=optional)
    fields = sorted({**required, **optional})
    one_bad = st.builds(lambda b, k, v: {**b, k: v}, valid, st.sampled_from(fields), json_values)
    dropped = st.builds(lambda b, k: {f: v for f, v in b.items() if f != k}, valid, st.sampled_from(fields))
    wild = st.fixed_dictionaries({}, optional={k: v | json_values for k, v in {**required, **optional}.items()})
    extra = st.builds(lambda b, e: {**e, **b}, wild, st.dictionaries(st.text(chars, max_size=8), json_values, max_size=2))
    return st.one_of(valid, one_bad, one_bad, one_bad, dropped, wild, extra, json_values)


short_text = st.text(st.characters(codec="utf-8") | st.sampled_from("\x00\u2028"), max_size=24)
response_formats = st.one_of(
    st.sampled_from([{"type": "text"}, {"type": "json_object"}, {"type": "bogus"}, {},
                     {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "properties": {
                         "a": {"type": "integer"}}, "required": ["a"]}}}]),
    st.fixed_dictionaries({"type": st.just("json_schema")}, optional={"json_schema": st.fixed_dictionaries(
        {}, optional={"name": short_text, "schema": json_values, "strict": st.booleans()}) | json_values}),
)
SAMPLING = {
    "model": short_text, "temperature": st.floats(0, 2), "top_p": st.floats(0.01, 1), "seed": st.integers(),
    "stop": st.none() | short_text | st.lists(short_text, max_size=3), "stream": st.booleans(),
    "response_format": response_formats, "max_tokens": st.integers(1, 5000),
}
COMPLETION = body({"prompt": short_text}, SAMPLING)
message = body({"role": st.sampled_from(["system", "user", "assistant"]), "content": short_text}, {})
CHAT = body({"messages": st.lists(message, min_size=1, max_size=3)}, SAMPLING)
TASK = body({"input": short_text | st.lists(short_text, max_size=3)}, {"context": short_text}) | body(
    {"text": short_text}, {"context": short_text})


def dump(value, raw: bool) -> str:
    """JSON text of `value`, `Raw` parts as they are. `raw`: strings unescaped (a lone surrogate
    then becomes invalid UTF-8 on the wire), else \\u-escaped."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{dump(str(k), raw)}:{dump(v, raw)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(v, raw) for v in value) + "]"
    return json.dumps(value, ensure_ascii=not raw)


def check(live, path: str, value, raw: bool) -> int:
    data = dump(value, raw).encode("utf-8", "surrogatepass")
    r = httpx.post(live.url + path, content=data, headers=AUTH, timeout=120)
    what = f"{path} {r.status_code} {data[:300]!r} -> {r.text[:300]}"
    assert r.status_code < 500, what
    ctype = r.headers.get("content-type", "")
    if ctype.startswith("text/event-stream"):  # a streamed generation: every event is JSON
        assert r.status_code == 200 and isinstance(value, dict) and value.get("stream") is True, what
        events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
        assert events and (events[-1] == "[DONE]" or "error" in json.loads(events[-1])), what
        for e in events:
            assert e == "[DONE]" or isinstance(json.loads(e), dict), what
        return r.status_code
    assert ctype.startswith("application/json"), what
    out = r.json()
    assert isinstance(out, dict), what
    if r.status_code >= 400:
        assert isinstance(out.get("error"), str) and out["error"], what
    elif path.startswith("/v1/tasks/"):
        assert {"answer", "confidence", "source"} <= out.keys(), what
    else:
        assert out.get("choices"), what
    return r.status_code


# ---- regressions: each of these once gave a 5xx or a non-JSON answer somewhere -----------
KNOWN = [
    ("/v1/completions", Raw('{"prompt": "hi", "max_tokens": 2, "temperature": NaN}')),
    ("/v1/completions", Raw('{"prompt": "hi", "max_tokens": 1e400}')),
    ("/v1/completions", Raw('{"prompt": "\\ud800"}')),
    ("/v1/completions", {"prompt": "hi", "max_tokens": 2, "seed": 2**80}),
    ("/v1/completions", {"prompt": "hi", "max_tokens": 2, "seed": -1}),
    ("/v1/completions", {"prompt": "hi", "max_tokens": "2"}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "seed": 2**64}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": ["a"]}]}),
    ("/v1/chat/completions", {"messages": "hi"}),
    ("/v1/tasks/sentiment", Raw("[" * 10000 + "]" * 10000)),
    ("/v1/tasks/sentiment", Raw("9" * 5000)),
    ("/v1/tasks/sentiment", {"input": ["a", {"b": 1}]}),
    ("/v1/tasks/sentiment", {"text": None}),
    ("/v1/tasks/sentiment", []),
]


@pytest.mark.parametrize("path,value", KNOWN, ids=[f"{p.rsplit('/', 1)[-1]}-{i}" for i, (p, _) in enumerate(KNOWN)])
def test_known_hostile_bodies(sentiment_server, path, value):
    check(sentiment_server, path, value, raw=False)


# ---- generated -----------------------------------------------------------------------------
@pytest.mark.parametrize("path,strategy", [("/v1/tasks/sentiment", TASK), ("/v1/completions", COMPLETION),
                                           ("/v1/chat/completions", CHAT)], ids=["task", "completions", "chat"])
def test_json_bodies_never_give_5xx(sentiment_server, path, strategy):
    @given(value=strategy, raw=st.booleans())
    @FUZZ
    @example(value=Raw('{"input": "fine", "context": "' + "\\ud83d" * 3 + '"}'), raw=False)
    def run(value, raw):
        seen[check(sentiment_server, path, value, raw)] += 1

    seen: Counter[int] = Counter()
    run()
    print(path, dict(seen))
    assert seen[200] and sum(n for s, n in seen.items() if 400 <= s < 500), seen  # both paths were exercised
    assert httpx.get(sentiment_server.url + "/healthz", timeout=10).status_code == 200
