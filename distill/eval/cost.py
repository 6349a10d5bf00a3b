"""Money: cost per 1,000 requests, the monthly bill at the recipe's volume, the saving, the
break-even volume, and the hybrid setup (student first, unsure cases to the teacher).

Two ways a predictor costs money:
- API (or answers standing in for one): tokens x price per million tokens.
- Self-hosted: a device billed by the hour, whether busy or not. Per request that is the
  hourly price x the measured seconds per request (at full use); per month it is the
  number of always-on devices the volume needs x the hourly price x 730 hours.
Every assumption (prices, the hardware rate and where it came from) is returned with the
numbers so the report can print it next to them.
"""

from __future__ import annotations

import math
from typing import Any

HOURS_PER_MONTH = 730.0
DAYS_PER_MONTH = 30.0

# Hardware price per hour by device profile: what owning (or renting) one costs.
# router-8gb: a ~$150 ARM router amortised over 3 years plus power (~$0.006/h);
# edge-box: a ~$600 mini PC over 3 years plus power (~$0.03/h);
# gpu-server: an on-demand cloud GPU of the L4/A10 class (~$0.80/h).
PROFILE_USD_PER_HOUR = {"router-8gb": 0.006, "edge-box": 0.03, "gpu-server": 0.80}
DEFAULT_USD_PER_HOUR = 0.03


def hardware_rate(recipe) -> tuple[float, str]:
    """The self-hosted hourly price and where it came from."""
    if recipe.eval.hardware_usd_per_hour is not None:
        return recipe.eval.hardware_usd_per_hour, "eval.hardware_usd_per_hour"
    profile = recipe.target.profile
    if profile in PROFILE_USD_PER_HOUR:
        return PROFILE_USD_PER_HOUR[profile], f"default for profile {profile}"
    return DEFAULT_USD_PER_HOUR, f"default (profile {profile} has no price; set eval.hardware_usd_per_hour)"


def teacher_prices(recipe) -> tuple[float, float, str]:
    """USD per million prompt and completion tokens for the teacher."""
    t = recipe.teacher
    pin, pout = getattr(t, "price_input_per_m", None), getattr(t, "price_output_per_m", None)
    if pin is not None and pout is not None:
        return pin, pout, "teacher.price_*_per_m"
    return recipe.eval.teacher_price_input_per_m, recipe.eval.teacher_price_output_per_m, "eval.teacher_price_*_per_m"


def predictor_cost(hosting: str, *, mean_prompt_tokens: float, mean_completion_tokens: float,
                   mean_latency_s: float | None, paid_usd_per_request: float | None = None,
                   price_in_per_m: float = 0.0, price_out_per_m: float = 0.0,
                   usd_per_hour: float = DEFAULT_USD_PER_HOUR) -> dict[str, Any]:
    """Cost per request and per 1,000 requests for one predictor."""
    if hosting in ("api", "dataset"):
        if paid_usd_per_request:
            per_request, basis = paid_usd_per_request, "billed cost per request"
        else:
            per_request = (mean_prompt_tokens * price_in_per_m + mean_completion_tokens * price_out_per_m) / 1e6
            basis = f"tokens x ${price_in_per_m}/M in, ${price_out_per_m}/M out"
        return {"hosting": hosting, "usd_per_request": per_request, "cost_per_1k_usd": per_request * 1000,
                "basis": basis, "requests_per_hour": None}
    if not mean_latency_s:
        return {"hosting": hosting, "usd_per_request": None, "cost_per_1k_usd": None,
                "basis": "no measured latency", "requests_per_hour": None}
    per_request = usd_per_hour / 3600 * mean_latency_s
    return {"hosting": hosting, "usd_per_request": per_request, "cost_per_1k_usd": per_request * 1000,
            "basis": f"${usd_per_hour}/h / {3600 / mean_latency_s:.0f} requests/h measured",
            "requests_per_hour": 3600 / mean_latency_s, "usd_per_hour": usd_per_hour}


