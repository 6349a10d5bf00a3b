"""A classifier student in transformers: the merged body's last-token hidden state through
the run's `head.npz`, exactly what the device computes with llama.cpp (so the two agree up to
quantization, and a test can hold them to it)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from distill.eval.hf_predictor import weights_size
from edge_runtime.heads import ClassifierHead, head_input
from edge_runtime.predictor import Prediction
from edge_runtime.task import TaskSpec


class HFHeadPredictor:
    """Label distribution from one forward pass of the HF body plus the numpy head."""

    def __init__(self, model_dir: str | Path, head_path: str | Path, task: TaskSpec, name: str = "student"):
        import torch
        from transformers import AutoModel, AutoTokenizer

        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise FileNotFoundError(f"{model_dir} is not a Hugging Face model directory (no config.json); run the train stage")
        self.name, self.task, self.path = name, task, model_dir
        self.head = ClassifierHead.load(head_path)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.model = AutoModel.from_pretrained(str(model_dir), dtype=torch.float32).to(self.device).eval()
        self.size_bytes = (weights_size(model_dir) or 0) + Path(head_path).stat().st_size

    def hidden(self, text: str):
        import torch

        ids = self.tokenizer(text, return_tensors="pt").to(self.device)
        with torch.no_grad():
            out = self.model(**ids).last_hidden_state[0, -1].float().cpu().numpy()
        return out, int(ids["input_ids"].shape[1])

    def predict(self, example: dict[str, Any]) -> Prediction:
        start = time.perf_counter()
        hidden, n_prompt = self.hidden(head_input(self.task, example))
        answer, p, alternatives = self.head.answer(self.head.probs(hidden))
        return Prediction(answer=answer, raw=answer["label"], latency_s=time.perf_counter() - start,
                          prompt_tokens=n_prompt, confidence=p,
                          extra={"alternatives": alternatives, "head": "classifier"})
