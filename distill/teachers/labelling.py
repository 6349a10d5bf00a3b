"""A model teacher's labelling engine for a recipe: its backend (openai, llamacpp,
transformers) and the `label.Labeller` around it, with the run's response cache."""

from __future__ import annotations

from pathlib import Path

CACHE_NAME = "teacher-cache.sqlite"


def cache_path(run_dir: Path) -> Path:
    """Where a run keeps its teacher cache: beside the stage directories, so a teach stage
    redone after a recipe change (its directory wiped) still finds every paid answer."""
    return Path(run_dir) / CACHE_NAME


def make_backend(recipe, audit_file: Path | None = None, stage: str = "teach"):
    """The backend for the recipe's model teacher (not `dataset`). A remote `openai` teacher's
    requests are masked and audited into `audit_file` (`distill.teachers.privacy`)."""
    cfg, task = recipe.teacher, recipe.task
    if cfg.kind == "openai":
        from distill.teachers.openai_teacher import OpenAIBackend
        from distill.teachers.privacy import private_backend

        return private_backend(cfg, OpenAIBackend(cfg, task.json_schema(), task.name), audit_file, stage)
    if cfg.kind == "llamacpp":
        from distill.teachers.llamacpp_teacher import LlamaCppBackend

        return LlamaCppBackend(cfg, task)
    if cfg.kind == "transformers":
        from distill.teachers.transformers_teacher import TransformersBackend

        return TransformersBackend(cfg, task)
    raise ValueError(f"teacher.kind {cfg.kind!r} has no model backend; expected openai, llamacpp or transformers")


def make_labeller(recipe, cache_path: Path | None, audit_file: Path | None = None, stage: str = "teach"):
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
        recipe.task, make_backend(recipe, audit_file, stage), ledger,
        cache=ResponseCache(cache_path) if cache_path else None, limiter=limiter,
        temperature=cfg.temperature, max_tokens=cfg.max_tokens, samples=cfg.samples, keep_reasoning=keep,
        top_logprobs=getattr(cfg, "top_logprobs", 0),
    )


