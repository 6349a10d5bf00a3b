"""The run directory's layout and the resolved recipe's defaults: the one place that spells them.

`distill run` writes `runs/<recipe>/`; `quantize sweep`, `edge-runtime pack` and `distill eval`
read it. They all ask this module for a path, an artifact's file name or a setting of
`recipe.resolved.json`, so none of them re-spells a path or re-states a default. It lives in
edge_runtime (pure stdlib) so that all three packages can import it.

    runs/<recipe>/
      recipe.resolved.json          the recipe with every default filled in
      <stage>/record.json           what each stage depended on and produced
      teach/labelled.jsonl          the teacher's answers; teach/eval.jsonl: the evaluation split
      curate/train.jsonl            the curated training rows
      train/adapter/, train/merged/ the LoRA adapter and the merged student (train/merged/template.json)
      eval/metrics.json             the student's evaluation (eval/<predictor>/predictions.jsonl)
      quantize/model-<q>.gguf       a quantized student; quantize/base-<q>.gguf + adapter-f16.gguf: `<q>+lora`
      quantize/eval/metrics.json    the quantized artifacts' evaluation
      pack/bundle/                  the bundle
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_runtime.gguf_types import split_type

# ---- defaults the runtime needs too (distill/recipe.py's fields take them from here) ----------
N_CTX = 2048  # target.n_ctx: the context a device serves with
PARALLEL = 1  # target.parallel: decoding slots
CONFIDENCE_THRESHOLD = 0.5  # target.confidence_threshold: below it the runtime escalates
PROFILE = "router-8gb"  # target.profile
MAX_NEW_TOKENS = 160  # eval.max_new_tokens: answer length, also the bundle's generation limit
QUALITY_FLOOR = 0.98  # quantize.quality_floor: share of the F16 student's metric a quantized type keeps
IMATRIX = False  # quantize.imatrix
IMATRIX_PROMPTS = 64  # training prompts (with answers) an importance matrix reads for a generating student
IMATRIX_HEAD_INPUTS = 512  # inputs it reads for a head student: short texts, so more of them for as many tokens

# ---- names ---------------------------------------------------------------------------------
STAGES = ("teach", "curate", "train", "eval", "quantize", "pack")
RECIPE_FILE = "recipe.resolved.json"
RECORD_FILE = "record.json"
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.jsonl"
# names inside a stage's folder (the stage writes them into the folder it is given)
LABELLED_FILE = "labelled.jsonl"  # teach
EVAL_SPLIT_FILE = "eval.jsonl"  # teach
TRAIN_ROWS_FILE = "train.jsonl"  # curate
ADAPTER_DIR = "adapter"  # train
MERGED_DIR = "merged"  # train
HEAD_FILE = "head.npz"  # train (student.head: classifier) and bundle: the classifier head
ADAPTER_GGUF = "adapter-f16.gguf"  # a `<q>+lora` artifact's F16 LoRA adapter
IMATRIX_GGUF = "imatrix.gguf"
MODEL_NAME = "model"  # the prefix of a run's model files; `quantize gguf --name` chooses another


def model_gguf(qtype: str, name: str = MODEL_NAME) -> str:
    """`model-<q>.gguf`: the merged student quantized to `qtype` (a plain type); `<name>-<q>.gguf`
    for another name."""
    return f"{name}-{qtype}.gguf"


def imatrix_gguf(name: str = MODEL_NAME) -> str:
    """`imatrix.gguf` beside a run's model files; `<name>-imatrix.gguf` beside another name's, so
    models of several names can share one folder."""
    return IMATRIX_GGUF if name == MODEL_NAME else f"{name}-{IMATRIX_GGUF}"


def base_gguf(qtype: str) -> str:
    """`base-<q>.gguf`: the base model alone quantized to `qtype`, served with the adapter."""
    return f"base-{qtype}.gguf"


def artifact_gguf(qtype: str) -> str:
    """The model file of any type: `base-<q>.gguf` for `<q>+lora`, else `model-<q>.gguf`."""
    base, is_adapter = split_type(qtype)
    return base_gguf(base) if is_adapter else model_gguf(base)


@dataclass(frozen=True)
class RunLayout:
    """The paths of one run directory."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def stage(self, name: str) -> Path:
        return self.root / name

    def record(self, stage: str) -> Path:
        return self.root / stage / RECORD_FILE

    @property
    def recipe(self) -> Path:
        return self.root / RECIPE_FILE

    # teach
    @property
    def labelled(self) -> Path:
        return self.root / "teach" / LABELLED_FILE

    @property
    def eval_split(self) -> Path:
        return self.root / "teach" / EVAL_SPLIT_FILE

    # curate
    @property
    def train_rows(self) -> Path:
        return self.root / "curate" / TRAIN_ROWS_FILE

    # train
    @property
    def adapter_dir(self) -> Path:
        return self.root / "train" / ADAPTER_DIR

    @property
    def merged_dir(self) -> Path:
        return self.root / "train" / MERGED_DIR

    @property
    def head(self) -> Path:
        return self.root / "train" / HEAD_FILE

    @property
    def template(self) -> Path:
        return self.merged_dir / "template.json"

    # eval
    @property
    def eval_metrics(self) -> Path:
        return self.root / "eval" / METRICS_FILE

    def predictions(self, predictor: str) -> Path:
        return self.root / "eval" / predictor / PREDICTIONS_FILE

    # quantize
    @property
    def quantize_dir(self) -> Path:
        return self.root / "quantize"

    @property
    def quantized_eval(self) -> Path:
        return self.root / "quantize" / "eval"

    def artifact(self, qtype: str) -> Path:
        return self.quantize_dir / artifact_gguf(qtype)

    @property
    def adapter_gguf(self) -> Path:
        return self.quantize_dir / ADAPTER_GGUF

    def read_record(self, stage: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.record(stage).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def read_recipe(self) -> "ResolvedRecipe":
        return ResolvedRecipe(json.loads(self.recipe.read_text(encoding="utf-8")))


@dataclass(frozen=True)
class ResolvedRecipe:
    """`recipe.resolved.json` as plain data, for readers that must not import distill; a setting an
    older run did not write falls back to the default above."""

    data: dict[str, Any]

    def section(self, name: str) -> dict[str, Any]:
        return self.data.get(name) or {}

    @property
    def task(self) -> dict[str, Any]:
        return self.data["task"]

    @property
    def teacher(self) -> dict[str, Any]:
        return self.section("teacher")

    @property
    def quantize_types(self) -> list[str]:
        return list(self.section("quantize").get("types", []))

    @property
    def quality_floor(self) -> float:
        return float(self.section("quantize").get("quality_floor", QUALITY_FLOOR))

    @property
    def imatrix(self) -> bool:
        return bool(self.section("quantize").get("imatrix", IMATRIX))

    @property
    def embedding_type(self) -> str | None:
        return self.section("quantize").get("embedding_type")

    @property
    def max_new_tokens(self) -> int:
        return self.section("eval").get("max_new_tokens", MAX_NEW_TOKENS)

    @property
    def n_ctx(self) -> int:
        return self.section("target").get("n_ctx", N_CTX)

    @property
    def parallel(self) -> int:
        return self.section("target").get("parallel", PARALLEL)

    @property
    def confidence_threshold(self) -> float:
        return self.section("target").get("confidence_threshold", CONFIDENCE_THRESHOLD)


def iter_jsonl(path: str | Path):
    """(line number, object) for each non-blank line of a JSONL file; a line that is not one JSON
    object raises a ValueError naming `path:line`."""
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not valid JSON ({exc.msg}); each line must be one JSON object") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{n}: expected a JSON object, got {type(row).__name__}")
            yield n, row


def read_jsonl(path: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file, one a line (blank lines skipped); the first `limit` only."""
    rows: list[dict[str, Any]] = []
    for _, row in iter_jsonl(path):
        rows.append(row)
        if limit is not None and len(rows) >= limit:
            break
    return rows
