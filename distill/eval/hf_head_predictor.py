"""A classifier student in transformers: the merged body's last-token hidden state through
the run's `head.npz`, exactly what the device computes with llama.cpp (so the two agree up to
quantization, and a test can hold them to it)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from distill.eval.hf_body import HFBody
from edge_runtime.heads import ClassifierHead, head_input
from edge_runtime.predictor import Prediction
from edge_runtime.task import TaskSpec


class HFHeadPredictor(HFBody):
    """Label distribution from one forward pass of the HF body plus the numpy head."""

    def __init__(self, model_dir: str | Path, head_path: str | Path, task: TaskSpec, name: str = "student"):
        super().__init__(model_dir, head_path, task, name)
        self.head = ClassifierHead.load(head_path)

    def predict(self, example: dict[str, Any]) -> Prediction:
        start = time.perf_counter()
        hidden, n_prompt = self.hidden(head_input(self.task, example))
        answer, p, alternatives = self.head.answer(self.head.probs(hidden))
        return Prediction(answer=answer, raw=answer["label"], latency_s=time.perf_counter() - start,
                          prompt_tokens=n_prompt, confidence=p,
                          extra={"alternatives": alternatives, "head": "classifier"})
