"""`distill eval RECIPE`: any predictors (teacher, base, student, GGUF, ONNX, bnb, bundle, HF folder)
on the run's evaluation split or on a new data file, with the run's own retrieval."""

from __future__ import annotations

import sys
from pathlib import Path

from distill.commands.common import load
from distill.commands.summary import print_summary
from distill.eval.runner import evaluate_predictors
from distill.progress import console
from edge_runtime.layout import RunLayout, read_jsonl


def main(args) -> int:
    from distill.pipeline.runner import recipe_for_run

    recipe, run_dir = load(args)
    # the run's own retrieval (a faq knowledge base enriched at curate), as its bundle serves
    return evaluate_command(recipe_for_run(recipe, run_dir), run_dir, args.predictor, args.data, args.out)


def evaluate_command(recipe, run_dir: Path, predictors: list[str], data: Path | None, out: Path | None) -> int:
    """`distill eval`: any predictors on the eval split or on a new data file."""
    from distill.data.io import DataError, as_answer, read_rows

    run_dir = Path(run_dir)
    specs = predictors or [p for p in recipe.eval.predictors if p != "gguf"] + (
        [f"gguf:{t}" for t in recipe.quantize.types] if "gguf" in recipe.eval.predictors else [])
    try:
        if data is not None:
            if Path(data).is_dir():  # a folder of scans: through the OCR front end
                from distill.data.images import read_image_folder

                rows = read_image_folder(data, recipe.task.input_field)
            else:
                rows = read_rows(data, recipe.data.id_field)
            for row in rows:
                gold = as_answer(recipe.task, row.get(recipe.data.answer_field)) if recipe.data.answer_field else None
                row["gold"] = gold
        elif RunLayout(run_dir).eval_split.is_file():
            rows = read_jsonl(RunLayout(run_dir).eval_split)
        else:
            from distill.pipeline.stages import load_splits

            rows = load_splits(recipe)[1]
        out_dir = Path(out) if out else run_dir / "eval-adhoc"
        result = evaluate_predictors(recipe, run_dir, specs, rows, out_dir)
    except (DataError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_summary(out_dir, {"eval": {"outputs": result}})
    console.log(f"wrote {out_dir}/metrics.json and per-predictor predictions")
    if not result["predictors"]:
        print("error: no predictor could be evaluated: " + "; ".join(result.get("skipped", {}).values()), file=sys.stderr)
        return 2
    return 0
