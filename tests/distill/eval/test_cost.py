"""Cost per 1,000 requests, monthly bills, break-even and the hybrid curve, by hand."""

import pytest

from distill.eval.cost import break_even, hybrid, monthly, predictor_cost


def _costs():
    teacher = predictor_cost("api", mean_prompt_tokens=1000, mean_completion_tokens=100, mean_latency_s=2.0,
                             price_in_per_m=0.5, price_out_per_m=2.0)
    student = predictor_cost("self-hosted", mean_prompt_tokens=1000, mean_completion_tokens=100,
                             mean_latency_s=1.8, usd_per_hour=0.02)
    return teacher, student


def test_api_and_self_hosted_cost_per_request():
    teacher, student = _costs()
    assert teacher["usd_per_request"] == pytest.approx((1000 * 0.5 + 100 * 2.0) / 1e6)  # $0.0007
    assert teacher["cost_per_1k_usd"] == pytest.approx(0.7)
    assert student["usd_per_request"] == pytest.approx(0.02 / 3600 * 1.8)  # $0.00001
    assert student["requests_per_hour"] == pytest.approx(2000)
    billed = predictor_cost("api", mean_prompt_tokens=0, mean_completion_tokens=0, mean_latency_s=None,
                            paid_usd_per_request=0.003)
    assert billed["cost_per_1k_usd"] == pytest.approx(3.0)
    assert predictor_cost("self-hosted", mean_prompt_tokens=1, mean_completion_tokens=1, mean_latency_s=None)["cost_per_1k_usd"] is None


def test_monthly_counts_whole_always_on_devices():
    teacher, student = _costs()
    assert monthly(teacher, 10_000)["usd_per_month"] == pytest.approx(10_000 * 30 * 0.0007)
    m = monthly(student, 100_000)  # 48,000 requests a day per device -> 3 devices
    assert m["devices"] == 3 and m["usd_per_month"] == pytest.approx(3 * 0.02 * 730)
    assert monthly(student, 1)["devices"] == 1


def test_break_even_and_payback():
    teacher, student = _costs()
    be = break_even(student, teacher, 10_000, one_time_usd=21.0)
    # one device: $0.48/day; the teacher costs $0.0007 per request -> about 686 requests a day
    assert be["break_even_requests_per_day"] == pytest.approx(0.02 * 24 / 0.0007)
    saving = 10_000 * 30 * 0.0007 - 0.02 * 730
    assert be["saving_usd_per_month"] == pytest.approx(saving)
    assert be["payback_months"] == pytest.approx(21.0 / saving)
    assert break_even(student, teacher, 10_000)["payback_months"] is None  # unknown one-time cost


def test_hybrid_escalates_below_threshold_and_invalid_answers():
    teacher, student = _costs()
    rows = [
        {"id": "1", "score": 1.0, "confidence": 0.9, "valid": True},
        {"id": "2", "score": 0.0, "confidence": 0.4, "valid": True},
        {"id": "3", "score": 0.5, "confidence": 0.7, "valid": True},
        {"id": "4", "score": 0.0, "confidence": 0.99, "valid": False},  # invalid: always escalated
    ]
    teacher_scores = {"1": 1.0, "2": 1.0, "3": 1.0, "4": 0.5}
    pts = {p["threshold"]: p for p in hybrid(rows, teacher_scores, student, teacher, [0.0, 0.7, 0.95], 1000)}
    assert pts[0.0]["escalation_rate"] == 0.25 and pts[0.0]["quality"] == pytest.approx((1 + 0 + 0.5 + 0.5) / 4)
    # 0.7: a confidence equal to the threshold (row 3) stays with the student (a tie)
    assert pts[0.7]["escalation_rate"] == 0.5 and pts[0.7]["quality"] == pytest.approx((1 + 1 + 0.5 + 0.5) / 4)
    assert pts[0.95]["escalation_rate"] == 1.0 and pts[0.95]["quality"] == pytest.approx(3.5 / 4)
    assert pts[0.7]["cost_per_1k_usd"] == pytest.approx((student["usd_per_request"] + 0.5 * teacher["usd_per_request"]) * 1000)
    assert hybrid([], teacher_scores, student, teacher, [0.5], 1000) == []
