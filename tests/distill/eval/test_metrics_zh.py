"""Evaluation metrics on the Chinese receipts of data/zh-receipts: gold scores 1.0 against itself,
normalised answers score the same, and the hallucination check reads Chinese text (no words
needed: a value copied from a Chinese input is grounded, one from another document is not)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.eval.metrics import extraction_metrics, grounded_share, hallucination_rate, occurs_in
from edge_runtime.task import TaskSpec

DATA = Path(__file__).resolve().parents[3] / "data" / "zh-receipts" / "receipts.jsonl"
ROWS = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
TASK = TaskSpec(name="receipts-zh", kind="extraction", input_field="ocr_lines", instructions="提取字段。",
                fields={"company": {}, "date": {"type": "date", "date_order": "ymd"}, "address": {},
                        "total": {"type": "amount"}})
GOLD = [r["fields"] for r in ROWS]
INPUTS = [TASK.input_text(r) for r in ROWS]
NORMALISED = [{**r["fields"], **r["normalised"]} for r in ROWS]  # ISO dates, two-decimal totals


def test_gold_against_gold_is_perfect_and_grounded():
    m = extraction_metrics(TASK, GOLD, GOLD, INPUTS)
    assert m["headline"] == 1.0 and m["exact_match"] == 1.0 and m["f1"] == 1.0
    assert m["hallucination_rate"] == 0.0


def test_normalised_answers_score_as_the_printed_ones_and_are_grounded():
    m = extraction_metrics(TASK, NORMALISED, GOLD, INPUTS)
    assert m["headline"] == 1.0 and m["exact_match"] == 1.0
    assert m["hallucination_rate"] == 0.0  # 2024-03-05 is grounded by 2024年03月05日, 1235.50 by ¥1235.50


def test_values_from_the_next_document_are_wrong_and_hallucinated():
    shifted = GOLD[1:] + GOLD[:1]
    m = extraction_metrics(TASK, shifted, GOLD, INPUTS)
    assert m["field_accuracy"]["company"] == 0.0 and m["field_accuracy"]["address"] == 0.0
    # company and address never occur in another document; dates and totals may (24.03.15 is 2024-03-15 ...)
    assert m["hallucination_rate"] >= 0.5
    assert hallucination_rate(TASK, [{"company": ROWS[1]["fields"]["company"]}], [INPUTS[0]]) == 1.0


@pytest.mark.parametrize("key,value", [
    ("address", "深圳市龙华区民治街道梅龙路32号"),  # printed over two OCR lines
    ("total", "112.18"),
    ("total", "¥112.18"),
    ("date", "2024-03-12"),
    ("date", "2024年3月12日"),  # a different form of the printed 2024-3-12
])
def test_chinese_values_are_found_without_word_boundaries(key, value):
    assert occurs_in(TASK, key, value, INPUTS[1])


@pytest.mark.parametrize("key,value", [
    ("address", "深圳市龙华区梅龙路32号"),  # a part dropped from inside
    ("total", "壹佰壹拾贰元"),  # 112.00: the document has 112.18 and 117.18
    ("total", "112.8"),
    ("date", "2024-03-21"),
])
def test_near_misses_are_not_grounded(key, value):
    assert not occurs_in(TASK, key, value, INPUTS[1])


def test_uppercase_totals_ground_the_value_they_mean():
    text = "价税合计（大写）⊗柒佰捌拾元零伍角"
    assert occurs_in(TASK, "total", "780.50", text) and not occurs_in(TASK, "total", "780.00", text)
    assert grounded_share(TASK, {"company": "", "date": "", "address": "", "total": "780.50"}, text) == 1.0
