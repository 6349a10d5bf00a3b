"""A head student's body in transformers: the merged model and its tokenizer, read once, and
the last-token final hidden state of a text (what the device taps out of llama.cpp's pass).

The classifier and retriever predictors (`hf_head_predictor.py`, `hf_retriever_predictor.py`)
are this body plus their own numpy head; nothing else differs between them.
"""

from __future__ import annotations

from pathlib import Path

from distill.eval.hf_predictor import weights_size
from edge_runtime.task import TaskSpec


class HFBody:
    """The fp32 merged body of a run (`<run>/train/merged`) and the head file beside it."""

    def __init__(self, model_dir: str | Path, head_path: str | Path, task: TaskSpec, name: str = "student"):
        import torch
        from transformers import AutoModel, AutoTokenizer

        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise FileNotFoundError(f"{model_dir} is not a Hugging Face model directory (no config.json); run the train stage")
        self.name, self.task, self.path = name, task, model_dir
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.model = AutoModel.from_pretrained(str(model_dir), dtype=torch.float32).to(self.device).eval()
        self.size_bytes = (weights_size(model_dir) or 0) + Path(head_path).stat().st_size

    def hidden(self, text: str):
        """The last token's final hidden state of `text` (numpy) and its token count."""
        import torch

        ids = self.tokenizer(text, return_tensors="pt").to(self.device)
        with torch.no_grad():
            out = self.model(**ids).last_hidden_state[0, -1].float().cpu().numpy()
        return out, int(ids["input_ids"].shape[1])
