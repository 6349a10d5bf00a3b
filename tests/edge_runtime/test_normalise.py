"""Normalisers: every date and amount form, Chinese and English, and the neighbours of each
form that must stay text (compared as written, never guessed into a date or a number)."""

import pytest

from edge_runtime.normalise import normalise_amount, normalise_date, norm_text
from edge_runtime.task import NORMALISERS, FieldSpec, TaskSpec


@pytest.mark.parametrize("value, expected", [
    # English and Malaysian receipts, as before
    ("25/12/2018", "2018-12-25"), ("12-01-19", "2019-01-12"), ("1/1/2019", "2019-01-01"), ("2018-12-25", "2018-12-25"),
    ("2018/12/25", "2018-12-25"), ("05.01.18", "2018-01-05"), ("25 Dec 2018", "2018-12-25"), ("25 DECEMBER 2018", "2018-12-25"),
    ("Dec 25, 2018", "2018-12-25"), ("25-MAR-2018", "2018-03-25"), ("02/JAN/2018", "2018-01-02"),
    # Chinese
    ("2024年3月5日", "2024-03-05"), ("2024年03月05日", "2024-03-05"), ("2024 年 3 月 5 日", "2024-03-05"),
    ("2024年3月5号", "2024-03-05"), ("24年3月5日", "2024-03-05"), ("2024-3-5", "2024-03-05"), ("2024.3.5", "2024-03-05"),
    ("二〇二四年三月五日", "2024-03-05"), ("二零二四年十二月三十一日", "2024-12-31"), ("一九九九年十月二十日", "1999-10-20"),
    ("２０２４年３月５日", "2024-03-05"),  # full-width digits
])
def test_dates(value, expected):
    assert normalise_date(value) == expected


def test_two_digit_year_dates_follow_the_field_order():
    assert normalise_date("24.03.05") == "2005-03-24"  # dmy, the default (SROIE receipts)
    assert normalise_date("24.03.05", "ymd") == "2024-03-05"  # Chinese documents
    assert normalise_date("03/05/24", "mdy") == "2024-03-05"
    assert normalise_date("2024-3-5", "mdy") == normalise_date("5/3/2024", "dmy") == "2024-03-05"  # 4-digit years are unambiguous
    task = TaskSpec(name="fapiao", kind="extraction", instructions="i",
                    fields={"date": FieldSpec(type="date", date_order="ymd"), "total": FieldSpec(type="amount")})
    assert task.normalise("date", "24.03.05") == task.normalise("date", "2024年3月5日") == "2024-03-05"
    with pytest.raises(ValueError, match="date order"):
        normalise_date("24.03.05", "ydm")


@pytest.mark.parametrize("value", [
    "2024年13月5日", "2024年2月30日", "二〇二四年三月", "3月5日", "2024年3月5", "二〇二四年十三月五日", "二〇年三月五日x",
    "2024-13-05", "24.03.05.01", "2024/02/30", "123.45.6789", "2024-3-5 发票", "合计2024年3月5日", "二〇二四四年三月五日",
    "1234", "32/01/2019", "ADA",
])
def test_not_dates_stay_text(value):
    assert normalise_date(value) == norm_text(value)
    assert normalise_date(value, "ymd") == norm_text(value)


@pytest.mark.parametrize("value, expected", [
    # as before
    ("RM 1,234.5", "1234.50"), ("60.30", "60.30"), ("$9.99", "9.99"), ("-9.99", "-9.99"), ("RM9.99", "9.99"),
    # Chinese currency marks and codes, thousands separators
    ("¥1,234.50", "1234.50"), ("￥1,234.50", "1234.50"), ("1234.5元", "1234.50"), ("1,234.50 元", "1234.50"),
    ("RMB 1,234.50", "1234.50"), ("CNY1234.5", "1234.50"), ("rmb12", "12.00"), ("人民币1234.5元", "1234.50"),
    ("1,234,567元", "1234567.00"), ("100元整", "100.00"),
    # upper-case financial numerals with 元/角/分, and lower-case ones
    ("壹仟贰佰叁拾肆元伍角", "1234.50"), ("壹仟贰佰叁拾肆元伍角陆分", "1234.56"), ("壹佰元零伍分", "100.05"),
    ("壹佰元整", "100.00"), ("人民币壹万零伍拾元整", "10050.00"), ("贰拾圆正", "20.00"), ("伍角", "0.50"), ("陆分", "0.06"),
    ("伍角陆分", "0.56"), ("¥壹仟贰佰叁拾肆元伍角", "1234.50"), ("壹仟贰佰叁拾肆", "1234.00"), ("一百二十元五角", "120.50"),
    ("两千元", "2000.00"), ("12元5角", "12.50"), ("叁拾万元整", "300000.00"),
])
def test_amounts(value, expected):
    assert normalise_amount(value) == expected


@pytest.mark.parametrize("value", [
    "1,23", "12,34.5", "1234.5.6元", "¥", "元", "RMB", "整", "12元34", "1.5元5角", "伍角壹元", "壹仟贰佰叁拾肆元伍角伍角",
    "伍分角", "仟壹元", "壹拾拾元", "五块", "RMB1234ABC", "12元5角3", "合计壹佰元", "MRMB5",
])
def test_not_amounts_stay_text(value):
    assert normalise_amount(value) == norm_text(value)


def test_normalisers_by_name_and_text():
    assert set(NORMALISERS) == {"text", "date", "amount"}
    assert NORMALISERS["date"]("2024年3月5日") == "2024-03-05" and NORMALISERS["amount"]("¥5") == "5.00"
    assert norm_text(" 上海  某某 shop ") == "上海 某某 SHOP"