def monthly(cost: dict[str, Any], requests_per_day: int) -> dict[str, Any]:
    """The monthly bill at a daily volume: linear for APIs, whole devices for self-hosting."""
    volume = requests_per_day * DAYS_PER_MONTH
    if cost.get("usd_per_request") is None:
        return {"requests_per_month": volume, "usd_per_month": None, "devices": None}
    if cost["hosting"] != "self-hosted":
        return {"requests_per_month": volume, "usd_per_month": volume * cost["usd_per_request"], "devices": None}
    per_device_day = cost["requests_per_hour"] * 24
    devices = max(1, math.ceil(requests_per_day / per_device_day))
    return {"requests_per_month": volume, "usd_per_month": devices * cost["usd_per_hour"] * HOURS_PER_MONTH,
            "devices": devices}


def break_even(student: dict[str, Any], teacher: dict[str, Any], requests_per_day: int,
               one_time_usd: float | None = None) -> dict[str, Any]:
    """When the student pays off: the daily volume at which one always-on device costs
    what the teacher would, the monthly saving at the recipe's volume, and how many months
    the one-time cost of distilling (the teacher's labelling bill) takes to earn back."""
    t_req = teacher.get("usd_per_request")
    out: dict[str, Any] = {"break_even_requests_per_day": None, "saving_usd_per_month": None,
                           "saving_fraction": None, "payback_months": None, "one_time_usd": one_time_usd}
    if not t_req or student.get("usd_per_request") is None:
        return out
    if student["hosting"] == "self-hosted":
        out["break_even_requests_per_day"] = student["usd_per_hour"] * 24 / t_req
    s_month = monthly(student, requests_per_day)["usd_per_month"]
    t_month = monthly(teacher, requests_per_day)["usd_per_month"]
    saving = t_month - s_month
    out["saving_usd_per_month"] = saving
    out["saving_fraction"] = saving / t_month if t_month else None
    if saving > 0 and one_time_usd is not None:
        out["payback_months"] = one_time_usd / saving
    return out


def hybrid(student_rows: list[dict[str, Any]], teacher_scores: dict[str, float | None],
           student_cost: dict[str, Any], teacher_cost: dict[str, Any], thresholds: list[float],
           requests_per_day: int) -> list[dict[str, Any]]:
    """Student answers; a request whose confidence is below the threshold (or whose answer
    is invalid) goes to the teacher. Per threshold: share escalated, quality and cost.

    `student_rows`: per example `id`, `score` (against gold, or agreement with the teacher
    when there is no gold), `confidence` and `valid` (an invalid answer always escalates); `teacher_scores`: the teacher's score per id
    on the same scale (1.0 when scoring agreement). A confidence equal to the threshold
    stays with the student.
    """
    rows = [r for r in student_rows if r.get("score") is not None and teacher_scores.get(r["id"]) is not None]
    if not rows or student_cost.get("usd_per_request") is None or teacher_cost.get("usd_per_request") is None:
        return []
    s_req, t_req = student_cost["usd_per_request"], teacher_cost["usd_per_request"]
    out = []
    for th in thresholds:
        escalate = [not r.get("valid", True) or r["confidence"] is None or r["confidence"] < th for r in rows]
        quality = sum(teacher_scores[r["id"]] if e else r["score"] for r, e in zip(rows, escalate)) / len(rows)
        rate = sum(escalate) / len(rows)
        per_request = s_req + rate * t_req  # every request reaches the student first
        s_month = monthly(student_cost, requests_per_day)["usd_per_month"] or 0.0
        t_month = rate * requests_per_day * DAYS_PER_MONTH * t_req
        out.append({"threshold": th, "escalation_rate": rate, "quality": quality,
                    "cost_per_1k_usd": per_request * 1000, "usd_per_month": s_month + t_month})
    return out
