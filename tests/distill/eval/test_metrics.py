"""Metric functions on hand-computed cases, edge cases included: invalid outputs, empty
answers, labels outside the set, ties, empty inputs."""

import pytest

from edge_runtime.task import TaskSpec
from distill.eval.metrics import (classification_metrics, example_score, expected_calibration_error,
                                  extraction_metrics, faq_metrics, grounded_share, occurs_in)
from distill.eval.stats import bootstrap_ci, percentile

EXTRACT = TaskSpec(name="r", kind="extraction", instructions="x", input_field="text",
                   fields={"company": {}, "date": {"type": "date"}, "total": {"type": "amount"}})
CLASSES = TaskSpec(name="c", kind="classification", instructions="x", labels=["a", "b", "c"])
FAQ = TaskSpec(name="f", kind="faq", instructions="x", faq_ids=["q1", "q2", "q3"])


def test_extraction_hand_computed():
    refs = [
        {"company": "Acme  Ltd", "date": "25/12/2018", "total": "9.00"},
        {"company": "Beta", "date": "01/02/2019", "total": ""},       # gold has no total
        {"company": "Gamma", "date": "03/03/2019", "total": "5.50"},
    ]
    preds = [
        {"company": "ACME LTD", "date": "2018-12-25", "total": "RM 9.00"},  # all right after normalising
        {"company": "Beta", "date": "02/01/2019", "total": "7.00"},           # date wrong, total invented
        None,                                                                # invalid JSON
    ]
    inputs = ["ACME LTD\nDATE 25/12/2018\nTOTAL RM9.00", "Beta\n01/02/2019", "Gamma 03/03/2019 5.50"]
    m = extraction_metrics(EXTRACT, preds, refs, inputs)
    assert m["field_accuracy"] == {"company": pytest.approx(2 / 3), "date": pytest.approx(1 / 3), "total": pytest.approx(1 / 3)}
    assert m["headline"] == pytest.approx((2 / 3 + 1 / 3 + 1 / 3) / 3)
    # company: tp 2, fn 1 (invalid). date: tp 1, fp 1 (+fn 1), fn 1 (invalid) -> P 1/2, R 1/3.
    assert (m["fields"]["company"]["precision"], m["fields"]["company"]["recall"]) == (1.0, pytest.approx(2 / 3))
    assert m["fields"]["date"]["precision"] == 0.5 and m["fields"]["date"]["recall"] == pytest.approx(1 / 3)
    # total: tp 1 ("9.00"), fp 1 (7.00 where gold is empty, no fn), fn 1 (invalid on 5.50)
    assert (m["fields"]["total"]["tp"], m["fields"]["total"]["fp"], m["fields"]["total"]["fn"]) == (1, 1, 1)
    # micro: tp 4, fp 2, fn 4
    assert m["precision"] == pytest.approx(4 / 6) and m["recall"] == pytest.approx(4 / 8)
    assert m["f1"] == pytest.approx(2 * (4 / 6) * 0.5 / (4 / 6 + 0.5))
    assert m["exact_match"] == pytest.approx(1 / 3)
    assert m["json_validity"] == pytest.approx(2 / 3)
    # six non-empty predicted values; "02/01/2019" and "7.00" do not occur in their input
    assert m["hallucination_rate"] == pytest.approx(2 / 6)


def test_extraction_empty_answers_and_no_rows():
    empty = {"company": "", "date": "", "total": ""}
    m = extraction_metrics(EXTRACT, [dict(empty)], [dict(empty)], ["anything"])
    assert m["headline"] == 1.0 and m["exact_match"] == 1.0  # empty matches empty
    assert m["precision"] is None and m["recall"] is None and m["hallucination_rate"] is None
    m = extraction_metrics(EXTRACT, [None], [dict(empty)], ["x"])
    assert m["headline"] == 0.0 and m["exact_match"] == 0.0 and m["json_validity"] == 0.0  # invalid is never right
    m = extraction_metrics(EXTRACT, [], [], [])
    assert m["headline"] is None and m["exact_match"] is None


def test_invalid_json_through_the_task_parser_scores_zero():
    answer, problems = EXTRACT.parse('{"company": "Acme", "date": ')  # cut-off JSON
    assert answer is None and problems
    assert example_score(EXTRACT, answer, {"company": "Acme", "date": "", "total": ""}) == 0.0
    assert example_score(EXTRACT, {"company": "acme", "date": "", "total": "x"}, {"company": "Acme", "date": "", "total": ""}) == pytest.approx(2 / 3)


