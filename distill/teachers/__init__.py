"""Teachers: things that label inputs for a task. `run_teach` is the teach stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distill.data.io import write_jsonl


def run_teach(recipe, rows: list[dict[str, Any]], out_dir: Path) -> dict[str, Any]:
    """Label `rows` with the recipe's teacher into `out_dir/labelled.jsonl`.

    Rows the teacher could not answer validly go to `failed.jsonl` with the reason;
    they are counted, never silently kept.
    """
    kind = recipe.teacher.kind
    if kind == "dataset":
        from distill.teachers.dataset import label_from_dataset

        labelled, failed = label_from_dataset(recipe, rows)
    else:
        raise ValueError(f"teacher.kind {kind!r} is not available in this build")
    write_jsonl(out_dir / "labelled.jsonl", labelled)
    write_jsonl(out_dir / "failed.jsonl", failed)
    return {"labelled": len(labelled), "failed": len(failed), "cost_usd": 0.0, "requests": 0}
