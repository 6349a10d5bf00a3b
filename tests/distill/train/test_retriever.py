"""Training helpers of the retriever student: the split, BM25 hard negatives with the query left
out of its own retrieval, the fusion weight and abstention fitted on validation rows."""

import numpy as np
import pytest

from distill.train.retriever import (RetrieverDataError, abstention_rows, choose_weight, fit_abstention,
                                     hard_negatives, split_rows)
from edge_runtime.retrieval import FaqEntry, KnowledgeBase
from edge_runtime.retriever import sigmoid
from edge_runtime.task import TaskSpec


def _kb():
    return KnowledgeBase([
        FaqEntry("a", "reset a forgotten password", queries=("locked out of login spreadsheet",)),
        FaqEntry("b", "share a spreadsheet with a colleague"),
        FaqEntry("c", "export contacts to a file"),
    ])


def _task():
    return TaskSpec(name="t", kind="faq", instructions="pick", input_field="query")


def test_no_training_query_retrieves_itself():
    kb, query = _kb(), "locked out of login spreadsheet"  # a known phrasing of "a", indexed with it
    assert int(np.argmax(kb.scores(query))) == 0  # as indexed, the query finds itself
    held_out = kb.scores(query, held_out=True)
    assert held_out[0] == 0 and held_out[1] > 0  # left out: only "b" shares a word ("spreadsheet")
    assert hard_negatives(kb, query, gold=0, n=3) == [1]  # never the gold entry, never an unrelated one


def test_split_keeps_none_rows_for_validation_and_names_bad_rows():
    rows = [{"query": f"password question {i}", "answer": {"faq_id": "a"}} for i in range(20)]
    rows += [{"query": "what is the weather", "answer": {"faq_id": "none"}}]
    train, val, none = split_rows(_task(), rows, _kb(), 0.2, seed=0)
    assert (len(train), len(val), none) == (16, 4, [("what is the weather", None)])
    assert split_rows(_task(), rows, _kb(), 0.2, seed=0)[1] == val  # fixed seed
    with pytest.raises(RetrieverDataError, match="row r9: faq_id 'zzz' is not in the knowledge base"):
        split_rows(_task(), [{"id": "r9", "query": "q", "answer": {"faq_id": "zzz"}}], _kb(), 0.1, 0)


def test_fusion_weight_is_chosen_by_validation_recall():
    dense = np.array([[0.9, 0.1, 0.0], [0.1, 0.9, 0.0]])  # dense right on both queries
    bm25 = np.array([[0.0, 2.0, 1.0], [3.0, 0.0, 1.0]])  # BM25 wrong on both
    w, figures = choose_weight(dense, bm25, [0, 1], k=60)
    assert w == 1.0 and figures["1.0"] == 1.0 and figures["0.0"] == 0.0


def test_abstention_rows_add_each_query_without_its_own_entry():
    dense = np.array([[0.9, 0.2, 0.1], [0.3, 0.2, 0.1]])
    x, right, unanswerable = abstention_rows(dense, np.zeros((2, 3)), [0, None], 1.0, 60)
    assert right.tolist() == [True, False, False] and unanswerable.tolist() == [False, True, True]
    assert x[1][0] == pytest.approx(0.2)  # entry 0 removed: the best left is entry 1's cosine


def test_abstention_fitted_on_validation_separates_and_follows_the_expected_rate():
    rng = np.random.default_rng(0)
    cos_right, cos_none = rng.normal(0.8, 0.08, 200), rng.normal(0.5, 0.08, 200)
    x = np.stack([np.r_[cos_right, cos_none], np.full(400, 0.1), np.ones(400)], axis=1)
    right, unanswerable = np.r_[np.ones(200, bool), np.zeros(200, bool)], np.r_[np.zeros(200, bool), np.ones(200, bool)]
    beta = fit_abstention(x, right, unanswerable, rate=0.05)
    p = sigmoid(x @ beta)
    assert (p[:200] >= 0.5).mean() > 0.9 and (p[200:] < 0.5).mean() > 0.5
    abstained = {rate: float((sigmoid(x @ fit_abstention(x, right, unanswerable, rate)) < 0.5).mean())
                 for rate in (0.02, 0.2, 0.5)}
    assert abstained[0.02] < abstained[0.2] < abstained[0.5]  # expecting more unanswerable queries abstains more
    never = fit_abstention(x[:200], right[:200], unanswerable[:200], 0.05)  # no unanswerable rows: never abstain
    assert (sigmoid(x @ never) >= 0.5).all()
