"""A retriever student in transformers: the merged body embeds the query (last token) and the
run's `retriever.npz` (entries as the fp32 body embedded them at train time) fuses and decides,
exactly as the device does with llama.cpp (so the two agree up to quantization)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from distill.eval.hf_predictor import weights_size
from edge_runtime.predictor import Prediction
from edge_runtime.retriever import RetrieverHead, bm25_scores
from edge_runtime.task import TaskSpec


class HFRetrieverPredictor:
    """FAQ answers from one forward pass of the HF body plus BM25 and the numpy retriever head."""

    def __init__(self, model_dir: str | Path, head_path: str | Path, task: TaskSpec, name: str = "student"):
        import torch
        from transformers import AutoModel, AutoTokenizer

        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise FileNotFoundError(f"{model_dir} is not a Hugging Face model directory (no config.json); run the train stage")
        self.name, self.task, self.path = name, task, model_dir
        self.head, self.kb = RetrieverHead.load(head_path), task.knowledge()
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.model = AutoModel.from_pretrained(str(model_dir), dtype=torch.float32).to(self.device).eval()
        self.size_bytes = (weights_size(model_dir) or 0) + Path(head_path).stat().st_size

    def embed(self, text: str):
        import torch

        ids = self.tokenizer(text, return_tensors="pt").to(self.device)
        with torch.no_grad():
            out = self.model(**ids).last_hidden_state[0, -1].float().cpu().numpy()
        return out, int(ids["input_ids"].shape[1])

    def predict(self, example: dict[str, Any]) -> Prediction:
        start = time.perf_counter()
        query = self.task.input_text(example)
        hidden, n_prompt = self.embed(self.head.query_text(query))
        answer, p, alternatives, details = self.head.answer(hidden, bm25_scores(self.kb, query, self.head.ids))
        return Prediction(answer=answer, raw=answer["faq_id"], latency_s=time.perf_counter() - start,
                          prompt_tokens=n_prompt, confidence=p,
                          extra={"alternatives": alternatives, "head": "retriever", "retrieval": details})
