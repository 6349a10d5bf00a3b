"""The Chinese receipts and VAT invoices of data/zh-receipts through the task spec: parsing,
the normalisers on every printed form, and the router's value-in-input check on Chinese text."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from edge_runtime.normalise import normalise_amount, normalise_date, value_spans
from edge_runtime.router import answer_confidence, value_in_input
from edge_runtime.task import TaskSpec, example_score

DATA = Path(__file__).resolve().parents[2] / "data" / "zh-receipts" / "receipts.jsonl"
ROWS = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
TASK = TaskSpec(name="receipts-zh", kind="extraction", input_field="ocr_lines",
                instructions="从这张小票或发票的文字中提取销售方名称、日期、销售方地址和应付总额，按原样抄写。只用 JSON 回答。",
                fields={"company": {}, "date": {"type": "date", "date_order": "ymd"}, "address": {},
                        "total": {"type": "amount"}})
IDS = [r["id"] for r in ROWS]


def normalised_answer(row):
    """The answer a model that normalises (ISO date, plain two-decimal total) would give."""
    return {**row["fields"], "date": row["normalised"]["date"], "total": row["normalised"]["total"]}


def test_the_set_is_big_enough_and_covers_every_form_the_issue_names():
    assert len(ROWS) >= 20 and sum(r["kind"] == "vat_invoice" for r in ROWS) >= 8
    dates = [r["fields"]["date"] for r in ROWS]
    totals = [t for r in ROWS for t in r["total_forms"]]
    assert any(re.fullmatch(r"\d{4}年\d{1,2}月\d{1,2}日", d) for d in dates)
    assert any(re.fullmatch(r"[〇一二三四五六七八九十]+年.+月.+日", d) for d in dates)
    assert any(re.fullmatch(r"\d{4}-\d{1,2}-\d{1,2}", d) for d in dates) and "24.03.15" in dates
    assert any(re.fullmatch(r"¥\d{1,3}(,\d{3})+\.\d\d", t) for t in totals)
    assert any(re.fullmatch(r"\d+(\.\d+)?元", t) for t in totals)
    assert any(t.startswith(("RMB", "CNY", "人民币")) for t in totals)
    assert sum(bool(re.fullmatch(r"[壹贰叁肆伍陆柒捌玖拾佰仟万零]+元.*", t)) for t in totals) >= 10


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_gold_parses_and_scores_one_against_itself(row):
    answer, problems = TASK.parse(TASK.render_answer(row["fields"]))
    assert problems == [] and answer == row["fields"]
    assert "### 输入：" in TASK.render_prompt(row)  # a Chinese task gets the Chinese plain format
    assert example_score(TASK, answer, row["fields"]) == 1.0


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_every_printed_form_normalises_to_the_same_value(row):
    assert TASK.normalise("date", row["fields"]["date"]) == row["normalised"]["date"]
    for form in row["total_forms"]:
        assert normalise_amount(form) == row["normalised"]["total"], form
        assert form in "\n".join(row["ocr_lines"])
    # a normalised answer is as right as a copied one
    assert example_score(TASK, normalised_answer(row), row["fields"]) == 1.0


@pytest.mark.parametrize("value,expected", [
    ("⊗壹仟贰佰叁拾伍元伍角", "1235.50"),  # the mark printed before a VAT invoice's uppercase total
    ("⊗贰仟陆佰捌拾元整", "2680.00"),
    ("壹仟贰佰叁拾伍元伍", "壹仟贰佰叁拾伍元伍"),  # a digit without its unit is not an amount
    ("⊗", "⊗"),
])
def test_the_invoice_mark_and_its_near_misses(value, expected):
    assert normalise_amount(value) == expected


def test_year_first_is_the_order_for_two_digit_years_on_chinese_documents():
    assert normalise_date("24.03.15", "ymd") == "2024-03-15"
    assert normalise_date("24.03.15", "dmy") == "2015-03-24"  # why the task sets date_order: ymd


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_copied_and_normalised_values_are_in_the_input(row):
    for answer in (row["fields"], normalised_answer(row)):
        for key, value in answer.items():
            assert value_in_input(TASK, row, key, value), (key, value)


def test_a_value_from_another_document_is_not_in_the_input():
    a, b = ROWS[0], ROWS[1]
    for key in ("company", "address", "total", "date"):
        assert not value_in_input(TASK, a, key, b["fields"][key]), key
    assert value_in_input(TASK, a, "company", "杭州云栖")  # part of the name is still copied text
    assert not value_in_input(TASK, a, "company", "杭州云栖餐饮有限公司")  # words dropped from inside: not a copy


def test_full_width_and_ascii_forms_count_as_the_same_text():
    row = {"ocr_lines": ["鲜丰汇超市（龙华店）", "合计：￥１２８．５０", "日期：２０２４年４月６日"]}
    assert value_in_input(TASK, row, "company", "鲜丰汇超市(龙华店)")
    assert value_in_input(TASK, row, "total", "128.50") and value_in_input(TASK, row, "date", "2024-04-06")
    assert not value_in_input(TASK, row, "total", "128.00")


def test_the_spans_found_in_a_vat_invoice():
    text = "\n".join(ROWS[0]["ocr_lines"])
    assert {normalise_amount(s) for s in value_spans(text, "amount")} >= {"1235.50", "1165.57", "69.93"}
    assert "2024年03月05日" in value_spans(text, "date")


def test_router_confidence_keeps_a_grounded_chinese_answer_and_zeroes_an_invented_one():
    row = ROWS[0]
    good = TASK.render_answer(row["fields"])
    conf, per = answer_confidence(TASK, row, row["fields"], good, [len(good.encode())], [0.9])
    assert conf > 0.5 and all(v > 0 for v in per.values())
    invented = {**row["fields"], "company": "杭州云栖餐饮有限公司"}
    text = TASK.render_answer(invented)
    conf, per = answer_confidence(TASK, row, invented, text, [len(text.encode())], [0.9])
    assert conf == 0.0 and per["company"] == 0.0 and per["total"] > 0