def test_grounding_accepts_reformatted_dates_and_amounts():
    text = "BOOK TA .K(TAMAN DAYA)\n25/12/2018 8:13 PM\nTOTAL RM 1,234.50"
    assert occurs_in(EXTRACT, "company", "book ta .k (taman daya)", text)  # spacing and case differ
    assert occurs_in(EXTRACT, "date", "2018-12-25", text)
    assert occurs_in(EXTRACT, "total", "1234.5", text)
    assert not occurs_in(EXTRACT, "total", "99.00", text)
    assert not occurs_in(EXTRACT, "company", "Other Shop", text)
    assert grounded_share(EXTRACT, {"company": "Other", "date": "25/12/2018", "total": ""}, text) == 0.5
    assert grounded_share(EXTRACT, None, text) == 0.0


def test_classification_hand_computed_with_outside_labels_and_invalid():
    refs = [{"label": l} for l in ["a", "a", "b", "c", "zz"]]  # "zz" is not in the label set
    preds = [{"label": "a"}, {"label": "b"}, {"label": "b"}, None, {"label": "a"}]
    m = classification_metrics(CLASSES, preds, refs, [0.9, 0.8, 0.6, None, 0.95])
    assert m["accuracy"] == pytest.approx(2 / 5)
    # a: tp1 fp1 fn1 -> F1 .5; b: tp1 fp1 fn0 -> P .5 R 1 F1 2/3; c: tp0 -> 0; zz: 0
    assert m["per_class"]["a"]["f1"] == pytest.approx(0.5)
    assert m["per_class"]["b"]["f1"] == pytest.approx(2 / 3)
    assert m["per_class"]["c"]["f1"] == 0.0 and m["per_class"]["zz"]["f1"] == 0.0
    assert m["macro_f1"] == pytest.approx((0.5 + 2 / 3) / 4)
    assert m["gold_labels_outside_set"] == ["zz"]
    cm = m["confusion"]
    assert cm["rows"] == ["a", "b", "c", "zz"] and cm["columns"] == ["a", "b", "c", "zz", "(invalid)"]
    assert cm["matrix"] == [[1, 1, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 0, 0, 1], [1, 0, 0, 0, 0]]
    # ECE over the 4 with confidence: bins .9 -> {.9 right, .95 wrong}, .8 -> {.8 wrong}, .6 -> {.6 right}
    expected = 2 / 4 * abs(0.925 - 0.5) + 1 / 4 * abs(0.8 - 0) + 1 / 4 * abs(0.6 - 1)
    assert m["ece"] == pytest.approx(expected)


def test_macro_f1_ignores_labels_nobody_used_and_ece_edges():
    m = classification_metrics(CLASSES, [{"label": "a"}, {"label": "b"}], [{"label": "a"}, {"label": "b"}])
    assert m["macro_f1"] == 1.0 and "c" not in m["per_class"] and m["ece"] is None
    assert expected_calibration_error([1.0, 1.0], [True, True]) == 0.0  # 1.0 lands in the top bin
    assert expected_calibration_error([None], [True]) is None


def test_faq_hand_computed():
    refs = [{"faq_id": x} for x in ["q1", "q2", "none", "none", "q3"]]
    preds = [{"faq_id": "q1"}, {"faq_id": "none"}, {"faq_id": "none"}, {"faq_id": "q2"}, None]
    cands = [["q1", "q2"], ["q3", "q2"], [], ["q2"], ["q1", "q2", "q3"]]
    m = faq_metrics(FAQ, preds, refs, cands, ks=(1, 2, 3))
    assert m["top1"] == pytest.approx(2 / 5)
    assert m["recall_at_k"] == {"1": pytest.approx(1 / 3), "2": pytest.approx(2 / 3), "3": 1.0}
    assert m["no_answer_precision"] == 0.5 and m["no_answer_recall"] == 0.5
    m = faq_metrics(FAQ, [{"faq_id": "q1"}], [{"faq_id": "q1"}])
    assert m["recall_at_k"] is None and m["no_answer_precision"] is None


def test_bootstrap_and_percentiles_with_ties():
    assert bootstrap_ci([1.0] * 10, 200) == [1.0, 1.0]
    lo, hi = bootstrap_ci([0, 1] * 20, 500)
    assert 0.3 < lo < 0.5 < hi < 0.7
    assert bootstrap_ci([0, 1] * 20, 500) == bootstrap_ci([0, 1] * 20, 500)  # fixed seed
    assert bootstrap_ci([], 100) is None and bootstrap_ci([1.0], 0) is None
    assert percentile([2.0, 2.0, 2.0, 9.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([], 95) is None
