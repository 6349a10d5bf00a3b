"""Turn a predictor spec (`teacher`, `base`, `student`, `gguf:<type|path>`, `hf:<dir>`,
`bundle:<dir>`) into something with `predict(example) -> Prediction`.

Each built predictor comes with facts the cost and report need: where it runs (`api`,
`self-hosted`, or `dataset` for answers already on disk) and the size of its model file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_runtime.predictor import Prediction, Predictor

CHARS_PER_TOKEN = 4.0  # rule of thumb for estimating the tokens of answers we did not pay for


class PredictorUnavailable(RuntimeError):
    """The spec names something that cannot be built here; the message says what to do."""


@dataclass
class Built:
    name: str
    spec: str
    predictor: Predictor
    hosting: str  # "api" | "self-hosted" | "dataset"
    size_bytes: int | None = None
    model: str = ""
    facts: dict[str, Any] = field(default_factory=dict)


def predictor_name(spec: str) -> str:
    """A file-safe name: `gguf:q4_k_m` -> `gguf-q4_k_m`, `hf:/x/merged` -> `hf-merged`."""
    if ":" not in spec:
        return spec
    kind, arg = spec.split(":", 1)
    stem = Path(arg).stem if kind == "gguf" and arg.endswith(".gguf") else Path(arg.rstrip("/")).name
    return f"{kind}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', stem)}"


# ---------------------------------------------------------------------------- dataset teacher


class DatasetTeacherPredictor:
    """The `dataset` teacher's answers: the data's answer field or its responses log.

    Reuses the teach stage's own lookup, so eval sees exactly what training was given.
    Token counts are estimates (characters / 4) so an API price can be put on them.
    """

    def __init__(self, recipe, name: str = "teacher"):
        self.name, self.recipe = name, recipe

    def predict(self, example: dict[str, Any]) -> Prediction:
        from distill.teachers.dataset import label_from_dataset

        task = self.recipe.task
        row = dict(example)
        if not self.recipe.teacher.responses and self.recipe.data.answer_field not in row and row.get("gold"):
            row[self.recipe.data.answer_field] = row["gold"]
        labelled, failed = label_from_dataset(self.recipe, [row])
        answer = labelled[0]["answer"] if labelled else None
        problems = [] if labelled else [failed[0]["reason"] or "no answer"]
        prompt = task.render_prompt(example)
        raw = task.render_answer(answer) if answer else ""
        return Prediction(
            answer=answer, raw=raw, problems=problems, latency_s=0.0,
            prompt_tokens=round(len(prompt) / CHARS_PER_TOKEN),
            completion_tokens=round(len(raw) / CHARS_PER_TOKEN) if raw else 0,
            confidence=1.0 if answer else None, extra={"tokens_estimated": True},
        )


def teacher_predictor(recipe, run_dir: Path | None = None) -> Built:
    """The recipe's teacher as a predictor. `dataset` is built here; the others come from
    `distill.teachers.teacher_predictor(recipe, cache_path)` (the teachers package owns API
    and local teachers), reusing the teach stage's cache so no answer is paid for twice."""
    teacher = recipe.teacher
    if teacher.kind == "dataset":
        return Built("teacher", "teacher", DatasetTeacherPredictor(recipe), "dataset", model="dataset")
    try:
        from distill import teachers

        make = getattr(teachers, "teacher_predictor")
    except (ImportError, AttributeError):
        raise PredictorUnavailable(
            f"teacher.kind {teacher.kind!r} cannot be evaluated in this build: distill.teachers has no "
            f"`teacher_predictor(recipe)`. Evaluate without it (--predictor student ...) or use teacher.kind: dataset "
            f"with a responses log"
        ) from None
    hosting = "api" if teacher.kind == "openai" else "self-hosted"
    cache = teachers.cache_path(run_dir) if run_dir else None  # the answers the teach stage paid for
    pred = make(recipe, cache if cache and cache.is_file() else None)
    return Built("teacher", "teacher", pred, hosting, model=getattr(teacher, "model", teacher.kind))


# ---------------------------------------------------------------------------- students


