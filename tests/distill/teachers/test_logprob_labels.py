"""A classification teacher's label distribution read from its reply's log-probabilities:
by hand on token lists shaped like OpenAI's, and through the real teach stage against
llama-cpp-python's own OpenAI-compatible server running the real Gemma 3 270M."""

import json
import math

import pytest

from distill.teachers.logprob_labels import logprob_distribution, mean_distribution


def tok(token, lp, top=()):
    return {"token": token, "logprob": lp, "bytes": list(token.encode()),
            "top_logprobs": [{"token": t, "logprob": l, "bytes": list(t.encode())} for t, l in top]}


def reply(*value_steps, before=('{"', "label", '":', ' "'), after='"}'):
    steps = [tok(t, -0.01) for t in before] + list(value_steps) + [tok(after, -0.02, [(after, -0.02), ('",', -4.0)])]
    return "".join(s["token"] for s in steps), steps


def test_labels_that_part_at_the_first_token_get_their_alternatives_probability():
    content, steps = reply(tok("positive", math.log(0.7), [("positive", math.log(0.7)), ("negative", math.log(0.2)),
                                                             ("I", math.log(0.1))]))
    dist = logprob_distribution(["positive", "negative"], content, steps)
    assert list(dist) == ["positive", "negative"]  # most likely first
    assert dist["negative"] == pytest.approx(0.2 / (0.2 + 0.7 * (math.exp(-0.02) + math.exp(-4.0))), abs=1e-4)
    assert sum(dist.values()) == pytest.approx(1, abs=1e-5)  # "I" starts no label: dropped, renormalised


def test_labels_sharing_a_first_token_part_where_they_differ():
    labels = ["card_arrival", "card_linking", "top_up"]
    content, steps = reply(tok("card", math.log(0.8), [("card", math.log(0.8)), ("top", math.log(0.1))]),
                           tok("_ar", math.log(0.6), [("_ar", math.log(0.6)), ("_link", math.log(0.3))]),
                           tok("rival", 0.0))
    dist = logprob_distribution(labels, content, steps)
    close = math.exp(-0.02) + math.exp(-4.0)
    raw = {"card_arrival": 0.8 * 0.6 * close, "card_linking": 0.8 * 0.3, "top_up": 0.1}
    for label, m in raw.items():
        assert dist[label] == pytest.approx(m / sum(raw.values()), abs=1e-4)


def test_chinese_labels_and_a_token_that_ends_inside_a_character():
    labels = ["航班", "火车"]
    hang = "航".encode()  # 3 bytes; the teacher's tokens split the first character 2 + 1
    first = {"token": "\ufffd", "logprob": math.log(0.9), "bytes": list(hang[:2]),
             "top_logprobs": [{"token": "\ufffd", "logprob": math.log(0.9), "bytes": list(hang[:2])},
                              {"token": "火", "logprob": math.log(0.05), "bytes": list("火".encode())}]}
    second = {"token": "\ufffd班", "logprob": 0.0, "bytes": list(hang[2:] + "班".encode()), "top_logprobs": []}
    steps = [tok(t, -0.01) for t in ('{"', "label", '": "')] + [first, second, tok('"}', 0.0)]
    content = '{"label": "航班"}'
    dist = logprob_distribution(labels, content, steps)
    assert dist["航班"] == pytest.approx(0.9 / 0.95, abs=1e-4) and dist["火车"] == pytest.approx(0.05 / 0.95, abs=1e-4)


@pytest.mark.parametrize("content, steps", [
    ('{"label": "positive"}', None),  # no log-probabilities
    ('{"label": "positive"}', [tok('{"label": "pos', -0.1), tok('X"}', -0.1)]),  # tokens spell something else
    ('{"answer": "positive"}', [tok('{"answer": "positive"}', -0.1)]),  # no label value
    ('{"label": "neutral"}', [tok('{"label": "neutral"}', -0.1)]),  # not one of the labels
    ('{"label": "positive"}', [{"token": '{"label": "positive"}', "logprob": "nan?"}]),  # garbage
])
def test_replies_that_cannot_be_read_give_none(content, steps):
    assert logprob_distribution(["positive", "negative"], content, steps) is None


def test_mean_of_samples():
    assert mean_distribution([{"a": 1.0}, {"a": 0.5, "b": 0.5}]) == {"a": 0.75, "b": 0.25}
    assert mean_distribution([]) is None


def test_teach_keeps_the_real_llamacpp_servers_label_distribution(llama_server, make_recipe, tmp_path):
    """llama-cpp-python's server returns OpenAI `logprobs`; the teach stage keeps the label
    distribution they spell, its argmax is the label the teacher answered, and a second run
    reads it back from the cache (paid once)."""
    from distill.teachers import run_teach

    teacher = {"kind": "openai", "base_url": llama_server, "model": "gemma", "api_key_env": "NO_KEY_NEEDED",
               "max_tokens": 16, "concurrency": 1, "top_logprobs": 20}
    recipe, rows, _ = make_recipe(teacher, texts=["I love this phone, great battery.", "It broke after one day."])
    for attempt in range(2):
        run_teach(recipe, rows, tmp_path / "teach")
        out = [json.loads(line) for line in (tmp_path / "teach/labelled.jsonl").read_text().splitlines()]
        assert len(out) == 2
        for row in out:
            dist = row["label_distribution"]
            assert set(dist) <= {"positive", "negative"} and sum(dist.values()) == pytest.approx(1, abs=1e-4)
            assert max(dist, key=dist.get) == row["answer"]["label"]
        assert any(len(row["label_distribution"]) == 2 for row in out), "the alternatives' mass is kept"
        if attempt == 0:
            first = out
    assert out == first  # from the cache: the same distribution, nothing sent again
