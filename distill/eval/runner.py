"""Run predictors over eval rows and write what they answered and how well.

Per predictor: `<out>/<name>/predictions.jsonl` (every answer next to gold and teacher),
`metrics.json` (everything), `disagreements.jsonl`; and `<out>/metrics.json` with all of
them, the machine they ran on and the cost analysis. The teacher runs first so every
student is also scored on agreement with it.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

from distill.data.io import write_jsonl
from distill.eval import cost as costs
from distill.eval.machine import describe_machine
from distill.eval.metrics import example_score, grounded_share, task_metrics
from distill.eval.predictors import Built, PredictorUnavailable, build_predictor, predictor_names, teacher_predictor
from distill.eval.stats import bootstrap_ci, mean, percentile
from distill.peak_memory import PeakMemory
from distill.progress import Bar, console
from edge_runtime.layout import METRICS_FILE, PREDICTIONS_FILE, RunLayout, read_jsonl


def _llama_timings(built: Built):
    """For llama.cpp predictors: a (reset, read) pair for prefill/decode timings."""
    llm = getattr(built.predictor, "llm", None)
    if llm is None:
        return None
    try:
        import llama_cpp

        ctx = llm._ctx.ctx

        def read() -> dict[str, float]:
            d = llama_cpp.llama_perf_context(ctx)
            return {"prefill_s": d.t_p_eval_ms / 1000, "decode_s": d.t_eval_ms / 1000,
                    "prefill_tokens": d.n_p_eval, "decode_tokens": d.n_eval}

        return (lambda: llama_cpp.llama_perf_context_reset(ctx)), read
    except Exception:
        return None


def predict_all(built: Built, rows: list[dict[str, Any]], task) -> list[dict[str, Any]]:
    """Every row through one predictor, with a progress bar; per-row records."""
    timings = _llama_timings(built)
    out = []
    right = 0.0
    with Bar(f"eval {built.name}", total=len(rows), unit="ex") as bar:
        for row in rows:
            if timings:
                timings[0]()
            pred = built.predictor.predict(row)
            if timings:
                pred.extra.update(timings[1]())
            rec = {"id": row["id"], "answer": pred.answer, "gold": row.get("gold"), "raw": pred.raw,
                   "problems": pred.problems, "latency_s": pred.latency_s, "prompt_tokens": pred.prompt_tokens,
                   "completion_tokens": pred.completion_tokens, "confidence": pred.confidence,
                   "cost_usd": pred.cost_usd, "extra": pred.extra}
            if row.get("gold") is not None:
                rec["score"] = example_score(task, pred.answer, row["gold"])
                right += rec["score"]
            out.append(rec)
            bar.advance(info=f"score {right / len(out):.2f}" if row.get("gold") is not None else "")
    return out


def _teacher_reference(recipe, run_dir: Path, rows: list[dict], out_dir: Path) -> dict[str, Any] | None:
    """The teacher's answers by id, without paying for them twice: from this run's eval
    stage when it has them, else from the dataset teacher (free); None otherwise."""
    for path in (out_dir / "teacher" / PREDICTIONS_FILE, RunLayout(run_dir).predictions("teacher")):
        if path.is_file():
            ref = {r["id"]: r["answer"] for r in read_jsonl(path)}
            if all(r["id"] in ref for r in rows):
                return ref
    if recipe.teacher.kind == "dataset":
        pred = teacher_predictor(recipe).predictor
        return {r["id"]: pred.predict(r).answer for r in rows}
    return None


def retrieved(task, rows: list[dict], k: int = 10) -> dict[str, list[str]]:
    """FAQ ids the task's own retrieval ranks for each row (what the prompt's candidates
    come from), for recall@k; empty for other tasks or without a knowledge base."""
    if task.kind != "faq" or not getattr(task, "knowledge_base", None):
        return {}
    from edge_runtime.retrieval import load_knowledge_base

    kb = load_knowledge_base(task.knowledge_base)
    return {r["id"]: [i for i, _ in kb.top_k(task.input_text(r), k)] for r in rows}


def summarise(recipe, built: Built, rows: list[dict], recs: list[dict], teacher: dict[str, Any] | None,
              memory: PeakMemory | None, load_s: float, usd_per_hour: float) -> tuple[dict, dict]:
    """(compact summary for records and the CLI table, full metrics for metrics.json)."""
    task, cfg = recipe.task, recipe.eval
    inputs = {r["id"]: task.input_text(r) for r in rows}
    scored = [rec for rec in recs if rec.get("gold") is not None]
    ranked = retrieved(task, rows)
    gold_m = task_metrics(task, [r["answer"] for r in scored], [r["gold"] for r in scored],
                          [inputs[r["id"]] for r in scored], [r["confidence"] for r in scored],
                          [r["extra"].get("candidates") or ranked.get(r["id"]) for r in scored]) if scored else None
    agree_m, agree_scores = None, []
    if teacher is not None and built.spec != "teacher":
        pairs = [(r, teacher.get(r["id"])) for r in recs if teacher.get(r["id"]) is not None]
        for r, t in pairs:
            r["teacher"] = t
            r["agreement"] = example_score(task, r["answer"], t)
        agree_scores = [r["agreement"] for r, _ in pairs]
        if pairs:
            agree_m = task_metrics(task, [r["answer"] for r, _ in pairs], [t for _, t in pairs],
                                   [inputs[r["id"]] for r, _ in pairs])
    # A confidence for the hybrid analysis: the model's own, else (extraction) grounding in the input.
    for r in recs:
        if r["confidence"] is None and task.kind == "extraction" and built.hosting == "self-hosted":
            r["hybrid_confidence"] = grounded_share(task, r["answer"], inputs[r["id"]])
        else:
            r["hybrid_confidence"] = r["confidence"] if r["answer"] is not None else 0.0
    n_boot = cfg.bootstrap_samples
    em = lambda r: float(r["score"] == 1.0)  # noqa: E731
    timed = built.hosting != "dataset"
    lat = [r["latency_s"] for r in recs] if timed else []
    prefill = sum(r["extra"].get("prefill_s", 0) for r in recs)
    decode = sum(r["extra"].get("decode_s", 0) for r in recs)
    prompt_tok = sum(r["extra"].get("prefill_tokens", r["prompt_tokens"]) for r in recs)
    gen_tok = sum(r["extra"].get("decode_tokens", r["completion_tokens"]) for r in recs)
    if recs and all("decode" in r["extra"] for r in recs):  # the schema decoder: every answer token
        # counts (forced and copied ones too), over the time after the prompt's pass
        gen_tok = sum(r["completion_tokens"] for r in recs)
        decode = sum(r["latency_s"] - r["extra"]["decode"]["prompt_s"] for r in recs)
    if recs and not any(r["completion_tokens"] for r in recs):  # a head or retriever generates nothing:
        gen_tok, decode = 0, 0  # no generation rate (llama.cpp's counters would count its pass)
    price_in, price_out, price_src = costs.teacher_prices(recipe)
    paid = [r["cost_usd"] for r in recs if r["cost_usd"]]
    cost = costs.predictor_cost(
        built.hosting, mean_prompt_tokens=mean([r["prompt_tokens"] for r in recs]) or 0,
        mean_completion_tokens=mean([r["completion_tokens"] for r in recs]) or 0,
        mean_latency_s=mean(lat), paid_usd_per_request=sum(paid) / len(recs) if paid else None,
        price_in_per_m=price_in, price_out_per_m=price_out, usd_per_hour=usd_per_hour)
    headline = gold_m["headline"] if gold_m else (mean(agree_scores) if agree_scores else None)
    basis = "gold" if gold_m else ("teacher" if agree_scores else None)
    if headline is None and built.spec == "teacher":
        headline, basis = 1.0, "teacher (the reference itself: no gold answers)"
    summary: dict[str, Any] = {
        "n": len(recs),
        "n_gold": len(scored),
        "headline": headline,
        "headline_name": (gold_m or agree_m or {}).get("headline_name", ""),
        "headline_basis": basis,
        "headline_ci": bootstrap_ci([r["score"] for r in scored], n_boot) if scored else bootstrap_ci(agree_scores, n_boot),
        "field_accuracy": gold_m.get("field_accuracy") if gold_m else None,
        "exact_match": gold_m.get("exact_match") if gold_m else None,
        "exact_match_ci": bootstrap_ci([em(r) for r in scored], n_boot) if scored else None,
        "json_validity": sum(r["answer"] is not None for r in recs) / len(recs) if recs else None,
        "agreement_with_teacher": mean(agree_scores),
        "agreement_ci": bootstrap_ci(agree_scores, n_boot),
        "disagreements": sum(a < 1.0 for a in agree_scores),
        "p50_latency_s": percentile(lat, 50),
        "p95_latency_s": percentile(lat, 95),
        "mean_latency_s": mean(lat),
        "prompt_tokens_per_s": prompt_tok / prefill if prefill else None,
        "generation_tokens_per_s": gen_tok / decode if decode else (gen_tok / sum(lat) if gen_tok and lat and sum(lat) else None),
        "mean_prompt_tokens": mean([r["prompt_tokens"] for r in recs]),
        "mean_completion_tokens": mean([r["completion_tokens"] for r in recs]),
        "tokens_estimated": any(r["extra"].get("tokens_estimated") for r in recs),
        # what this predictor added to the evaluating process (its peak minus the resident memory
        # before it loaded): earlier predictors' memory is not charged to it
        "peak_rss_bytes": memory.peak - memory.start if memory and timed else None,
        "process_peak_rss_bytes": memory.peak if memory and timed else None,
        "load_s": load_s,
        "size_bytes": built.size_bytes,
        "hosting": built.hosting,
        "model": built.model,
        "cost_per_1k_usd": cost["cost_per_1k_usd"],
        "cost_basis": cost["basis"] if built.hosting != "dataset" else f"{cost['basis']} ({price_src}, tokens estimated)",
    }
    for key in ("macro_f1", "ece", "top1", "recall_at_k", "no_answer_precision", "hallucination_rate", "f1"):
        if gold_m and key in gold_m:
            summary[key] = gold_m[key]
    full = {**summary, "cost": cost, "metrics": gold_m, "agreement_metrics": agree_m, "latencies_s": lat,
            **built.facts}
    return summary, full


def evaluate_predictors(recipe, run_dir: Path, kinds: list[str], rows: list[dict], out_dir: Path) -> dict[str, Any]:
    """Evaluate each predictor spec on `rows`; see the module docstring for what is written."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    task = recipe.task
    if recipe.eval.max_examples:
        rows = rows[: recipe.eval.max_examples]
    if not rows:
        raise ValueError("no eval rows: check data.split.eval_size or the --data file")
    for row in rows:
        task.input_text(row)  # names a missing input column before any model loads
    out_dir.mkdir(parents=True, exist_ok=True)
    usd_per_hour, hw_source = costs.hardware_rate(recipe)
    ordered = sorted(dict.fromkeys(kinds), key=lambda k: k != "teacher")
    names = predictor_names(ordered)
    teacher_ref = None
    summaries, fulls, skipped = {}, {}, {}
    for spec in ordered:
        with PeakMemory(hwm=False, interval_s=0.05) as memory:
            t0 = time.perf_counter()
            try:
                built = build_predictor(spec, recipe, run_dir, names[spec])
            except PredictorUnavailable as exc:
                console.log(f"[yellow]skipped {spec}[/]: {exc}")
                skipped[spec] = str(exc)
                continue
            load_s = time.perf_counter() - t0
            try:
                recs = predict_all(built, rows, task)
            finally:
                close = getattr(built.predictor, "close", None)
                if callable(close):
                    close()
        if spec == "teacher":
            teacher_ref = {r["id"]: r["answer"] for r in recs}
        elif teacher_ref is None:
            teacher_ref = _teacher_reference(recipe, run_dir, rows, out_dir)
        summary, full = summarise(recipe, built, rows, recs, teacher_ref, memory, load_s, usd_per_hour)
        pdir = out_dir / built.name
        write_jsonl(pdir / PREDICTIONS_FILE, recs)
        write_jsonl(pdir / "disagreements.jsonl", [r for r in recs if r.get("agreement", 1.0) < 1.0])
        (pdir / METRICS_FILE).write_text(json.dumps(full, indent=2, default=str))
        summaries[built.name], fulls[built.name] = summary, full
        del built
        gc.collect()
    doc = {
        "n": len(rows), "task": {"name": task.name, "kind": task.kind,
                                 **({"knowledge_base": task.knowledge_base} if task.knowledge_base else {})},
        "machine": describe_machine(),
        "assumptions": assumptions(recipe, usd_per_hour, hw_source),
        "predictors": fulls, "skipped": skipped,
    }
    (out_dir / METRICS_FILE).write_text(json.dumps(doc, indent=2, default=str))
    result: dict[str, Any] = {"n": len(rows), "predictors": summaries}
    if skipped:
        result["skipped"] = skipped
    return result


def assumptions(recipe, usd_per_hour: float, hw_source: str) -> dict[str, Any]:
    price_in, price_out, price_src = costs.teacher_prices(recipe)
    return {"hardware_usd_per_hour": usd_per_hour, "hardware_source": hw_source,
            "teacher_price_input_per_m": price_in, "teacher_price_output_per_m": price_out,
            "teacher_price_source": price_src, "requests_per_day": recipe.eval.requests_per_day,
            "hybrid_thresholds": recipe.eval.hybrid_thresholds, "profile": recipe.target.profile,
            "confidence_threshold": recipe.target.confidence_threshold}
