"""The six stages of `distill run`, each a thin call into the package that owns the work.

Each `stage_<name>(ctx)` reads the outputs of the stages before it from the run
directory, writes its own into `ctx.dir`, and returns a small dict of outputs that goes
into its record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distill.data.io import as_answer, read_rows, split_rows, write_jsonl
from distill.pipeline.runner import StageContext
from edge_runtime.gguf_types import FULL_PRECISION, split_type, takes_imatrix
from edge_runtime.layout import IMATRIX_GGUF, model_gguf, read_jsonl


def load_splits(recipe) -> tuple[list[dict], list[dict]]:
    """Train and eval rows, with gold answers under `gold` where the data has them."""
    task, data = recipe.task, recipe.data
    if data.path.is_dir():  # a folder of scans: OCR turns each into the task's input lines
        from distill.data.images import read_image_folder

        rows = read_image_folder(data.path, task.input_field)
    else:
        rows = read_rows(data.path, data.id_field)
    if data.eval_path:
        train = rows[: data.split.train_size] if data.split.train_size else rows
        evals = read_rows(data.eval_path, data.id_field)[: data.split.eval_size]
    else:
        train, evals = split_rows(rows, data.split.eval_size, data.split.train_size, data.split.seed)
    for row in (*train, *evals):
        task.input_text(row)  # fail early, naming the missing input column
        if data.answer_field:
            row["gold"] = as_answer(task, row.get(data.answer_field))
    return train, evals


def stage_teach(ctx: StageContext) -> dict[str, Any]:
    from distill.teachers import run_teach

    train, evals = load_splits(ctx.recipe)
    write_jsonl(ctx.layout.eval_split, evals)
    summary = run_teach(ctx.recipe, train, ctx.dir)
    return {"eval_rows": len(evals), **summary}


def stage_curate(ctx: StageContext) -> dict[str, Any]:
    from distill.data.curate import curate

    labelled = read_jsonl(ctx.layout.labelled)
    evals = read_jsonl(ctx.layout.eval_split)
    outputs = curate(ctx.recipe, labelled, evals, ctx.dir)
    if ctx.recipe.curate.index_queries:  # faq: the kept queries become known phrasings of their entries
        from distill.data.faq_index import build_known_phrasings

        outputs.update(build_known_phrasings(ctx.recipe, read_jsonl(ctx.layout.train_rows), ctx.dir))
    return outputs


def stage_train(ctx: StageContext) -> dict[str, Any]:
    from distill.train import train_student

    rows = read_jsonl(ctx.layout.train_rows)
    return train_student(ctx.recipe.student, ctx.recipe.task, rows, ctx.dir)


def stage_eval(ctx: StageContext) -> dict[str, Any]:
    from distill.eval import evaluate_predictors

    evals = read_jsonl(ctx.layout.eval_split)
    kinds = [k for k in ctx.recipe.eval.predictors if k != "gguf"]  # GGUFs are judged after quantize
    return evaluate_predictors(ctx.recipe, ctx.run_dir, kinds, evals, ctx.dir)


def stage_quantize(ctx: StageContext) -> dict[str, Any]:
    from distill.eval import evaluate_predictors
    from quantize.gguf import convert_to_gguf, quantize_gguf

    run = ctx.layout
    merged = Path(ctx.records["train"]["outputs"]["merged_dir"])
    f16 = convert_to_gguf(merged, ctx.dir / model_gguf("f16"), outtype="f16", overwrite=True)
    artifacts = {"f16": str(f16)}
    imatrix = None
    if ctx.recipe.quantize.imatrix:  # importance from the task's own training prompts and answers
        from quantize.imatrix import compute_imatrix

        task = ctx.recipe.task
        rows = read_jsonl(run.train_rows)[:64]
        texts = [task.render_prompt(r) + task.render_answer(r["answer"]) for r in rows]
        imatrix = compute_imatrix(f16, texts, ctx.dir / IMATRIX_GGUF, overwrite=True)
    q = ctx.recipe.quantize
    for qtype in q.types:
        if qtype in FULL_PRECISION or split_type(qtype)[1]:
            continue
        use = imatrix if takes_imatrix(qtype) else None
        artifacts[qtype] = str(quantize_gguf(f16, ctx.dir / model_gguf(qtype), qtype, imatrix=use, overwrite=True,
                                             embedding_type=q.embedding_type))
    adapters: dict[str, str] = {}
    if any(split_type(t)[1] for t in q.types):  # quantized base + F16 adapter (quantize/adapter.py says why)
        from quantize.adapter import build_adapter_artifacts

        pairs = build_adapter_artifacts(Path(ctx.records["train"]["outputs"].get("adapter_dir") or run.adapter_dir), ctx.dir, q.types,
                                        imatrix=imatrix, embedding_type=q.embedding_type)
        for qtype, (base, adapter) in pairs.items():
            artifacts[qtype], adapters[qtype] = str(base), str(adapter)
    sizes = {k: Path(v).stat().st_size + (Path(adapters[k]).stat().st_size if k in adapters else 0)
             for k, v in artifacts.items()}
    outputs: dict[str, Any] = {"artifacts": artifacts, "adapters": adapters, "sizes": sizes}
    if "gguf" in ctx.recipe.eval.predictors:
        evals = read_jsonl(run.eval_split)
        kinds = [f"gguf:{q}" for q in artifacts if q != "f16" or len(artifacts) == 1]
        outputs["eval"] = evaluate_predictors(ctx.recipe, ctx.run_dir, kinds, evals, run.quantized_eval)
    return outputs


def stage_pack(ctx: StageContext) -> dict[str, Any]:
    from edge_runtime.bundle import pack_run

    bundle = pack_run(ctx.run_dir, ctx.recipe.target.profile, ctx.dir / "bundle", overwrite=True)
    return {"bundle": str(bundle)}
