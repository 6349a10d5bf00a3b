"""A classifier student on the device: llama.cpp runs the input through the body once (the
last token's final hidden state is read in embedding mode) and `ClassifierHead` turns that
state into a calibrated label distribution with numpy.

Same predictor contract as `LlamaCppPredictor`; the OpenAI text endpoints are refused with
a message, since a head answers labels, not text.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.engines.llamacpp import load_llama
from edge_runtime.heads import ClassifierHead, head_input
from edge_runtime.layout import N_CTX
from edge_runtime.predictor import Prediction
from edge_runtime.task import TaskSpec


def last_hidden(llm, text: str, n_embd: int) -> tuple[np.ndarray, int]:
    """The last token's final hidden state of `text` and its token count, from a llama.cpp
    model loaded in embedding mode with last-token pooling.

    Not `Llama.embed`: in embedding mode llama.cpp makes every token of a pass an output,
    so the vocabulary-sized output layer (262k rows for Gemma 3) would run once per token.
    The tokens before the last go in with embeddings off and no output at all (the KV cache
    only); the last token goes alone with embeddings on, so the output layer runs once:
    the cost of prompt evaluation."""
    import llama_cpp

    tokens = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
    if len(tokens) > llm.n_ctx():
        raise ValueError(f"input has {len(tokens)} tokens; the context holds {llm.n_ctx()}")
    ctx, batch = llm._ctx, llm._batch
    ctx.kv_cache_clear()
    try:
        llama_cpp.llama_set_embeddings(ctx.ctx, False)
        step = llm.n_batch
        for start in range(0, len(tokens) - 1, step):
            chunk = tokens[start:min(start + step, len(tokens) - 1)]
            batch.set_batch(chunk, n_past=start, logits_all=False)
            batch.batch.logits[len(chunk) - 1] = False  # no output row: these only fill the cache
            ctx.decode(batch)
        llama_cpp.llama_set_embeddings(ctx.ctx, True)
        batch.set_batch(tokens[-1:], n_past=len(tokens) - 1, logits_all=True)
        ctx.decode(batch)
        ptr = llama_cpp.llama_get_embeddings_seq(ctx.ctx, 0)
        state = np.ctypeslib.as_array(ptr, shape=(n_embd,)).astype(np.float32)
    finally:
        batch.reset()
        llama_cpp.llama_set_embeddings(ctx.ctx, True)
    return state, len(tokens)


class HeadOnly(ValueError):
    """A text-generation call on a classifier bundle (the server answers it with a 400)."""


class LlamaCppHeadPredictor:
    """Answers a classification task with a GGUF body in embedding mode plus a numpy head."""

    def __init__(self, gguf_path: str | Path, task: TaskSpec, head: ClassifierHead, name: str = "gguf",
                 n_ctx: int = N_CTX, n_threads: int | None = None, lora_path: str | Path | None = None,
                 head_bytes: int = 0, n_gpu_layers: int = 0, **_ignored: Any):
        from llama_cpp import LLAMA_POOLING_TYPE_LAST

        if task.kind != "classification":
            raise ValueError(f"a classifier head answers classification tasks, not {task.kind!r}")
        if sorted(head.labels) != sorted(task.labels):
            raise ValueError("the head's labels differ from the task's: the head belongs to another task; re-train")
        self.name, self.task, self.head, self.path = name, task, head, Path(gguf_path)
        self.lora_path = Path(lora_path) if lora_path else None
        self.head_bytes = head_bytes or head.weight.nbytes
        extra = {"lora_path": str(self.lora_path)} if self.lora_path else {}
        self.llm = load_llama(gguf_path, n_ctx=n_ctx, n_threads=n_threads, n_gpu_layers=n_gpu_layers, embedding=True,
                              pooling_type=LLAMA_POOLING_TYPE_LAST, **extra)
        n_embd = self.llm.n_embd()
        if n_embd != head.hidden_size:
            raise ValueError(f"{self.path.name} has hidden size {n_embd}, the head {head.hidden_size}: "
                             f"the head belongs to another model; re-pack the run's own artifacts")
        self._lock = threading.Lock()

    @classmethod
    def from_bundle(cls, bundle: Any, name: str = "gguf", n_threads: int | None = None,
                    n_gpu_layers: int | None = None, **kwargs: Any):
        from edge_runtime.profiles import gpu_layers_for

        head = ClassifierHead.from_bytes(bundle.read_bytes(bundle.manifest["head"]), bundle.manifest["head"])
        return cls(bundle.model_path, bundle.task, head, name=name, n_ctx=int(bundle.generation.get("n_ctx", N_CTX)),
                   n_threads=n_threads, lora_path=bundle.adapter_path,
                   n_gpu_layers=gpu_layers_for(bundle.manifest.get("profile"), n_gpu_layers),
                   head_bytes=int(bundle.manifest["files"][bundle.manifest["head"]]["bytes"]))

    def close(self) -> None:
        llm, self.llm = self.llm, None
        if llm is not None:
            llm.close()

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size + self.head_bytes + (self.lora_path.stat().st_size if self.lora_path else 0)

    def hidden(self, text: str) -> tuple[np.ndarray, int]:
        """The last token's final hidden state of `text` and its token count (`last_hidden`)."""
        return last_hidden(self.llm, text, self.head.hidden_size)

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
