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


class TokenProbs:
    """Collects the probability of each generated token, cheaply.

    A llama-cpp-python logits processor sees the full logit row before sampling; the
    token chosen from row i shows up as the last input id at step i+1. Only one row is
    kept, so memory stays O(vocab) instead of the O(ctx x vocab) of `logits_all`.
    Probabilities are over the whole vocabulary (before the grammar mask), so they are a
    lower bound on the grammar-constrained ones.
    """

    def __init__(self):
        self.start = 0
        self.tokens: list[int] = []
        self.probs: list[float] = []
        self._row = None
        self._lse = 0.0

    def _settle(self, token: int) -> None:
        import numpy as np

        if self._row is not None:
            self.tokens.append(int(token))
            self.probs.append(float(np.exp(self._row[token] - self._lse)))

    def __call__(self, input_ids, scores):
        import numpy as np

        if self._row is not None:
            self._settle(int(input_ids[-1]))
        row = np.asarray(scores, dtype=np.float32)
        peak = float(row.max())
        self._lse = peak + float(np.log(np.exp(row - peak).sum()))
        self._row = row.copy()
        return scores

    def finish(self, last_token: int | None) -> None:
        if last_token is not None:
            self._settle(last_token)
        self._row = None


class PrefixState:
    """The KV state after a task's fixed prompt prefix, saved once and restored on demand.

    llama-cpp-python already reuses the longest common token prefix of consecutive calls;
    this keeps that true when other prompts (chat, completions) ran in between, by
    restoring only sequence 0's KV cells (a few MB) rather than `save_state()`, which
    also copies an n_batch x n_vocab score matrix (512 MB for Gemma's vocabulary).
    """

    def __init__(self, llm: Any, prefix: str):
        self.llm = llm
        self.tokens = llm.tokenize(prefix.encode("utf-8"), add_bos=True, special=False)
        self.blob: bytes | None = None
        self.restores = 0

    def _cached(self) -> bool:
        n = len(self.tokens)
        return self.llm.n_tokens >= n and list(self.llm.input_ids[:n]) == self.tokens

    def ensure(self) -> None:
        """Make the context start with the prefix's KV state; evaluates it at most once."""
        import ctypes

        import llama_cpp

        llm, n = self.llm, len(self.tokens)
        if n == 0 or self._cached():
            return
        if self.blob is None:
            llm.reset()
            llm.eval(self.tokens)
            size = llama_cpp.llama_state_seq_get_size(llm.ctx, 0)
            buf = (ctypes.c_uint8 * size)()
            got = llama_cpp.llama_state_seq_get_data(llm.ctx, buf, size, 0)
            self.blob = bytes(buf[:got])
            return
        llm.reset()
        llm._ctx.kv_cache_seq_rm(-1, 0, -1)
        buf = (ctypes.c_uint8 * len(self.blob)).from_buffer_copy(self.blob)
        if llama_cpp.llama_state_seq_set_data(llm.ctx, buf, len(self.blob), 0) == 0:
            self.blob = None  # could not restore: evaluate it again next time
            llm.reset()
            return self.ensure()
        llm.input_ids[:n] = self.tokens
        llm.n_tokens = n
        self.restores += 1


class LlamaCppPredictor:
    """Answers a task with a GGUF. Thread-safe: one request at a time per model.

    `prefix_reuse` keeps the task's fixed prompt prefix evaluated once (PrefixState);
    `confidence` records token probabilities so the answer carries a confidence
    (see edge_runtime.router.answer_confidence).
    """

    def __init__(self, gguf_path: str | Path, task: TaskSpec, name: str = "gguf", n_ctx: int = 2048,
                 max_new_tokens: int = 160, n_threads: int | None = None, llm: Any = None,
                 prefix_reuse: bool = True, confidence: bool = True, grammar_text: str | None = None):
        from llama_cpp import LlamaGrammar

        self.name, self.task, self.path = name, task, Path(gguf_path)
        self.max_new_tokens = max_new_tokens
        self.llm = llm or load_llama(gguf_path, n_ctx=n_ctx, n_threads=n_threads)
        if grammar_text:
            self.grammar = LlamaGrammar.from_string(grammar_text, verbose=False)
        else:
            self.grammar = LlamaGrammar.from_json_schema(json.dumps(task.json_schema()), verbose=False)
        self.prefix_reuse, self.confidence = prefix_reuse, confidence
        self.prefix = PrefixState(self.llm, task_prefix(task)) if prefix_reuse else None
        self._lock = threading.Lock()

    def close(self) -> None:
        """Free the model now; llama.cpp's own finaliser can fail at interpreter exit."""
        llm, self.llm = self.llm, None
        if llm is not None:
            llm.close()

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size

    def complete(self, prompt: str, **kwargs) -> dict[str, Any]:
        """A raw llama-cpp-python completion under this model's lock (OpenAI endpoints)."""
        with self._lock:
            return self.llm(prompt, **kwargs)

    def stream(self, prompt: str, **kwargs):
        """Streamed raw completion chunks; holds the lock until the stream ends."""
        with self._lock:
            yield from self.llm(prompt, stream=True, **kwargs)

    def predict(self, example: dict[str, Any], context: str = "") -> Prediction:
        prompt = self.task.render_prompt(example, context=context)
        start = time.perf_counter()
        probs = TokenProbs() if self.confidence else None
        with self._lock:
            if self.prefix is not None:
                self.prefix.ensure()
            else:
                self.llm.reset()  # the fair baseline: nothing carried over between requests
            out = self.llm(prompt, max_tokens=self.max_new_tokens, temperature=0.0, grammar=self.grammar,
                           logits_processor=[probs] if probs is not None else None)
            if probs is not None:
                probs.finish(None)  # the token that ended generation is not part of the answer
        latency = time.perf_counter() - start
        text = out["choices"][0]["text"]
        usage = out.get("usage", {})
        answer, problems = self.task.parse(text)
        if answer is None and out["choices"][0].get("finish_reason") == "length":
            problems.append(f"output cut at max_new_tokens={self.max_new_tokens}")
        pred = Prediction(
            answer=answer,
            raw=text,
            problems=problems,
            latency_s=latency,
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
        )
        if probs is not None and answer is not None:
            from edge_runtime.router import answer_confidence

            ends = [len(self.llm.detokenize(probs.tokens[: i + 1])) for i in range(len(probs.tokens))]
            pred.confidence, pred.extra["field_confidence"] = answer_confidence(
                self.task, example, answer, text, ends, probs.probs)
        return pred


def task_prefix(task: TaskSpec) -> str:
    """The fixed part of every prompt of a task: everything before the input text."""
    marker = "\x00INPUT\x00"
    rendered = task.render_prompt({task.input_field: marker})
    return rendered.split(marker, 1)[0]
