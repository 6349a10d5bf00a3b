"""`quantize sweep RUN_DIR --profile P`: quantize to every type that fits the device, evaluate
each on the run's evaluation split, and pick the smallest that keeps the quality floor.

Reads a `distill run` directory (recipe.resolved.json, train/ and teach/eval.jsonl) without
importing distill: the task spec comes from edge_runtime, predictions from llama.cpp.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_runtime.gguf_types import adapter_types
from edge_runtime.layout import MAX_NEW_TOKENS, N_CTX, RunLayout, read_jsonl
from edge_runtime.task import TaskSpec, example_score
from quantize.artifacts import BuildSettings, build_gguf_artifacts
from quantize.gguf import MB, QTYPES

EVAL_MAX_CTX = 2048  # the sweep evaluates with at most this context (task prompts are short), whatever target.n_ctx


@dataclass
class RunInfo:
    task: TaskSpec
    merged_dir: Path
    eval_rows: list[dict[str, Any]]
    quality_floor: float
    n_ctx: int
    imatrix: bool
    embedding_type: str | None = None
    head: Path | None = None  # a head student's head file: the GGUF body is judged with it, as the bundle answers


def load_run(run_dir: Path) -> RunInfo:
    """The facts a sweep needs from a run directory, with errors that say which stage to run."""
    run = RunLayout(run_dir)
    rec_path = run.recipe
    if not rec_path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no recipe.resolved.json); run `distill run RECIPE` first")
    recipe = run.read_recipe()
    merged = run.merged_dir
    record = run.record("train")
    if record.is_file():
        merged = Path(json.loads(record.read_text())["outputs"].get("merged_dir", merged))
    if not (merged / "config.json").is_file():
        raise FileNotFoundError(f"no merged student at {merged}; run `distill run RECIPE --until train`")
    evals = run.eval_split
    if not evals.is_file():
        raise FileNotFoundError(f"no evaluation split at {evals}; run `distill run RECIPE --until teach`")
    from edge_runtime.retrieval import task_for_run

    task = task_for_run(TaskSpec.model_validate(recipe.task), run_dir)  # a faq KB enriched at curate
    from edge_runtime.bundle import run_head

    return RunInfo(task, merged, read_jsonl(evals),
                   recipe.quality_floor, int(recipe.n_ctx), recipe.imatrix, recipe.embedding_type, run_head(run_dir))


def training_texts(run_dir: Path, task: TaskSpec, limit: int = 64) -> list[str]:
    """The task's own training prompts with their answers: what the importance matrix is computed on."""
    path = RunLayout(run_dir).train_rows
    if not path.is_file():
        raise FileNotFoundError(f"no training rows at {path} for the importance matrix; run `distill run RECIPE --until curate`")
    rows = read_jsonl(path)[:limit]
    return [task.render_prompt(r) + task.render_answer(r["answer"]) for r in rows if r.get("answer")]


def evaluate_gguf(path: Path, task: TaskSpec, rows: list[dict[str, Any]], n_ctx: int = N_CTX,
                  max_new_tokens: int = MAX_NEW_TOKENS, lora_path: Path | None = None,
                  head: Path | None = None) -> dict[str, Any]:
    """Task metric, answers and decode speed of one GGUF (plus its LoRA adapter, if any; with the
    run's head, if it has one) on rows that carry `gold`."""
    from edge_runtime.engines.dispatch import gguf_predictor
    from quantize.progress import bar

    pred = gguf_predictor(path, task, head=head, n_ctx=n_ctx, lora_path=lora_path, max_new_tokens=max_new_tokens)
    answers, scores, tokens, seconds = [], [], 0, 0.0
    try:
        with bar(f"evaluating {Path(path).name}", len(rows)) as advance:
            for row in rows:
                p = pred.predict(row)
                answers.append(p.answer)
                scores.append(example_score(task, p.answer, row["gold"]))
                tokens += p.completion_tokens
                seconds += p.latency_s
                advance()
    finally:
        pred.close()
    return {"metric": sum(scores) / max(1, len(scores)), "answers": answers,
            "tokens_per_s": tokens / seconds if seconds else None, "n": len(rows)}


