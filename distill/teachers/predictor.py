"""The recipe's model teacher as a `Predictor`, for evaluation and escalation."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from distill.teachers.labelling import make_labeller


class TeacherPredictor:
    """The recipe's teacher as a `Predictor` (for evaluation and escalation).

    Runs its own event loop in a thread so `predict` is a plain call. With `cache_path`,
    answers already paid for are reused; latency and cost are the original request's.
    """

    def __init__(self, recipe, cache_path: Path | None = None, name: str = "teacher", audit_file: Path | None = None):
        self.name, self.recipe = name, recipe
        self._labeller = make_labeller(recipe, cache_path, audit_file, stage="eval")
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


def teacher_predictor(recipe, cache_path: Path | None = None, audit_file: Path | None = None) -> TeacherPredictor:
    """A Predictor for the recipe's openai/llamacpp/transformers teacher (the eval stage
    uses gold answers itself for `dataset`). Pass the run's `teacher-cache.sqlite` to reuse
    answers the teach stage already paid for; `audit_file`: where a remote teacher's calls are
    audited (`distill.teachers.privacy`)."""
    if recipe.teacher.kind == "dataset":
        raise ValueError("teacher.kind 'dataset' has no model to ask; evaluate it with the gold/logged answers")
    return TeacherPredictor(recipe, cache_path, audit_file=audit_file)
