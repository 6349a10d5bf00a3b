"""Turn a predictor spec (`teacher`, `base`, `student`, `gguf:<type|path>`, `hf:<dir>`,
`onnx:<type|dir>`, `bnb:<nf4|int8>[:<dir>]`, `bundle:<dir>`) into something with `predict(example) -> Prediction`.

Each built predictor comes with facts the cost and report need: where it runs (`api`,
`self-hosted`, or `dataset` for answers already on disk) and the size of its model file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_runtime.gguf_types import split_type
from edge_runtime.layout import RunLayout
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
    if kind == "gguf" and "+lora:" in arg:
        return f"gguf-{re.sub(r'[^A-Za-z0-9_.-]+', '_', Path(arg.split('+lora:')[0]).stem)}_lora"
    if kind == "bnb" and ":" in arg:  # bnb:nf4:/x/merged -> bnb-nf4-merged
        arg = arg.split(":", 1)[0] + "-" + Path(arg.split(":", 1)[1].rstrip("/")).name
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
    audit = teachers.audit_path(run_dir) if run_dir else None  # a remote teacher's calls (teacher.privacy)
    pred = make(recipe, cache if cache and cache.is_file() else None, audit)
    return Built("teacher", "teacher", pred, hosting, model=getattr(teacher, "model", teacher.kind))


# ---------------------------------------------------------------------------- students


def _gguf(path: Path, recipe, name: str, adapter: Path | None = None, head: Path | None = None) -> Built:
    from edge_runtime.engines.dispatch import gguf_predictor

    if not path.is_file():
        raise PredictorUnavailable(f"GGUF not found: {path} (run the quantize stage, or give gguf:<path to a .gguf>)")
    if adapter is not None and not adapter.is_file():
        raise PredictorUnavailable(f"LoRA adapter GGUF not found: {adapter} (run the quantize stage again)")
    pred = gguf_predictor(path, recipe.task, head=head, name=name, n_ctx=recipe.target.n_ctx, lora_path=adapter,
                          max_new_tokens=recipe.eval.max_new_tokens)
    size = path.stat().st_size + (adapter.stat().st_size if adapter else 0) + (head.stat().st_size if head else 0)
    spec = f"gguf:{path}" + (f"+lora:{adapter}" if adapter else "")
    facts = {"engine": "llama.cpp", **({"adapter": str(adapter)} if adapter else {}),
             **({"head": str(head)} if head else {})}
    return Built(name, spec, pred, "self-hosted", size, model=str(path), facts=facts)


def _quantized(run_dir: Path, qtype: str) -> tuple[Path, Path | None]:
    """A quantize-stage artifact by type: its model file and, for `<type>+lora`, its adapter."""
    run = RunLayout(run_dir)
    record = run.record("quantize")
    if record.is_file():
        outputs = json.loads(record.read_text()).get("outputs", {})
        if qtype in outputs.get("artifacts", {}):
            adapter = outputs.get("adapters", {}).get(qtype)
            return Path(outputs["artifacts"][qtype]), Path(adapter) if adapter else None
    if split_type(qtype)[1]:  # the quantize stage's own names (its record is written after its eval)
        base, adapter = run.artifact(qtype), run.adapter_gguf
        if not (base.is_file() and adapter.is_file()):
            raise PredictorUnavailable(f"no {qtype} artifact in {run.quantize_dir}: add it to quantize.types and run the quantize stage")
        return base, adapter
    return run.artifact(qtype), None


def _hf(path: str | Path, recipe, name: str) -> Built:
    from distill.eval.hf_predictor import HFPredictor

    pred = HFPredictor(path, recipe.task, name=name, max_new_tokens=recipe.eval.max_new_tokens)
    return Built(name, f"hf:{path}", pred, "self-hosted", pred.size_bytes, model=str(path),
                 facts={"engine": "transformers", "device": pred.device})


ONNX_TYPES = ("fp32", "int8", "int4")


def _onnx(path: Path, recipe, name: str) -> Built:
    from edge_runtime.engines.onnx import OnnxPredictor

    if not (path / "model.onnx").is_file():
        raise PredictorUnavailable(f"no ONNX model at {path / 'model.onnx'} (make one with `quantize onnx <merged dir> "
                                   f"--out <run>/quantize`, or give onnx:<folder with model.onnx>)")
    pred = OnnxPredictor(path, recipe.task, name=name, max_new_tokens=recipe.eval.max_new_tokens)
    return Built(name, f"onnx:{path}", pred, "self-hosted", pred.size_bytes, model=str(path),
                 facts={"engine": "onnxruntime", "quantization": pred.meta.get("quantization")})


def _bnb(kind: str, path: Path, recipe, name: str) -> Built:
    """An HF model loaded in bitsandbytes NF4/INT8 (quantized while loading, or a `quantize bnb`
    checkpoint); its size is the in-memory footprint."""
    from distill.eval.hf_predictor import HFPredictor
    from quantize.bnb import KINDS, BnbUnavailable, bnb_config, check_bnb_device, saved_kind

    if kind not in KINDS:
        raise PredictorUnavailable(f"bnb:{kind}: unknown kind; use bnb:nf4 or bnb:int8 (optionally :<HF dir>)")
    if not (path / "config.json").is_file():
        raise PredictorUnavailable(f"no HF model at {path} (run `distill train`, or give bnb:{kind}:<HF dir>)")
    existing = saved_kind(path)
    if existing not in (None, kind):
        raise PredictorUnavailable(f"{path} is a bitsandbytes {existing} checkpoint; use bnb:{existing}:{path}")
    try:
        device = check_bnb_device(kind)
    except BnbUnavailable as exc:
        raise PredictorUnavailable(str(exc)) from exc
    pred = HFPredictor(path, recipe.task, name=name, max_new_tokens=recipe.eval.max_new_tokens, device=device,
                       quantization_config=bnb_config(kind))
    return Built(name, f"bnb:{kind}:{path}", pred, "self-hosted", pred.size_bytes, model=str(path),
                 facts={"engine": "transformers+bitsandbytes", "kind": kind, "device": device})


def _merged_dir(run_dir: Path) -> Path:
    record = RunLayout(run_dir).record("train")
    if record.is_file():
        merged = json.loads(record.read_text()).get("outputs", {}).get("merged_dir")
        if merged:
            return Path(merged)
    return RunLayout(run_dir).merged_dir


def _bundle(path: Path, recipe, name: str) -> Built:
    """A packed bundle, verified against its manifest, answering with its own task spec,
    grammar and generation settings: eval judges exactly what ships."""
    from edge_runtime.bundle import BundleError, load_bundle
    from edge_runtime.engines import bundle_predictor

    if not path.exists():
        raise PredictorUnavailable(f"bundle not found: {path} (give the directory or .tar `edge-runtime pack` wrote)")
    try:
        bundle = load_bundle(path)
    except (BundleError, FileNotFoundError) as exc:
        raise PredictorUnavailable(f"bundle {path} refused: {exc}") from exc
    pred = bundle_predictor(bundle, name=name)
    return Built(name, f"bundle:{path}", pred, "self-hosted", pred.size_bytes,
                 model=str(bundle.model_path), facts={"engine": "llama.cpp", "bundle": str(path)})


def _run_head(recipe, run_dir: Path) -> Path | None:
    """The run's head file for a `student.head: classifier` or `retriever` recipe (None otherwise)."""
    from distill.recipe import student_head

    if student_head(recipe) not in ("classifier", "retriever"):
        return None
    from edge_runtime.bundle import run_head

    try:
        head = run_head(run_dir)
    except FileNotFoundError as exc:
        raise PredictorUnavailable(str(exc)) from exc
    if head is None:
        raise PredictorUnavailable(f"no {student_head(recipe)} head in {RunLayout(run_dir).head.parent}: run the train "
                                   f"stage first")
    return head


