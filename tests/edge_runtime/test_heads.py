"""The classifier head file: round trip, calibrated distribution, and refusal of bad files."""

import numpy as np
import pytest

from edge_runtime.heads import ClassifierHead, HeadError


def _head(k=4, h=8, t=1.0, seed=0):
    rng = np.random.default_rng(seed)
    return ClassifierHead(rng.normal(size=(k, h)).astype(np.float32), [f"l{i}" for i in range(k)], t)


def test_round_trip_keeps_weights_labels_and_temperature():
    head = _head(t=1.7)
    back = ClassifierHead.from_bytes(head.to_bytes())
    assert back.labels == head.labels and back.temperature == pytest.approx(1.7)
    assert np.array_equal(back.weight, head.weight)


def test_probs_are_a_distribution_and_temperature_flattens_it():
    head, hot = _head(t=1.0), _head(t=5.0)
    x = np.random.default_rng(1).normal(size=8)
    p, q = head.probs(x), hot.probs(x)
    assert p.sum() == pytest.approx(1.0) and q.sum() == pytest.approx(1.0)
    assert p.argmax() == q.argmax() and q.max() < p.max()  # same answer, less sure
    answer, prob, alternatives = head.answer(p)
    assert answer == {"label": head.labels[int(p.argmax())]} and prob == pytest.approx(p.max())
    assert len(alternatives) == 3 and all(a["probability"] <= prob for a in alternatives)
    assert answer["label"] not in {a["label"] for a in alternatives}


def test_hidden_size_mismatch_names_the_problem():
    with pytest.raises(HeadError, match="another model"):
        _head().probs(np.zeros(9))


@pytest.mark.parametrize("mutate, words", [
    (lambda z: z.update(weight=np.zeros((3, 8), np.float32)), "does not match"),
    (lambda z: z.update(weight=np.full((4, 8), np.nan, np.float32)), "non-finite"),
    (lambda z: z.update(temperature=np.float64(0.0)), "non-finite"),
    (lambda z: z.update(pooling=np.str_("mean")), "pooling"),
    (lambda z: z.pop("labels"), "not a classifier head"),
])
def test_bad_head_files_are_refused_with_a_reason(mutate, words):
    import io

    head = _head()
    parts = {"weight": head.weight, "labels": np.array(head.labels), "temperature": np.float64(1.0),
             "pooling": np.str_("last")}
    mutate(parts)
    buf = io.BytesIO()
    np.savez(buf, **parts)
    with pytest.raises(HeadError, match=words):
        ClassifierHead.from_bytes(buf.getvalue())


def test_garbage_and_pickles_are_refused():
    with pytest.raises(HeadError):
        ClassifierHead.from_bytes(b"not an npz at all")
    import io

    buf = io.BytesIO()
    np.savez(buf, weight=np.zeros((2, 2)), labels=np.array([{"a": 1}, {"b": 2}], dtype=object))
    with pytest.raises(HeadError):  # object arrays need pickle, which is never allowed
        ClassifierHead.from_bytes(buf.getvalue())