def sweep(run_dir: Path, profile: str, types: list[str] | None = None, out_dir: Path | None = None,
          limit: int | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Quantize, fit-check, evaluate; returns (and writes to sweep.json / sweep.md) the table and the pick."""
    from edge_runtime.fit import fit
    from edge_runtime.profiles import get_profile

    info = load_run(run_dir)
    prof = get_profile(profile)
    rows = [r for r in info.eval_rows if r.get("gold") is not None][:limit]
    if not rows:
        raise ValueError(f"{RunLayout(run_dir).eval_split} has no rows with a gold answer to evaluate against")
    out_dir = Path(out_dir or Path(run_dir) / "sweep")
    out_dir.mkdir(parents=True, exist_ok=True)
    adapter_dir = RunLayout(run_dir).adapter_dir
    has_adapter = (adapter_dir / "adapter_config.json").is_file()
    types = [t for t in (types or list(QTYPES) + (adapter_types() if has_adapter else [])) if t not in ("bf16",)]
    unknown = [t for t in types if t not in QTYPES and t not in adapter_types()]
    if unknown:
        raise ValueError(f"unknown type(s) {unknown}; choose from {', '.join(list(QTYPES) + adapter_types())}")
    texts = (lambda: training_texts(Path(run_dir), info.task)) if info.imatrix else None
    settings = BuildSettings(types, imatrix_texts=texts, embedding_type=info.embedding_type,
                             existing="rebuild" if overwrite else "reuse")
    built = build_gguf_artifacts(info.merged_dir, out_dir, settings, adapter_dir=adapter_dir)
    table: list[dict[str, Any]] = []
    reference = None
    for qtype in ["f16"] + [t for t in types if t != "f16"]:
        path, adapter = built[qtype]
        extra = adapter.stat().st_size if adapter else 0
        fitted = fit(path, prof, n_ctx=info.n_ctx, extra_weights_bytes=extra)
        entry: dict[str, Any] = {"type": qtype, "path": str(path), "size_mib": round((path.stat().st_size + extra) / MB, 1),
                                 "fits": fitted.fits, **({"adapter": str(adapter)} if adapter else {})}
        if fitted.fits or qtype == "f16":
            res = evaluate_gguf(path, info.task, rows, n_ctx=min(info.n_ctx, EVAL_MAX_CTX), lora_path=adapter,
                                head=info.head)
            if reference is None:
                reference = res["answers"]
            same = sum(a == b for a, b in zip(res["answers"], reference))
            entry.update(metric=round(res["metric"], 4), agreement_with_f16=round(same / len(rows), 4),
                         tokens_per_s=round(res["tokens_per_s"], 1) if res["tokens_per_s"] else None)
        table.append(entry)
    base = table[0].get("metric") or 0.0
    floor = info.quality_floor * base
    keep = [e for e in table if e["fits"] and e.get("metric") is not None and e["metric"] >= floor]
    pick = min(keep, key=lambda e: e["size_mib"]) if keep else None
    result = {"profile": profile, "n_eval": len(rows), "quality_floor": info.quality_floor, "f16_metric": base,
              "floor_metric": round(floor, 4), "table": table, "pick": pick["type"] if pick else None}
    (out_dir / "sweep.json").write_text(json.dumps(result, indent=2))
    (out_dir / "sweep.md").write_text(render_table(result))
    return result


def render_table(result: dict[str, Any]) -> str:
    lines = [f"Quantization sweep for {result['profile']} on {result['n_eval']} evaluation examples; "
             f"floor {result['quality_floor']:.0%} of F16's {result['f16_metric']:.3f} = {result['floor_metric']:.3f}.",
             "", "| type | size (MiB) | fits | task metric | agreement with F16 | tokens/s |", "|---|---|---|---|---|---|"]
    for e in result["table"]:
        fmt = lambda v: "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))  # noqa: E731
        lines.append(f"| {e['type']}{' (picked)' if e['type'] == result['pick'] else ''} | {e['size_mib']} | "
                     f"{'yes' if e['fits'] else 'no'} | {fmt(e.get('metric'))} | {fmt(e.get('agreement_with_f16'))} | "
                     f"{fmt(e.get('tokens_per_s'))} |")
    if result["pick"] is None:
        lines += ["", "No type keeps the floor on this profile: lower the floor, pick a larger profile or a larger student."]
    return "\n".join(lines) + "\n"
