"""A classifier head: the label set scored from one forward pass over the input.

A `classifier` student (recipe `student.head: classifier`) is the student's body plus a
linear layer on the final hidden state of the input's last token (transformers'
`*ForSequenceClassification` pooling). The body ships as an ordinary GGUF, run by llama.cpp
for one prompt-evaluation pass whose final hidden state is tapped (`engines/hidden_state.py`);
the head travels next to it as `head.npz` and is
applied here with numpy: no torch on the device, no token-by-token decoding, and the answer's
confidence is a real (temperature-calibrated) distribution over the labels.

`head.npz` holds `weight` (labels x hidden, float32), `labels` (unicode), `temperature`
(fitted on the validation split at train time) and `pooling` ("last").
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from edge_runtime.layout import HEAD_FILE  # noqa: F401  (re-exported: the head's file name)

HEADS = ("generate", "classifier")  # what `student.head` may name
POOLING = "last"
TOP_ALTERNATIVES = 3  # alternatives an answer lists beside its label


class HeadError(ValueError):
    """A head file that cannot be used; the message says what is wrong and what to do."""


H = TypeVar("H", bound="HeadFile")


class HeadFile(ABC):
    """What every head file (`ClassifierHead`, `retriever.RetrieverHead`) shares: it is an npz
    archive, read without pickle and refused with one clear error when it cannot be read, and
    written back the same way. A subclass names its file (`FILE`), what it is (`KIND`) and its
    error (`ERROR`); it reads its fields (`_from_npz`), checks them (`_check`) and lists what it
    writes (`_arrays`)."""

    FILE: ClassVar[str]
    KIND: ClassVar[str]
    ERROR: ClassVar[type[ValueError]]

    @classmethod
    @abstractmethod
    def _from_npz(cls: type[H], z: Any) -> H:
        """The head read from an open npz archive (a missing key raises KeyError)."""

    def _check(self, what: str) -> None:
        """Raise `ERROR` naming `what` when the fields read cannot be used."""

    @abstractmethod
    def _arrays(self) -> dict[str, np.ndarray]:
        """The arrays `to_bytes` writes, by name."""

    @classmethod
    def from_bytes(cls: type[H], data: bytes, what: str | None = None) -> H:
        what = cls.FILE if what is None else what
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                head = cls._from_npz(z)
        except (ValueError, KeyError, OSError, EOFError) as exc:
            raise cls.ERROR(f"{what}: not a {cls.KIND} file ({exc}); re-train or re-pack the bundle") from exc
        head._check(what)
        return head

    @classmethod
    def load(cls: type[H], path: str | Path) -> H:
        return cls.from_bytes(Path(path).read_bytes(), str(path))

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, **self._arrays())
        return buf.getvalue()

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_bytes(self.to_bytes())
        return path


@dataclass
class ClassifierHead(HeadFile):
    weight: np.ndarray  # (labels, hidden)
    labels: list[str]
    temperature: float = 1.0
    pooling: str = POOLING

    FILE = HEAD_FILE
    KIND = "classifier head"
    ERROR = HeadError

    @classmethod
    def _from_npz(cls, z: Any) -> "ClassifierHead":
        return cls(np.asarray(z["weight"], dtype=np.float32), [str(x) for x in z["labels"].tolist()],
                   float(z["temperature"]) if "temperature" in z else 1.0,
                   str(z["pooling"]) if "pooling" in z else POOLING)

    def _check(self, what: str) -> None:
        weight, labels, temperature = self.weight, self.labels, self.temperature
        if weight.ndim != 2 or weight.shape[0] != len(labels) or len(labels) < 2:
            raise HeadError(f"{what}: weight {weight.shape} does not match {len(labels)} labels; re-train the student")
        if not np.isfinite(weight).all() or not (np.isfinite(temperature) and temperature > 0):
            raise HeadError(f"{what}: non-finite weights or temperature; re-train the student")
        if self.pooling != POOLING:
            raise HeadError(f"{what}: pooling {self.pooling!r} is not supported (only {POOLING!r})")

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"weight": self.weight.astype(np.float32), "labels": np.array(self.labels, dtype=np.str_),
                "temperature": np.float64(self.temperature), "pooling": np.str_(self.pooling)}

    @property
    def hidden_size(self) -> int:
        return int(self.weight.shape[1])

    def logits(self, hidden: np.ndarray) -> np.ndarray:
        """Uncalibrated label scores for one pooled hidden state (or a batch of them)."""
        hidden = np.asarray(hidden, dtype=np.float32)
        if hidden.shape[-1] != self.hidden_size:
            raise HeadError(f"the model's hidden size {hidden.shape[-1]} differs from the head's {self.hidden_size}: "
                            f"the head belongs to another model")
        return hidden @ self.weight.T

    def probs(self, hidden: np.ndarray) -> np.ndarray:
        """The calibrated label distribution (softmax of logits / temperature)."""
        z = self.logits(hidden) / self.temperature
        z = z - z.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=-1, keepdims=True)

    def answer(self, probs: np.ndarray, top: int = TOP_ALTERNATIVES) -> tuple[dict[str, Any], float, list[dict[str, Any]]]:
        """(answer, its probability, the top alternatives with theirs) for one distribution."""
        order = np.argsort(-probs)
        best = int(order[0])
        alternatives = [{"label": self.labels[int(i)], "probability": round(float(probs[int(i)]), 6)}
                        for i in order[1:1 + top]]
        return {"label": self.labels[best]}, float(probs[best]), alternatives


def head_input(task, example: dict[str, Any]) -> str:
    """The text a classifier student reads: the input alone (the label set is in the head,
    not in a prompt), identical at training, evaluation and on the device."""
    return task.input_text(example)