def predictor_names(specs: list[str]) -> dict[str, str]:
    """Each spec's file-safe name, unique among `specs`: two GGUF paths with one file name
    (`a/model-q4_k_m.gguf`, `b/model-q4_k_m.gguf`) get their folders' names in front, then a number,
    so neither result overwrites the other."""
    names: dict[str, str] = {}
    for spec in specs:
        name = predictor_name(spec)
        if name in names.values():
            kind, _, arg = spec.partition(":")
            folder = Path(arg.split("+lora:")[0]).parent.name if kind in ("gguf", "onnx", "hf", "bundle") else ""
            name = f"{name}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', folder)}" if folder else name
            base, n = name, 2
            while name in names.values():
                name, n = f"{base}-{n}", n + 1
        names[spec] = name
    return names


def build_predictor(spec: str, recipe, run_dir: Path, name: str | None = None) -> Built:
    """Build the predictor a spec names (as `name`, default its own), with a clear error when it cannot be."""
    name = name or predictor_name(spec)
    if spec == "teacher":
        return teacher_predictor(recipe, run_dir)
    if spec == "student":
        merged = _merged_dir(run_dir)
        if not (merged / "config.json").is_file():
            raise PredictorUnavailable(f"no trained student at {merged}: run `distill train` (or `distill run`) first")
        head = _run_head(recipe, run_dir)
        if head is not None:
            from distill.eval.hf_head_predictor import HFHeadPredictor
            from distill.eval.hf_retriever_predictor import HFRetrieverPredictor
            from edge_runtime.bundle import is_retriever_file

            pred = (HFRetrieverPredictor if is_retriever_file(head) else HFHeadPredictor)(merged, head, recipe.task)
            return Built("student", "student", pred, "self-hosted", pred.size_bytes, model=str(merged),
                         facts={"engine": "transformers", "head": str(head), "device": pred.device})
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
        if arg.endswith(".gguf") or "+lora:" in arg:  # a path, or MODEL.gguf+lora:ADAPTER.gguf
            model, _, adapter = arg.partition("+lora:")  # a head recipe's body GGUF answers through the run's head
            return _gguf(Path(model), recipe, name, Path(adapter) if adapter else None, _run_head(recipe, run_dir))
        model, adapter = _quantized(run_dir, arg)
        return _gguf(model, recipe, name, adapter, _run_head(recipe, run_dir))
    if kind == "hf" and arg:
        return _hf(arg, recipe, name)
    if kind == "onnx" and arg:
        return _onnx(RunLayout(run_dir).quantize_dir / f"onnx-{arg}" if arg in ONNX_TYPES else Path(arg), recipe, name)
    if kind == "bnb" and arg:
        bnb_kind, _, where = arg.partition(":")
        return _bnb(bnb_kind, Path(where) if where else _merged_dir(run_dir), recipe, name)
    if kind == "bundle" and arg:
        return _bundle(Path(arg), recipe, name)
    raise PredictorUnavailable(
        f"unknown predictor {spec!r}; use teacher | base | student | gguf:<type, type+lora, path.gguf or path.gguf+lora:adapter.gguf> | hf:<dir> | "
        f"onnx:<fp32|int8|int4 or dir> | bnb:<nf4|int8>[:<dir>] | bundle:<dir>"
    )
