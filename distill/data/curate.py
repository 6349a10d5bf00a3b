"""Curation: the rules a labelled row must pass before it is trained on.

Each rule drops rows for one reason; the report says how many each rule dropped, with
examples, so a user sees what the teacher's data really looked like.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from distill.data.io import write_jsonl


def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i : i + n]) for i in range(max(0, len(words) - n + 1))}


def _overlap(grams: set, eval_grams: set) -> float:
    """Fraction of a row's n-grams that occur in the eval split. A fraction, not "any":
    receipts of one shop chain share their header, and that is not contamination."""
    return len(grams & eval_grams) / len(grams) if grams else 0.0


def curate(recipe, rows: list[dict[str, Any]], eval_rows: list[dict[str, Any]], out_dir: Path) -> dict[str, Any]:
    task, cfg = recipe.task, recipe.curate
    dropped: dict[str, list[str]] = {}
    kept: list[dict[str, Any]] = []

    def drop(rule: str, row: dict[str, Any]) -> None:
        dropped.setdefault(rule, []).append(row["id"])

    eval_texts = {task.input_text(r).strip() for r in eval_rows}
    eval_grams: set = set()
    if cfg.decontaminate:
        for r in eval_rows:
            eval_grams |= _ngrams(task.input_text(r), cfg.ngram)
    seen: set[str] = set()
    for row in rows:
        text = task.input_text(row).strip()
        if task.validate_answer(row.get("answer")):
            drop("invalid answer", row)
        elif not text:
            drop("empty input", row)
        elif len(text) > cfg.max_input_chars:
            drop("input too long", row)
        elif row.get("agreement", 1.0) < cfg.min_agreement:
            drop("low teacher agreement", row)
        elif cfg.dedup and text in seen:
            drop("exact duplicate", row)
        elif cfg.decontaminate and (text in eval_texts or _overlap(_ngrams(text, cfg.ngram), eval_grams) > cfg.max_eval_overlap):
            drop("overlaps the eval split", row)
        else:
            seen.add(text)
            kept.append(row)
    if not kept:
        raise ValueError(
            f"curation kept no rows out of {len(rows)} (dropped: "
            + ", ".join(f"{k}: {len(v)}" for k, v in dropped.items())
            + "); check the teacher's answers in teach/labelled.jsonl or loosen `curate`"
        )
    write_jsonl(out_dir / "train.jsonl", kept)
    report = {
        "input_rows": len(rows),
        "kept": len(kept),
        "dropped": {rule: {"count": len(ids), "examples": ids[:5]} for rule, ids in dropped.items()},
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    return {"kept": len(kept), "dropped": {k: len(v) for k, v in dropped.items()}}
