"""The six stages of `distill run`, each a thin call into the package that owns the work.

Each `stage_<name>(ctx)` reads the outputs of the stages before it from the run
directory, writes its own into `ctx.dir`, and returns a small dict of outputs that goes
into its record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distill.data.io import as_answer, read_rows, sample_rows, split_rows, write_jsonl
from distill.pipeline.runner import StageContext
from edge_runtime.layout import read_jsonl


def load_splits(recipe) -> tuple[list[dict], list[dict]]:
    """Train and eval rows, with gold answers under `gold` where the data has them."""
    task, data = recipe.task, recipe.data
    if data.path.is_dir():  # a folder of scans: OCR turns each into the task's input lines
        from distill.data.images import read_image_folder

        rows = read_image_folder(data.path, task.input_field)
    else:
        rows = read_rows(data.path, data.id_field)
    if data.eval_path:
        train = sample_rows(rows, data.split.train_size, data.split.seed)
        evals = sample_rows(read_rows(data.eval_path, data.id_field), data.split.eval_size, data.split.seed)
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
    if ctx.recipe.data.logs:  # the teacher's answers from the device's request logs join the labelled rows
        from distill.data.request_logs import rows_from_logs

        logged, summary["logs"] = rows_from_logs(ctx.recipe.task, ctx.recipe.data.logs)
        write_jsonl(ctx.layout.labelled, read_jsonl(ctx.layout.labelled) + logged)
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
    from distill.recipe import student_head

    rows = read_jsonl(ctx.layout.train_rows)
    if student_head(ctx.recipe) == "classifier":
        from distill.distributed import MultiProcessUnsupported, world_size

        if world_size() > 1:
            raise MultiProcessUnsupported(
                f"the classifier-head student trains in one process; this run was launched with {world_size()} "
                "processes. Run `distill train` without accelerate launch/torchrun (it is small enough for one device).")
        from distill.train.classifier import train_classifier

        return train_classifier(ctx.recipe.student, ctx.recipe.task, rows, ctx.dir)
    if student_head(ctx.recipe) == "retriever":
        from distill.train.retriever import train_retriever

        return train_retriever(ctx.recipe.student, ctx.recipe.task, rows, ctx.dir)
    from distill.train import train_student

    return train_student(ctx.recipe.student, ctx.recipe.task, rows, ctx.dir)


def stage_eval(ctx: StageContext) -> dict[str, Any]:
    from distill.eval import evaluate_predictors

    evals = read_jsonl(ctx.layout.eval_split)
    kinds = [k for k in ctx.recipe.eval.predictors if k != "gguf"]  # GGUFs are judged after quantize
    return evaluate_predictors(ctx.recipe, ctx.run_dir, kinds, evals, ctx.dir)


def imatrix_texts(recipe, rows: list[dict]) -> list[str]:
    """What the importance matrix reads: what the device will evaluate. A head student's inputs
    alone (the head reads the input's final hidden state), else training prompts with their answers;
    spread over the rows, since a data file may be sorted by label."""
    from distill.recipe import student_head
    from edge_runtime.heads import head_input
    from edge_runtime.layout import IMATRIX_HEAD_INPUTS, IMATRIX_PROMPTS

    head = student_head(recipe) in ("classifier", "retriever")
    n = IMATRIX_HEAD_INPUTS if head else IMATRIX_PROMPTS
    rows = rows[::max(1, len(rows) // n)][:n]
    if head:
        return [head_input(recipe.task, r) for r in rows]
    return [recipe.task.render_prompt(r) + recipe.task.render_answer(r["answer"]) for r in rows]


def stage_quantize(ctx: StageContext) -> dict[str, Any]:
    from distill.eval import evaluate_predictors
    from quantize.artifacts import BuildSettings, build_gguf_artifacts

    run, q, task = ctx.layout, ctx.recipe.quantize, ctx.recipe.task
    trained = ctx.records["train"]["outputs"]
    texts = (lambda: imatrix_texts(ctx.recipe, read_jsonl(run.train_rows))) if q.imatrix else None
    settings = BuildSettings(q.types, imatrix_texts=texts, embedding_type=q.embedding_type)
    built = build_gguf_artifacts(Path(trained["merged_dir"]), ctx.dir, settings,
                                 adapter_dir=Path(trained.get("adapter_dir") or run.adapter_dir))
    artifacts = {k: str(model) for k, (model, _) in built.items()}
    adapters = {k: str(adapter) for k, (_, adapter) in built.items() if adapter is not None}
    sizes = {k: Path(v).stat().st_size + (Path(adapters[k]).stat().st_size if k in adapters else 0)
             for k, v in artifacts.items()}
    outputs: dict[str, Any] = {"artifacts": artifacts, "adapters": adapters, "sizes": sizes}
    if "gguf" in ctx.recipe.eval.predictors:
        from distill.recipe import student_head

        evals = read_jsonl(run.eval_split)
        # a head student's F16 body + head is one cheap pass per row: judged too, as the reference
        head = student_head(ctx.recipe) in ("classifier", "retriever") and "f16" in artifacts
        kinds = [f"gguf:{q}" for q in artifacts if q != "f16" or len(artifacts) == 1 or head]
        outputs["eval"] = evaluate_predictors(ctx.recipe, ctx.run_dir, kinds, evals, run.quantized_eval)
        if head:
            outputs["f16_check"] = head_f16_check(outputs["eval"]["predictors"], q.quality_floor)
    return outputs


def head_f16_check(predictors: dict[str, Any], floor: float) -> dict[str, Any]:
    """Each quantized body + head against the F16 body + head on the same rows: the share of F16's
    headline it keeps and whether that is at least `quantize.quality_floor` (said on the terminal
    when it is not: the bundle ships the first type regardless)."""
    from distill.progress import console

    ref = predictors.get("gguf-f16", {}).get("headline")
    check: dict[str, Any] = {}
    for name, summary in predictors.items():
        if name == "gguf-f16" or ref is None or summary.get("headline") is None:
            continue
        kept = summary["headline"] / ref if ref else 1.0
        check[name.removeprefix("gguf-")] = {"headline": summary["headline"], "f16_headline": ref,
                                            "share_of_f16": round(kept, 4), "keeps_floor": kept >= floor}
        if kept < floor:
            console.print(f"[yellow]{name}: body + head keeps {kept:.1%} of F16's {ref:.3f}, below "
                          f"quantize.quality_floor {floor:.0%}: ship a larger type (e.g. q8_0 first in quantize.types)[/]")
    return check


def stage_pack(ctx: StageContext) -> dict[str, Any]:
    from edge_runtime.bundle import pack_run

    bundle = pack_run(ctx.run_dir, ctx.recipe.target.profile, ctx.dir / "bundle", overwrite=True)
    return {"bundle": str(bundle)}
