"""Quality metrics per task kind, computed from answer dicts with the task's own normaliser.

Every function takes parallel lists of predicted answers (None for an invalid output) and
reference answers (gold labels, or the teacher's answers when measuring agreement), so the
same code scores "against gold" and "against the teacher". An invalid prediction is wrong on
every field; it is never dropped from the denominator.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import Any

from edge_runtime.normalise import value_spans
from edge_runtime.task import NO_ANSWER, TaskSpec, example_score  # noqa: F401  (example_score: re-exported)

Answer = dict[str, Any] | None


# ---------------------------------------------------------------------------- per example


def _same(task: TaskSpec, key: str, a: Any, b: Any) -> bool:
    return task.normalise(key, a) == task.normalise(key, b)


def _div(a: float, b: float) -> float | None:
    return a / b if b else None


def _f1(p: float | None, r: float | None) -> float | None:
    if p is None or r is None:
        return None
    return 2 * p * r / (p + r) if (p + r) else 0.0


# ---------------------------------------------------------------------------- extraction


def extraction_metrics(task: TaskSpec, preds: list[Answer], refs: list[Answer], inputs: list[str]) -> dict[str, Any]:
    """Per-field accuracy after normalisation, field precision/recall/F1, exact match,
    JSON validity and hallucination rate (predicted values that do not occur in the input).

    Slot counting (as in SROIE): a non-empty prediction that matches is a true positive;
    a non-empty prediction that does not match is a false positive (and a false negative
    when the reference has a value); a missing value the reference has is a false negative.
    """
    n = len(preds)
    fields = list(task.fields)
    per_field: dict[str, dict[str, Any]] = {}
    tp_all = fp_all = fn_all = 0
    exact = 0
    for f in fields:
        right = tp = fp = fn = 0
        for pred, ref in zip(preds, refs):
            pv = task.normalise(f, pred.get(f)) if pred else ""
            rv = task.normalise(f, ref.get(f)) if ref else ""
            match = pred is not None and pv == rv
            right += match
            if pv and match:
                tp += 1
            elif pv:
                fp += 1
                fn += bool(rv)
            elif rv:
                fn += 1
        precision, recall = _div(tp, tp + fp), _div(tp, tp + fn)
        per_field[f] = {"accuracy": _div(right, n), "precision": precision, "recall": recall,
                        "f1": _f1(precision, recall), "tp": tp, "fp": fp, "fn": fn}
        tp_all, fp_all, fn_all = tp_all + tp, fp_all + fp, fn_all + fn
    for pred, ref in zip(preds, refs):
        exact += pred is not None and all(_same(task, f, pred.get(f), ref.get(f)) for f in fields)
    p, r = _div(tp_all, tp_all + fp_all), _div(tp_all, tp_all + fn_all)
    accs = [per_field[f]["accuracy"] for f in fields]
    return {
        "headline": sum(accs) / len(accs) if n else None,
        "headline_name": "mean field accuracy",
        "field_accuracy": {f: per_field[f]["accuracy"] for f in fields},
        "fields": per_field,
        "precision": p,
        "recall": r,
        "f1": _f1(p, r),
        "exact_match": _div(exact, n),
        "json_validity": _div(sum(p is not None for p in preds), n),
        "hallucination_rate": hallucination_rate(task, preds, inputs),
    }


def _squash(text: str) -> str:
    """Whitespace (and OCR line breaks) removed, full-width forms made ASCII (NFKC), upper-cased:
    a value is compared character by character, so Chinese needs no word boundaries."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text)).upper()


def occurs_in(task: TaskSpec, key: str, value: str, text: str) -> bool:
    """Whether a predicted value is grounded in the input: as text (ignoring whitespace,
    case and full-width forms), or for dates and amounts as any date- or amount-like span with
    the same normalised value (2018-12-25 is grounded by 25/12/2018 or 2018年12月25日 on the
    receipt, 1234.50 by ¥1,234.50 or 壹仟贰佰叁拾肆元伍角)."""
    if not value.strip():
        return True
    if _squash(value) in _squash(text):
        return True
    kind = task.fields[key].type if key in task.fields else "text"
    if kind in ("amount", "date"):
        target = task.normalise(key, value)
        return any(task.normalise(key, span) == target for span in value_spans(text, kind))
    return False


def hallucination_rate(task: TaskSpec, preds: list[Answer], inputs: list[str]) -> float | None:
    """Share of non-empty predicted values that do not occur in their input."""
    total = bad = 0
    for pred, text in zip(preds, inputs):
        for f in task.fields:
            value = str((pred or {}).get(f) or "")
            if not value.strip():
                continue
            total += 1
            bad += not occurs_in(task, f, value, text)
    return _div(bad, total)


def grounded_share(task: TaskSpec, pred: Answer, text: str) -> float:
    """Share of an extraction answer's non-empty values found in the input (1.0 when it
    has none): a confidence proxy for predictors that give no probabilities."""
    if pred is None:
        return 0.0
    values = [(f, str(pred.get(f) or "")) for f in task.fields]
    values = [(f, v) for f, v in values if v.strip()]
    if not values:
        return 1.0
    return sum(occurs_in(task, f, v, text) for f, v in values) / len(values)


