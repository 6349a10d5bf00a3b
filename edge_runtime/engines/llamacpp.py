"""A GGUF answering a task through llama.cpp, in process, with grammar-constrained JSON.

The grammar comes from the task's JSON schema, so every answer parses; it is still
validated against the task (labels, keys) before it is returned.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from edge_runtime.predictor import Prediction
from edge_runtime.task import TaskSpec


def load_llama(path: str | Path, n_ctx: int = 2048, n_threads: int | None = None, seed: int = 0, **kwargs):
    """Load a GGUF quietly; a missing or corrupt file raises with the path named."""
    from llama_cpp import Llama

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GGUF not found: {path}")
    with open(path, "rb") as fh:
        if fh.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file (bad magic); re-export it with `quantize gguf`")
    try:
        return Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=n_threads or max(1, os.cpu_count() or 1),
            seed=seed,
            verbose=False,
            **kwargs,
        )
    except Exception as exc:  # llama.cpp says little; name the file and the fix
        raise ValueError(f"llama.cpp could not load {path}: {exc}. The file may be truncated or from a newer llama.cpp.") from exc


class LlamaCppPredictor:
    """Answers a task with a GGUF. Thread-safe: one request at a time per model."""

    def __init__(self, gguf_path: str | Path, task: TaskSpec, name: str = "gguf", n_ctx: int = 2048,
                 max_new_tokens: int = 160, n_threads: int | None = None, llm: Any = None):
        from llama_cpp import LlamaGrammar

        self.name, self.task, self.path = name, task, Path(gguf_path)
        self.max_new_tokens = max_new_tokens
        self.llm = llm or load_llama(gguf_path, n_ctx=n_ctx, n_threads=n_threads)
        self.grammar = LlamaGrammar.from_json_schema(json.dumps(task.json_schema()), verbose=False)
        self._lock = threading.Lock()

    def close(self) -> None:
        """Free the model now; llama.cpp's own finaliser can fail at interpreter exit."""
        llm, self.llm = self.llm, None
        if llm is not None:
            llm.close()

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size

    def predict(self, example: dict[str, Any], context: str = "") -> Prediction:
        prompt = self.task.render_prompt(example, context=context)
        start = time.perf_counter()
        with self._lock:
            out = self.llm(prompt, max_tokens=self.max_new_tokens, temperature=0.0, grammar=self.grammar)
        latency = time.perf_counter() - start
        text = out["choices"][0]["text"]
        usage = out.get("usage", {})
        answer, problems = self.task.parse(text)
        if answer is None and out["choices"][0].get("finish_reason") == "length":
            problems.append(f"output cut at max_new_tokens={self.max_new_tokens}")
        return Prediction(
            answer=answer,
            raw=text,
            problems=problems,
            latency_s=latency,
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
        )
