"""`run_teach`, the teach stage: label the training rows with the recipe's teacher (writing
new inputs first when the recipe asks for synthesis) into labelled.jsonl and failed.jsonl."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from distill.data.io import write_jsonl
from distill.teachers.labelling import cache_path, make_labeller
from edge_runtime.layout import LABELLED_FILE


async def _label_all(labeller, rows: list[dict[str, Any]]):
    from distill.progress import Bar

    results: list[Any] = [None] * len(rows)
    counts = {"failed": 0}
    with Bar(f"teach ({labeller.backend.identity})", len(rows), unit="rows") as bar:

        async def one(i: int, row: dict[str, Any]) -> None:
            results[i] = await labeller.label(row)
            counts["failed"] += results[i][1] is not None
            bar.advance(info=f"${labeller.ledger.spent_usd:.4f} · {labeller.sent} sent · "
                             f"{labeller.from_cache} cached · {counts['failed']} failed")

        try:
            async with asyncio.TaskGroup() as tg:
                for i, row in enumerate(rows):
                    tg.create_task(one(i, row))
        except BaseExceptionGroup as group:  # a fatal teacher error cancels the rest: report it plainly
            raise group.exceptions[0] from None
        finally:
            await labeller.backend.aclose()
    return results


async def _teach(recipe, labeller, rows: list[dict[str, Any]]):
    """Synthesize new inputs first (when the recipe asks), then label everything."""
    synth = getattr(recipe.teacher, "synthesize", None)
    stats = None
    if synth is not None:
        from distill.teachers.synthesize import synthesize_rows

        try:
            new_rows, stats = await synthesize_rows(recipe, rows, labeller)
        except BaseException:
            await labeller.backend.aclose()
            raise
        rows = rows + new_rows
    return rows, await _label_all(labeller, rows), stats


def run_teach(recipe, rows: list[dict[str, Any]], out_dir: Path) -> dict[str, Any]:
    """Label `rows` with the recipe's teacher into `out_dir/labelled.jsonl`.

    Rows the teacher could not answer validly go to `failed.jsonl` with the reason
    (`invalid`, `request`, or `budget` when `max_cost_usd` stopped the stage); they are
    counted, never silently kept.
    """
    out_dir = Path(out_dir)
    kind = recipe.teacher.kind
    if kind == "dataset":
        from distill.teachers.dataset import label_from_dataset

        labelled, failed = label_from_dataset(recipe, rows)
        write_jsonl(out_dir / LABELLED_FILE, labelled)
        write_jsonl(out_dir / "failed.jsonl", failed)
        return {"labelled": len(labelled), "failed": len(failed), "cost_usd": 0.0, "requests": 0}
    cache_file = cache_path(out_dir.parent)
    from distill.teachers.privacy import audit_path

    labeller = make_labeller(recipe, cache_file, audit_path(out_dir.parent))
    started = time.time()
    try:
        rows, results, synth = asyncio.run(_teach(recipe, labeller, rows))
    finally:
        labeller.cache.close()
    if synth is not None:
        write_jsonl(out_dir / "synthesized.jsonl", [r for r in rows if str(r["id"]).startswith("syn-")])
    labelled = [r[0] for r in results if r[0] is not None]
    failed = [r[1] for r in results if r[1] is not None]
    write_jsonl(out_dir / LABELLED_FILE, labelled)
    write_jsonl(out_dir / "failed.jsonl", failed)
    reasons: dict[str, int] = {}
    for f in failed:
        reasons[f["reason"]] = reasons.get(f["reason"], 0) + 1
    summary = {
        "labelled": len(labelled),
        "failed": len(failed),
        "failed_by_reason": reasons,
        "requests": labeller.sent,
        "from_cache": labeller.from_cache,
        "retries": getattr(labeller.backend, "retries", 0),
        "errors": getattr(labeller.backend, "errors", {}),
        **{k: v for k, v in labeller.ledger.summary().items() if k != "requests"},
        **({"synthesized": synth} if synth is not None else {}),
        **({"label_counts": _label_counts(labelled)} if recipe.task.kind == "classification" else {}),
        "cache": str(cache_file),
        **({"audit_log": str(audit_path(out_dir.parent))} if audit_path(out_dir.parent).is_file() else {}),
        "duration_s": round(time.time() - started, 2),
    }
    (out_dir / "ledger.json").write_text(json.dumps(summary, indent=2))
    if labeller.ledger.stopped:
        print(f"teach: stopped by teacher.max_cost_usd={labeller.ledger.max_cost_usd} after "
              f"${labeller.ledger.spent_usd:.4f}; {reasons.get('budget', 0)} rows not labelled. "
              "Raise the budget and run again: paid answers come from the cache.")
    return summary


def _label_counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["answer"]["label"]] = counts.get(r["answer"]["label"], 0) + 1
    return counts