# ---------------------------------------------------------------------------- classification

INVALID = "(invalid)"


def classification_metrics(task: TaskSpec, preds: list[Answer], refs: list[Answer],
                           confidences: list[float | None] | None = None) -> dict[str, Any]:
    """Accuracy, macro-F1 and per-class P/R/F1, the confusion matrix, and expected
    calibration error where confidences exist.

    Macro-F1 averages over the labels that occur in the references or the predictions (a
    label nobody used does not count as a zero). An invalid output is its own column,
    `(invalid)`; a reference label outside the task's set is reported, not hidden.
    """
    n = len(preds)
    gold = [str(r.get("label")) for r in refs]
    got = [str(p.get("label")) if p else INVALID for p in preds]
    outside = sorted({g for g in gold if g not in task.labels})
    labels = [l for l in task.labels if l in gold or l in got] + outside
    per_class: dict[str, dict[str, Any]] = {}
    for label in labels:
        tp = sum(g == label and p == label for g, p in zip(gold, got))
        fp = sum(g != label and p == label for g, p in zip(gold, got))
        fn = sum(g == label and p != label for g, p in zip(gold, got))
        precision, recall = _div(tp, tp + fp), _div(tp, tp + fn)
        per_class[label] = {"precision": precision or 0.0, "recall": recall or 0.0,
                            "f1": _f1(precision or 0.0, recall or 0.0), "support": tp + fn}
    columns = labels + ([INVALID] if INVALID in got else [])
    counts = Counter(zip(gold, got))
    matrix = [[counts[(g, p)] for p in columns] for g in labels]
    accuracy = _div(sum(g == p for g, p in zip(gold, got)), n)
    correct = [g == p for g, p in zip(gold, got)]
    return {
        "headline": accuracy,
        "headline_name": "accuracy",
        "accuracy": accuracy,
        "macro_f1": _div(sum(c["f1"] for c in per_class.values()), len(per_class)),
        "per_class": per_class,
        "confusion": {"rows": labels, "columns": columns, "matrix": matrix},
        "gold_labels_outside_set": outside,
        "exact_match": accuracy,
        "json_validity": _div(sum(p is not None for p in preds), n),
        "ece": expected_calibration_error(confidences, correct) if confidences else None,
    }


def expected_calibration_error(confidences: list[float | None], correct: list[bool], bins: int = 10) -> float | None:
    """ECE over equal-width confidence bins; examples without a confidence are skipped.
    A confidence of exactly 1.0 falls in the top bin."""
    pairs = [(c, k) for c, k in zip(confidences, correct) if c is not None]
    if not pairs:
        return None
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        members = [(c, k) for c, k in pairs if lo <= c < hi or (b == bins - 1 and c == hi)]
        if members:
            conf = sum(c for c, _ in members) / len(members)
            acc = sum(k for _, k in members) / len(members)
            total += len(members) / len(pairs) * abs(conf - acc)
    return total


# ---------------------------------------------------------------------------- faq


def faq_metrics(task: TaskSpec, preds: list[Answer], refs: list[Answer],
                candidates: list[list[str] | None] | None = None, ks: tuple[int, ...] = (1, 3, 5, 10)) -> dict[str, Any]:
    """Top-1 accuracy of the chosen entry, recall@k of the retrieved candidates (where the
    predictor reports them) and the precision and recall of "no answer"."""
    n = len(preds)
    gold = [str(r.get("faq_id")) for r in refs]
    got = [str(p.get("faq_id")) if p else None for p in preds]
    top1 = _div(sum(g == p for g, p in zip(gold, got)), n)
    said_none = [g for g, p in zip(gold, got) if p == NO_ANSWER]
    is_none = [p for g, p in zip(gold, got) if g == NO_ANSWER]
    recall_at: dict[str, float | None] = {}
    if candidates and any(c is not None for c in candidates):
        answerable = [(g, c or []) for g, c in zip(gold, candidates) if g != NO_ANSWER]
        for k in ks:
            recall_at[str(k)] = _div(sum(g in c[:k] for g, c in answerable), len(answerable))
    return {
        "headline": top1,
        "headline_name": "top-1 accuracy",
        "top1": top1,
        "recall_at_k": recall_at or None,
        "no_answer_precision": _div(sum(g == NO_ANSWER for g in said_none), len(said_none)),
        "no_answer_recall": _div(sum(p == NO_ANSWER for p in is_none), len(is_none)),
        "exact_match": top1,
        "json_validity": _div(sum(p is not None for p in preds), n),
    }


def task_metrics(task: TaskSpec, preds: list[Answer], refs: list[Answer], inputs: list[str],
                 confidences: list[float | None] | None = None,
                 candidates: list[list[str] | None] | None = None) -> dict[str, Any]:
    """The metrics of the task's kind; `refs` must all be answers (filter rows first)."""
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} predictions for {len(refs)} references")
    if task.kind == "extraction":
        return extraction_metrics(task, preds, refs, inputs)
    if task.kind == "classification":
        return classification_metrics(task, preds, refs, confidences)
    return faq_metrics(task, preds, refs, candidates)
