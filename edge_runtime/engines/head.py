"""A classifier student on the device: llama.cpp runs the input through the body once (the
last token's final hidden state is tapped out of an ordinary prompt-evaluation pass, see
`hidden_state.py`) and `ClassifierHead` turns that state into a calibrated label distribution
with numpy.

Same predictor contract as `LlamaCppPredictor`; the OpenAI text endpoints are refused with
a message, since a head answers labels, not text.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge_runtime.engines.hidden_state import HiddenStateReader, load_body
from edge_runtime.engines.llamacpp import LlamaCppModel
from edge_runtime.heads import ClassifierHead, head_input
from edge_runtime.layout import N_CTX
from edge_runtime.predictor import Prediction
from edge_runtime.task import TaskSpec


class HeadOnly(ValueError):
    """A text-generation call on a classifier bundle (the server answers it with a 400)."""


def head_settings(bundle: Any, read_head: Callable[[bytes, str], Any], n_gpu_layers: int | None) -> dict[str, Any]:
    """What a head predictor (classifier or retriever) takes from a verified bundle: its head file
    (`manifest["head"]`) read by `read_head` (the head class's `from_bytes`), the context size, the
    GPU layers (the bundle's profile unless `n_gpu_layers` overrides it) and the head file's size."""
    from edge_runtime.profiles import gpu_layers_for

    rel = bundle.manifest["head"]
    return {"head": read_head(bundle.read_bytes(rel), rel), "n_ctx": int(bundle.generation.get("n_ctx", N_CTX)),
            "n_gpu_layers": gpu_layers_for(bundle.manifest.get("profile"), n_gpu_layers),
            "head_bytes": int(bundle.manifest["files"][rel]["bytes"])}


class LlamaCppHeadPredictor(LlamaCppModel):
    """Answers a classification task with a GGUF body (one forward pass) plus a numpy head."""

    def __init__(self, gguf_path: str | Path, task: TaskSpec, head: ClassifierHead, name: str = "gguf",
                 n_ctx: int = N_CTX, n_threads: int | None = None, lora_path: str | Path | None = None,
                 head_bytes: int = 0, n_gpu_layers: int = 0, **_ignored: Any):
        if task.kind != "classification":
            raise ValueError(f"a classifier head answers classification tasks, not {task.kind!r}")
        if sorted(head.labels) != sorted(task.labels):
            raise ValueError("the head's labels differ from the task's: the head belongs to another task; re-train")
        self.name, self.task, self.head, self.path = name, task, head, Path(gguf_path)
        self.lora_path = Path(lora_path) if lora_path else None
        self.head_bytes = head_bytes or head.weight.nbytes
        extra = {"lora_path": str(self.lora_path)} if self.lora_path else {}
        self.llm = load_body(gguf_path, n_ctx=n_ctx, n_threads=n_threads, n_gpu_layers=n_gpu_layers, **extra)
        n_embd = self.llm.n_embd()
        if n_embd != head.hidden_size:
            raise ValueError(f"{self.path.name} has hidden size {n_embd}, the head {head.hidden_size}: "
                             f"the head belongs to another model; re-pack the run's own artifacts")
        self.reader = HiddenStateReader(self.llm)
        self._lock = threading.Lock()

    @classmethod
    def from_bundle(cls, bundle: Any, name: str = "gguf", n_threads: int | None = None,
                    n_gpu_layers: int | None = None, **kwargs: Any):
        return cls(bundle.model_path, bundle.task, name=name, n_threads=n_threads, lora_path=bundle.adapter_path,
                   **head_settings(bundle, ClassifierHead.from_bytes, n_gpu_layers))

    def hidden(self, text: str) -> tuple[np.ndarray, int]:
        """The last token's final hidden state of `text` and its token count (one pass)."""
        return self.reader.hidden(text)

    def predict(self, example: dict[str, Any], context: str = "", timeout_s: float | None = None) -> Prediction:
        text = head_input(self.task, example)
        start = time.perf_counter()
        with self._lock:  # one forward pass: like prompt evaluation, not interrupted by `timeout_s`
            hidden, n_prompt = self.hidden(text)
        probs = self.head.probs(hidden)
        answer, p, alternatives = self.head.answer(probs)
        return Prediction(answer=answer, raw=answer["label"], latency_s=time.perf_counter() - start,
                          prompt_tokens=n_prompt, completion_tokens=0, confidence=p,
                          extra={"alternatives": alternatives, "head": "classifier",
                                 "confidence_parts": {"label_probability": round(p, 6)}})

    # ---- the OpenAI text endpoints: not for a head
    def _refuse(self, *args: Any, **kwargs: Any):
        raise HeadOnly(f"this bundle serves a classifier head for task {self.task.name!r}: it answers labels at "
                       f"POST /v1/tasks/{self.task.name}, not free text; use that endpoint")

    complete = complete_json = stream = chat = _refuse
