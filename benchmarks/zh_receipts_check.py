"""Generalisation checks on the Chinese receipts and VAT invoices of data/zh-receipts (written by
us; see its README): do the task's normalisers, metrics and grounding checks work on Chinese text?

Prints, for the 22 documents: how many printed dates and totals (every form: ¥1,235.50, 112.18元,
RMB, uppercase 壹仟贰佰叁拾伍元伍角 ...) normalise to the value they mean; the metrics of the gold
answers against themselves, of normalised answers (ISO date, two-decimal total) against the gold,
and of the next document's answers (a negative control); and the share of values the router's
value-in-input check accepts. No model runs: this checks the scoring, not a student. Small set:
read it as a check, not a benchmark.

    python benchmarks/zh_receipts_check.py
"""

from __future__ import annotations

import json
from pathlib import Path

from distill.eval.metrics import extraction_metrics
from edge_runtime.normalise import normalise_amount
from edge_runtime.router import value_in_input
from edge_runtime.task import TaskSpec

DATA = Path(__file__).resolve().parents[1] / "data" / "zh-receipts" / "receipts.jsonl"
TASK = TaskSpec(name="receipts-zh", kind="extraction", input_field="ocr_lines",
                instructions="从这张小票或发票的文字中提取销售方名称、日期、销售方地址和应付总额，按原样抄写。只用 JSON 回答。",
                fields={"company": {}, "date": {"type": "date", "date_order": "ymd"}, "address": {},
                        "total": {"type": "amount"}})


def in_input_share(rows, answers) -> str:
    checks = [value_in_input(TASK, r, k, v) for r, a in zip(rows, answers) for k, v in a.items()]
    return f"{sum(checks)}/{len(checks)}"


def line(name: str, m: dict, rows, answers) -> str:
    acc = " ".join(f"{k} {v:.3f}" for k, v in m["field_accuracy"].items())
    return (f"{name:<28} mean field acc {m['headline']:.3f} ({acc}); exact {m['exact_match']:.3f}; "
            f"hallucination {m['hallucination_rate']:.3f}; router in-input {in_input_share(rows, answers)}")


def main() -> None:
    rows = [json.loads(l) for l in DATA.read_text(encoding="utf-8").splitlines() if l.strip()]
    gold = [r["fields"] for r in rows]
    inputs = [TASK.input_text(r) for r in rows]
    invoices = sum(r["kind"] == "vat_invoice" for r in rows)
    forms = [(f, r["normalised"]["total"]) for r in rows for f in r["total_forms"]]
    print(f"{len(rows)} documents ({invoices} VAT invoices, {len(rows) - invoices} receipts); "
          f"{len(forms)} printed forms of their totals")
    dates_ok = sum(TASK.normalise("date", r["fields"]["date"]) == r["normalised"]["date"] for r in rows)
    forms_ok = sum(normalise_amount(f) == v for f, v in forms)
    print(f"normalisers: dates {dates_ok}/{len(rows)}, total forms {forms_ok}/{len(forms)} read as the value they mean")
    normalised = [{**r["fields"], **r["normalised"]} for r in rows]
    shifted = gold[1:] + gold[:1]
    for name, answers in (("gold vs gold", gold), ("normalised vs gold", normalised),
                          ("next document's (control)", shifted)):
        print(line(name, extraction_metrics(TASK, answers, gold, inputs), rows, answers))


if __name__ == "__main__":
    main()
