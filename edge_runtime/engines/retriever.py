"""A retriever student on the device: llama.cpp embeds the query (last-token pooling, one
pass over the input) and `RetrieverHead` fuses its cosine ranking with BM25's over the
knowledge base and decides between the best entry and "none", with numpy.

Same predictor contract as `LlamaCppPredictor`; the OpenAI text endpoints are refused with a
message (`HeadOnly`), since this student answers with an FAQ id, not text.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.engines.head import HeadOnly, head_settings
from edge_runtime.engines.hidden_state import HiddenStateReader, load_body
from edge_runtime.engines.llamacpp import LlamaCppModel
from edge_runtime.layout import N_CTX
from edge_runtime.predictor import Prediction
from edge_runtime.retriever import RetrieverHead, bm25_scores
from edge_runtime.task import TaskSpec


class LlamaCppRetrieverPredictor(LlamaCppModel):
    """Answers a faq task with a GGUF body (final hidden state), BM25 and a numpy retriever head."""

    def __init__(self, gguf_path: str | Path, task: TaskSpec, head: RetrieverHead, name: str = "gguf",
                 n_ctx: int = N_CTX, n_threads: int | None = None, head_bytes: int = 0, n_gpu_layers: int = 0,
                 embed_entries: bool = False, **_ignored: Any):
        if task.kind != "faq" or not task.knowledge_base:
            raise ValueError(f"a retriever head answers faq tasks with a knowledge base, not {task.kind!r}")
        self.name, self.task, self.path = name, task, Path(gguf_path)
        self.kb = task.knowledge()
        self.llm = load_body(gguf_path, n_ctx=n_ctx, n_threads=n_threads, n_gpu_layers=n_gpu_layers)
        self.reader = HiddenStateReader(self.llm)
        self._lock = threading.Lock()
        if embed_entries:  # training's fp32 entry embeddings replaced by this model's own
            head = entry_embeddings(self, head)
        if self.llm.n_embd() != head.hidden_size:
            raise ValueError(f"{self.path.name} has hidden size {self.llm.n_embd()}, the retriever {head.hidden_size}: "
                             f"the retriever belongs to another model; re-pack the run's own artifacts")
        self.head = head
        bm25_scores(self.kb, "", head.ids)  # every entry of the head is in the knowledge base
        self.head_bytes = head_bytes or head.entries.nbytes

    @classmethod
    def from_bundle(cls, bundle: Any, name: str = "gguf", n_threads: int | None = None,
                    n_gpu_layers: int | None = None, **kwargs: Any):
        return cls(bundle.model_path, bundle.task, name=name, n_threads=n_threads,
                   **head_settings(bundle, RetrieverHead.from_bytes, n_gpu_layers))

    def embed(self, text: str) -> tuple[np.ndarray, int]:
        with self._lock:  # one forward pass: like prompt evaluation, not interrupted by a timeout
            return self.reader.hidden(text)

    def predict(self, example: dict[str, Any], context: str = "", timeout_s: float | None = None) -> Prediction:
        query = self.task.input_text(example)
        start = time.perf_counter()
        hidden, n_prompt = self.embed(self.head.query_text(query))
        answer, p, alternatives, details = self.head.answer(hidden, bm25_scores(self.kb, query, self.head.ids))
        return Prediction(answer=answer, raw=answer["faq_id"], latency_s=time.perf_counter() - start,
                          prompt_tokens=n_prompt, completion_tokens=0, confidence=p,
                          extra={"alternatives": alternatives, "head": "retriever", "retrieval": details,
                                 "confidence_parts": {"entry_probability": details["best_probability"]}})

    # ---- the OpenAI text endpoints: not for a retriever
    def _refuse(self, *args: Any, **kwargs: Any):
        raise HeadOnly(f"this bundle serves a retriever head for task {self.task.name!r}: it answers FAQ ids at "
                       f"POST /v1/tasks/{self.task.name}, not free text; use that endpoint")

    complete = complete_json = stream = chat = _refuse


def entry_embeddings(predictor: LlamaCppRetrieverPredictor, head: RetrieverHead) -> RetrieverHead:
    """`head` over the knowledge base's entries as this GGUF embeds them (what packing ships)."""
    kb = predictor.kb
    vectors = [predictor.embed(head.entry_text(kb.get(faq_id)))[0] for faq_id in kb.ids]
    return head.with_entries(kb.ids, np.stack(vectors))
