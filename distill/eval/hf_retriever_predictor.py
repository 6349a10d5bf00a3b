"""A retriever student in transformers: the merged body embeds the query (last token) and the
run's `retriever.npz` (entries as the fp32 body embedded them at train time) fuses and decides,
exactly as the device does with llama.cpp (so the two agree up to quantization)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from distill.eval.hf_body import HFBody
from edge_runtime.predictor import Prediction
from edge_runtime.retriever import RetrieverHead, bm25_scores
from edge_runtime.task import TaskSpec


class HFRetrieverPredictor(HFBody):
    """FAQ answers from one forward pass of the HF body plus BM25 and the numpy retriever head."""

    def __init__(self, model_dir: str | Path, head_path: str | Path, task: TaskSpec, name: str = "student"):
        super().__init__(model_dir, head_path, task, name)
        self.head, self.kb = RetrieverHead.load(head_path), task.knowledge()

    embed = HFBody.hidden  # the query or entry embedding: the body's last-token hidden state

    def predict(self, example: dict[str, Any]) -> Prediction:
        start = time.perf_counter()
        query = self.task.input_text(example)
        hidden, n_prompt = self.embed(self.head.query_text(query))
        answer, p, alternatives, details = self.head.answer(hidden, bm25_scores(self.kb, query, self.head.ids))
        return Prediction(answer=answer, raw=answer["faq_id"], latency_s=time.perf_counter() - start,
                          prompt_tokens=n_prompt, confidence=p,
                          extra={"alternatives": alternatives, "head": "retriever", "retrieval": details})
