"""Teachers: things that label inputs for a task. `run_teach` is the teach stage.

Kinds: `dataset` (answers already on disk), `openai` (any OpenAI-compatible endpoint),
`llamacpp` (a local GGUF in process), `transformers` (a local HF model). The model kinds
share one engine (`label.Labeller`): a SQLite response cache in the run directory (so a
re-run, even of a stage whose directory was wiped, pays nothing twice), a cost ledger with
a budget, rate limits, validation with one retry, and self-consistency voting.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

from distill.data.io import write_jsonl
from edge_runtime.layout import LABELLED_FILE

CACHE_NAME = "teacher-cache.sqlite"


def cache_path(run_dir: Path) -> Path:
    """Where a run keeps its teacher cache: beside the stage directories, so a teach stage
    redone after a recipe change (its directory wiped) still finds every paid answer."""
    return Path(run_dir) / CACHE_NAME


def make_backend(recipe):
    """The backend for the recipe's model teacher (not `dataset`)."""
    cfg, task = recipe.teacher, recipe.task
    if cfg.kind == "openai":
        from distill.teachers.openai_teacher import OpenAIBackend

        return OpenAIBackend(cfg, task.json_schema(), task.name)
    if cfg.kind == "llamacpp":
        from distill.teachers.llamacpp_teacher import LlamaCppBackend

        return LlamaCppBackend(cfg, task)
    if cfg.kind == "transformers":
        from distill.teachers.transformers_teacher import TransformersBackend

        return TransformersBackend(cfg, task)
    raise ValueError(f"teacher.kind {cfg.kind!r} has no model backend; expected openai, llamacpp or transformers")


def make_labeller(recipe, cache_path: Path | None):
    from distill.teachers.cache import ResponseCache
    from distill.teachers.label import Labeller
    from distill.teachers.ledger import Ledger
    from distill.teachers.prices import price_for
    from distill.teachers.ratelimit import RateLimiter

    cfg = recipe.teacher
    if cfg.kind == "openai":
        price = price_for(cfg.model, cfg.price_input_per_m, cfg.price_output_per_m)
        ledger = Ledger(price, cfg.max_cost_usd)
        limiter = RateLimiter(cfg.requests_per_minute, cfg.tokens_per_minute)
        keep = cfg.reasoning == "keep"
    else:
        ledger, limiter, keep = Ledger(None), RateLimiter(), False
    return Labeller(
        recipe.task, make_backend(recipe), ledger,
        cache=ResponseCache(cache_path) if cache_path else None, limiter=limiter,
        temperature=cfg.temperature, max_tokens=cfg.max_tokens, samples=cfg.samples, keep_reasoning=keep,
    )


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
        from distill.data.synthesize import synthesize_rows

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
    labeller = make_labeller(recipe, cache_file)
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


class TeacherPredictor:
    """The recipe's teacher as a `Predictor` (for evaluation and escalation).

    Runs its own event loop in a thread so `predict` is a plain call. With `cache_path`,
    answers already paid for are reused; latency and cost are the original request's.
    """

    def __init__(self, recipe, cache_path: Path | None = None, name: str = "teacher"):
        self.name, self.recipe = name, recipe
        self._labeller = make_labeller(recipe, cache_path)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="teacher-loop")
        self._thread.start()

    def predict(self, example: dict[str, Any]):
        from edge_runtime.predictor import Prediction

        fut = asyncio.run_coroutine_threadsafe(self._labeller.label(example), self._loop)
        labelled, failure, outs = fut.result()
        comps = [o.completion for o in outs if o.completion is not None]
        p, c, k = (sum(getattr(x, f) for x in comps) for f in ("prompt_tokens", "completion_tokens", "cached_tokens"))
        return Prediction(
            answer=labelled["answer"] if labelled else None,
            raw=comps[0].raw if comps else "",
            problems=failure["problems"] if failure else [],
            latency_s=max((x.latency_s for x in comps), default=0.0),
            prompt_tokens=p,
            completion_tokens=c,
            confidence=labelled["agreement"] if labelled else 0.0,
            cost_usd=self._labeller.ledger.cost(p, c, k),
            extra={"cached": all(o.cached for o in outs), "paid_now_usd": sum(o.cost_usd for o in outs),
                   **({"reasoning": comps[0].reasoning} if comps and comps[0].reasoning else {})},
        )

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._labeller.backend.aclose(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if self._labeller.cache is not None:
            self._labeller.cache.close()


def teacher_predictor(recipe, cache_path: Path | None = None) -> TeacherPredictor:
    """A Predictor for the recipe's openai/llamacpp/transformers teacher (the eval stage
    uses gold answers itself for `dataset`). Pass the run's `teacher-cache.sqlite` to reuse
    answers the teach stage already paid for."""
    if recipe.teacher.kind == "dataset":
        raise ValueError("teacher.kind 'dataset' has no model to ask; evaluate it with the gold/logged answers")
    return TeacherPredictor(recipe, cache_path)