def _gguf(path: Path, recipe, name: str) -> Built:
    from edge_runtime.engines.llamacpp import LlamaCppPredictor

    if not path.is_file():
        raise PredictorUnavailable(f"GGUF not found: {path} (run the quantize stage, or give gguf:<path to a .gguf>)")
    pred = LlamaCppPredictor(path, recipe.task, name=name, n_ctx=recipe.target.n_ctx,
                             max_new_tokens=recipe.eval.max_new_tokens)
    return Built(name, f"gguf:{path}", pred, "self-hosted", path.stat().st_size, model=str(path), facts={"engine": "llama.cpp"})


def _hf(path: str | Path, recipe, name: str) -> Built:
    from distill.eval.hf_predictor import HFPredictor

    pred = HFPredictor(path, recipe.task, name=name, max_new_tokens=recipe.eval.max_new_tokens)
    return Built(name, f"hf:{path}", pred, "self-hosted", pred.size_bytes, model=str(path),
                 facts={"engine": "transformers", "device": pred.device})


def _merged_dir(run_dir: Path) -> Path:
    record = run_dir / "train" / "record.json"
    if record.is_file():
        merged = json.loads(record.read_text()).get("outputs", {}).get("merged_dir")
        if merged:
            return Path(merged)
    return run_dir / "train" / "merged"


def _bundle(path: Path, recipe, name: str) -> Built:
    """A packed bundle, verified against its manifest, answering with its own task spec,
    grammar and generation settings: eval judges exactly what ships."""
    from edge_runtime.bundle import BundleError, load_bundle
    from edge_runtime.engines.llamacpp import LlamaCppPredictor

    if not path.exists():
        raise PredictorUnavailable(f"bundle not found: {path} (give the directory or .tar `edge-runtime pack` wrote)")
    try:
        bundle = load_bundle(path)
    except (BundleError, FileNotFoundError) as exc:
        raise PredictorUnavailable(f"bundle {path} refused: {exc}") from exc
    gen = bundle.generation
    pred = LlamaCppPredictor(bundle.model_path, bundle.task, name=name, n_ctx=gen.get("n_ctx", recipe.target.n_ctx),
                             max_new_tokens=gen.get("max_new_tokens", recipe.eval.max_new_tokens),
                             grammar_text=bundle.grammar)
    return Built(name, f"bundle:{path}", pred, "self-hosted", bundle.model_path.stat().st_size,
                 model=str(bundle.model_path), facts={"engine": "llama.cpp", "bundle": str(path)})


def build_predictor(spec: str, recipe, run_dir: Path) -> Built:
    """Build the predictor a spec names, with a clear error when it cannot be."""
    name = predictor_name(spec)
    if spec == "teacher":
        return teacher_predictor(recipe, run_dir)
    if spec == "student":
        merged = _merged_dir(run_dir)
        if not (merged / "config.json").is_file():
            raise PredictorUnavailable(f"no trained student at {merged}: run `distill train` (or `distill run`) first")
        return _hf(merged, recipe, "student")
    if spec == "base":
        from distill.models.resolve import resolve

        model = recipe.student.model
        resolved = resolve(model, need_hf=False)
        if resolved.gguf_path is not None:  # e.g. gemma-3-270m: its original GGUF, as shipped
            built = _gguf(resolved.gguf_path, recipe, "base")
        else:
            built = _hf(resolve(model).hf_path, recipe, "base")
        built.spec = "base"
        return built
    kind, _, arg = spec.partition(":")
    if kind == "gguf" and arg:
        path = Path(arg)
        if not arg.endswith(".gguf"):
            path = run_dir / "quantize" / f"model-{arg}.gguf"
        return _gguf(path, recipe, name)
    if kind == "hf" and arg:
        return _hf(arg, recipe, name)
    if kind == "bundle" and arg:
        return _bundle(Path(arg), recipe, name)
    raise PredictorUnavailable(
        f"unknown predictor {spec!r}; use teacher | base | student | gguf:<type or path.gguf> | hf:<dir> | bundle:<dir>"
    )
