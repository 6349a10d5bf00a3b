"""The predictor contract: anything that answers a task (a teacher, an HF student, a
GGUF, an ONNX model, a bundle). Evaluation and the runtime speak to predictors only."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass
class Prediction:
    answer: dict[str, Any] | None  # a schema-valid answer, or None
    raw: str = ""  # the model's text, kept for debugging and disagreement listings
    problems: list[str] = field(default_factory=list)  # why `answer` is None
    latency_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    confidence: float | None = None  # 0..1 where the predictor can tell
    cost_usd: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return self.answer is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class Predictor(Protocol):
    name: str

    def predict(self, example: dict[str, Any]) -> Prediction: ...
