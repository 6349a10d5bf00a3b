"""The retriever head file (FAQ): rank fusion, abstention, round trip and refusal of bad files."""

import numpy as np
import pytest

from edge_runtime.retriever import RetrieverError, RetrieverHead, fuse, ranks, unit


def _head(n=5, h=8, seed=0, **kw):
    rng = np.random.default_rng(seed)
    return RetrieverHead([f"faq-{i}" for i in range(n)], unit(rng.normal(size=(n, h))), **kw)


def test_ranks_leave_entries_without_a_bm25_match_unranked():
    r = ranks(np.array([0.0, 3.0, 1.0]), present=np.array([False, True, True]))
    assert r.tolist() == [np.inf, 1.0, 2.0]


def test_fusion_weight_moves_the_answer_between_dense_and_bm25():
    dense, bm25 = np.array([0.9, 0.1, 0.5, 0.3]), np.array([0.0, 4.0, 1.0, 0.0])
    assert int(np.argmax(fuse(dense, bm25, 1.0))) == 0  # dense alone
    assert int(np.argmax(fuse(dense, bm25, 0.0))) == 1  # BM25 alone
    assert int(np.argmax(fuse(dense, bm25, 0.5))) == 2  # second in both beats first in one only


def test_answer_abstains_below_the_calibrated_threshold():
    head = _head(calibration=np.array([20.0, 0.0, -10.0]))  # p = sigmoid(20 * cosine - 10): 0.5 at cosine 0.5
    near = head.entries[2] + 0.05 * head.entries[0]  # close to entry 2: cosine ~ 1
    answer, p, alternatives, details = head.answer(near, np.zeros(5))
    assert answer == {"faq_id": "faq-2"} and p > 0.99 and not details["abstained"]
    assert len(alternatives) == 3 and "faq-2" not in {a["faq_id"] for a in alternatives}
    far = -head.entries.sum(axis=0)  # unlike every entry
    answer, confidence, alternatives, details = head.answer(far, np.zeros(5))
    assert answer == {"faq_id": "none"} and details["abstained"]
    assert confidence == pytest.approx(1 - details["best_probability"])  # how sure abstaining is right
    assert alternatives[0]["faq_id"] == details["best"]  # the entry it would have given comes first


def test_an_uncalibrated_head_never_abstains():
    head = _head()
    answer, p, _, _ = head.answer(-head.entries.sum(axis=0), np.zeros(5))
    assert answer["faq_id"] != "none" and p > 0.99


def test_round_trip_keeps_everything():
    head = _head(dense_weight=0.25, rrf_k=30, calibration=np.array([3.0, 1.0, -2.0]), threshold=0.4)
    back = RetrieverHead.from_bytes(head.to_bytes())
    assert back.ids == head.ids and np.array_equal(back.entries, head.entries)
    assert (back.dense_weight, back.rrf_k, back.threshold) == (0.25, 30, 0.4)
    assert back.calibration.tolist() == [3.0, 1.0, -2.0] and back.query_prefix == head.query_prefix


def test_hidden_size_mismatch_names_the_problem():
    with pytest.raises(RetrieverError, match="another model"):
        _head().answer(np.zeros(9), np.zeros(5))


@pytest.mark.parametrize("change, words", [
    ({"entries": np.zeros((4, 8), np.float32)}, "do not match"),
    ({"calibration": np.array([np.nan, 0.0, 0.0])}, "non-finite"),
    ({"dense_weight": np.float64(1.5)}, "dense_weight"),
    ({"pooling": np.str_("mean")}, "pooling"),
])
def test_bad_files_are_refused_with_the_reason(change, words, tmp_path):
    import io

    with np.load(io.BytesIO(_head().to_bytes())) as z:
        fields = dict(z)
    fields.update(change)
    path = tmp_path / "retriever.npz"
    np.savez(path, **fields)
    with pytest.raises(RetrieverError, match=words):
        RetrieverHead.load(path)
    path.write_bytes(b"not a zip")
    with pytest.raises(RetrieverError, match="not a retriever head file"):
        RetrieverHead.load(path)


def test_bm25_scores_follow_the_heads_order_and_refuse_a_foreign_kb():
    from edge_runtime.retrieval import FaqEntry, KnowledgeBase
    from edge_runtime.retriever import bm25_scores

    kb = KnowledgeBase([FaqEntry("a", "reset my password"), FaqEntry("b", "delete my account")])
    assert bm25_scores(kb, "delete account", ["b", "a"])[0] > 0 == bm25_scores(kb, "delete account", ["b", "a"])[1]
    with pytest.raises(RetrieverError, match="another knowledge base"):
        bm25_scores(kb, "x", ["a", "zzz"])
