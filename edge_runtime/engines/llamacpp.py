"""A GGUF answering a task through llama.cpp, in process, with grammar-constrained JSON.

The grammar comes from the task's JSON schema, so every answer parses; it is still
validated against the task (labels, keys) before it is returned.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from edge_runtime.engines.copying import copy_grammar
from edge_runtime.engines.decoding import DecodeSettings, SchemaDecoder, grammar_from_schema
from edge_runtime.layout import MAX_NEW_TOKENS, N_CTX
from edge_runtime.predictor import Prediction
from edge_runtime.task import TaskSpec

DECODERS = ("schema", "llama-grammar")


def quiet_llama_logs() -> None:
    """llama-cpp-python 0.3.36 maps ggml's log levels with an old enum (ggml.h now has DEBUG=1,
    INFO=2, WARN=3, ERROR=4), so with verbose=False llama.cpp's warnings still reach the
    terminal as errors. Map them as ggml.h defines them: warnings stay out, errors get through."""
    import logging

    from llama_cpp import _logger

    _logger.GGML_LOG_LEVEL_TO_LOGGING_LEVEL.update(
        {1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR})


class GpuOffloadUnavailable(RuntimeWarning):
    """GPU layers were asked for, but this llama-cpp-python build runs on the CPU only."""


def check_gpu_offload(n_gpu_layers: int) -> str | None:
    """The warning to give when `n_gpu_layers` asks for the GPU and this llama.cpp cannot offload."""
    if n_gpu_layers == 0:
        return None
    import llama_cpp

    if llama_cpp.llama_supports_gpu_offload():
        return None
    return (f"{n_gpu_layers if n_gpu_layers > 0 else 'all'} GPU layers were asked for (a GPU profile or --gpu-layers), "
            "but this llama-cpp-python build is CPU-only: the model runs on the CPU, far slower. Reinstall it with "
            "CUDA (CMAKE_ARGS=\"-DGGML_CUDA=on\" pip install --force-reinstall --no-cache-dir llama-cpp-python), "
            "or pass --gpu-layers 0 to silence this.")


def load_llama(path: str | Path, n_ctx: int = N_CTX, n_threads: int | None = None, seed: int = 0,
               n_gpu_layers: int = 0, **kwargs):
    """Load a GGUF quietly; a missing or corrupt file raises with the path named. `n_gpu_layers`
    (-1 all) is offloaded to the GPU; a CPU-only build warns (GpuOffloadUnavailable) and runs on the CPU."""
    import warnings

    from llama_cpp import Llama

    quiet_llama_logs()
    if (warning := check_gpu_offload(n_gpu_layers)) is not None:
        warnings.warn(warning, GpuOffloadUnavailable, stacklevel=2)

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
            n_gpu_layers=n_gpu_layers,
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


class GenerationTimeout(RuntimeError):
    """Generation ran past its deadline and was stopped; the model is free again."""

    def __init__(self, limit_s: float, elapsed_s: float, tokens: int):
        self.limit_s, self.elapsed_s, self.tokens = limit_s, elapsed_s, tokens
        super().__init__(f"generation stopped after {elapsed_s:.2f}s and {tokens} generated tokens: "
                         f"it ran past the generation timeout of {limit_s:g}s")


class Deadline:
    """Ends a llama.cpp generation once `timeout_s` has passed since it was made.

    Used as a stopping criterion (completions) or, where llama-cpp-python takes none
    (chat completions), through `force_end`, a logits processor that leaves only
    end-of-text. Checked once per generated token, so prompt evaluation itself is not
    interrupted. `check()` raises GenerationTimeout when the deadline ended generation.
    """

    def __init__(self, timeout_s: float, eos: int | None = None):
        self.limit_s, self.eos = float(timeout_s), eos
        self.start = time.monotonic()
        self.hit = False
        self.tokens = 0

    def _passed(self) -> bool:
        if not self.hit:  # called once per sampled token until the deadline passes
            self.tokens += 1
            self.hit = time.monotonic() - self.start >= self.limit_s
        return self.hit

    def __call__(self, input_ids, logits) -> bool:
        return self._passed()

    def force_end(self, input_ids, scores):
        if self._passed() and self.eos is not None:
            import numpy as np

            scores[:] = -np.inf
            scores[self.eos] = 0.0
        return scores

    def check(self) -> None:
        if self.hit:
            raise GenerationTimeout(self.limit_s, time.monotonic() - self.start, max(0, self.tokens - 1))


def _stopping(deadline: Deadline | None):
    from llama_cpp import StoppingCriteriaList

    return StoppingCriteriaList([deadline]) if deadline is not None else None


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


class LlamaCppModel:
    """What every llama.cpp predictor (generative, classifier head, retriever) shares: freeing its
    model (`llm`) and the bytes it ships: the GGUF at `path`, a head file of `head_bytes` beside it
    and a GGUF LoRA adapter at `lora_path`, where it has them."""

    lora_path: Path | None = None
    head_bytes: int = 0

    def close(self) -> None:
        """Free the model now; llama.cpp's own finaliser can fail at interpreter exit."""
        llm, self.llm = self.llm, None
        if llm is not None:
            llm.close()

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size + self.head_bytes + (self.lora_path.stat().st_size if self.lora_path else 0)


class LlamaCppPredictor(LlamaCppModel):
    """Answers a task with a GGUF. Thread-safe: one request at a time per model.

    `decoder`: "schema" (default) decodes with `engines.decoding.SchemaDecoder`: llguidance's
    token masks, forced tokens in one pass, prompt-lookup speculation per `decoding`;
    "llama-grammar" is llama.cpp's own GBNF sampler (from `grammar_text` or the schema), kept
    as the reference that benchmarks and quality comparisons measure the new path against.
    `prefix_reuse` keeps the task's fixed prompt prefix evaluated once (PrefixState);
    `confidence` records token probabilities so the answer carries a confidence
    (see edge_runtime.router.answer_confidence).
    """

    def __init__(self, gguf_path: str | Path, task: TaskSpec, name: str = "gguf", n_ctx: int = N_CTX,
                 max_new_tokens: int = MAX_NEW_TOKENS, n_threads: int | None = None, llm: Any = None,
                 prefix_reuse: bool = True, confidence: bool = True, grammar_text: str | None = None,
                 lora_path: str | Path | None = None, decoder: str = "schema",
                 decoding: DecodeSettings | dict[str, Any] | None = None, n_gpu_layers: int = 0):
        self.name, self.task, self.path = name, task, Path(gguf_path)
        self.max_new_tokens = max_new_tokens
        self.lora_path = Path(lora_path) if lora_path else None  # a GGUF LoRA adapter applied at run time
        if self.lora_path is not None and not self.lora_path.is_file():
            raise FileNotFoundError(f"LoRA adapter GGUF not found: {self.lora_path}")
        if decoder not in DECODERS:
            raise ValueError(f"unknown decoder {decoder!r}; choose one of {DECODERS}")
        extra = {"lora_path": str(self.lora_path)} if self.lora_path else {}
        self.llm = llm or load_llama(gguf_path, n_ctx=n_ctx, n_threads=n_threads, n_gpu_layers=n_gpu_layers, **extra)
        self.grammar = None
        self.decoder: SchemaDecoder | None = None
        if decoder == "schema":
            if not isinstance(decoding, DecodeSettings):
                decoding = DecodeSettings.for_task(task.kind, decoding)
            self.decoder = SchemaDecoder(self.llm, grammar_from_schema(task.json_schema()), decoding)
        else:
            from llama_cpp import LlamaGrammar

            self.grammar = (LlamaGrammar.from_string(grammar_text, verbose=False) if grammar_text
                            else LlamaGrammar.from_json_schema(json.dumps(task.json_schema()), verbose=False))
        self.prefix_reuse, self.confidence = prefix_reuse, confidence
        self.prefix = PrefixState(self.llm, task_prefix(task)) if prefix_reuse else None
        self._json_decoders: dict[str, SchemaDecoder] = {}  # response_format schemas, compiled
        self._lock = threading.Lock()

    @classmethod
    def from_bundle(cls, bundle: Any, name: str = "gguf", n_threads: int | None = None, prefix_reuse: bool = True,
                    decoding: dict[str, Any] | None = None, n_gpu_layers: int | None = None,
                    **kwargs: Any) -> "LlamaCppPredictor":
        """A verified bundle's model with its own generation settings: what `serve`, `predict` and
        `distill eval bundle:` run. `decoding` overrides the bundle's decoding settings (serve flags);
        `n_gpu_layers` the bundle's profile's GPU offload (--gpu-layers)."""
        from edge_runtime.profiles import gpu_layers_for

        gen = bundle.generation
        kwargs["n_gpu_layers"] = gpu_layers_for(bundle.manifest.get("profile"), n_gpu_layers)
        return cls(bundle.model_path, bundle.task, name=name, n_ctx=int(gen.get("n_ctx", N_CTX)),
                   max_new_tokens=int(gen.get("max_new_tokens", MAX_NEW_TOKENS)), n_threads=n_threads,
                   grammar_text=bundle.grammar, prefix_reuse=prefix_reuse, lora_path=bundle.adapter_path,
                   decoding={**(gen.get("decoding") or {}), **(decoding or {})}, **kwargs)

    # `timeout_s` (None: no limit) stops generation and raises GenerationTimeout; the
    # clock starts once this model's lock is held, so it measures generation, not waiting.
    def complete(self, prompt: str, timeout_s: float | None = None, **kwargs) -> dict[str, Any]:
        """A raw llama-cpp-python completion under this model's lock (OpenAI endpoints)."""
        with self._lock:
            deadline = Deadline(timeout_s) if timeout_s else None
            out = self.llm(prompt, stopping_criteria=_stopping(deadline), **kwargs)
            if deadline is not None:
                deadline.check()
            return out

    def complete_json(self, prompt: str, schema: dict[str, Any], max_tokens: int, timeout_s: float | None = None,
                      special: bool = False, **_sampling: Any) -> dict[str, Any]:
        """An OpenAI-shaped completion whose text matches `schema` (a request's response_format),
        decoded greedily by the schema decoder; sampling settings do not apply. An invalid schema
        raises ValueError naming it."""
        key = json.dumps(schema, sort_keys=True)
        with self._lock:
            decoder = self._json_decoders.pop(key, None)
            if decoder is None:
                decoder = SchemaDecoder(self.llm, grammar_from_schema(schema), DecodeSettings(speculate=False))
            self._json_decoders[key] = decoder  # most recent last; a few schemas are kept compiled
            while len(self._json_decoders) > 8:
                self._json_decoders.pop(next(iter(self._json_decoders)))
            deadline = Deadline(timeout_s) if timeout_s else None
            tokens = self.llm.tokenize(prompt.encode("utf-8"), add_bos=not special, special=special)
            res = decoder.generate(tokens, max_tokens, confidence=False, deadline=deadline)
            if deadline is not None:
                deadline.check()
        return {"id": f"cmpl-{uuid.uuid4().hex[:24]}", "object": "text_completion", "created": int(time.time()),
                "choices": [{"text": res.text, "index": 0, "logprobs": None, "finish_reason": res.finish_reason}],
                "usage": {"prompt_tokens": len(tokens), "completion_tokens": len(res.tokens),
                          "total_tokens": len(tokens) + len(res.tokens)}}

    def stream(self, prompt: str, timeout_s: float | None = None, **kwargs):
        """Streamed raw completion chunks; holds the lock until the stream ends."""
        with self._lock:
            deadline = Deadline(timeout_s) if timeout_s else None
            yield from self.llm(prompt, stream=True, stopping_criteria=_stopping(deadline), **kwargs)
            if deadline is not None:
                deadline.check()

    def chat(self, messages: list[dict[str, str]], timeout_s: float | None = None, stream: bool = False, **kwargs):
        """llama-cpp-python's chat completion with the model's own chat template (which
        takes no stopping criteria, so the deadline forces end-of-text instead)."""
        if stream:
            return self._chat_stream(messages, timeout_s, **kwargs)
        with self._lock:
            deadline = Deadline(timeout_s, eos=self.llm.token_eos()) if timeout_s else None
            out = self.llm.create_chat_completion(
                messages=messages, logits_processor=[deadline.force_end] if deadline else None, **kwargs)
            if deadline is not None:
                deadline.check()
            return out

    def _chat_stream(self, messages, timeout_s, **kwargs):
        with self._lock:
            deadline = Deadline(timeout_s, eos=self.llm.token_eos()) if timeout_s else None
            yield from self.llm.create_chat_completion(
                messages=messages, stream=True, logits_processor=[deadline.force_end] if deadline else None, **kwargs)
            if deadline is not None:
                deadline.check()

    def predict(self, example: dict[str, Any], context: str = "", timeout_s: float | None = None) -> Prediction:
        prompt = self.task.render_prompt(example, context=context)
        start = time.perf_counter()
        with self._lock:
            deadline = Deadline(timeout_s) if timeout_s else None
            if self.prefix is not None:
                self.prefix.ensure()
            else:
                self.llm.reset()  # the fair baseline: nothing carried over between requests
            if self.decoder is not None:
                tokens = self.llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)
                grammar = copy_grammar(self.task, self.task.input_text(example)) if self.task.copied_fields() else None
                res = self.decoder.generate(tokens, self.max_new_tokens, confidence=self.confidence, deadline=deadline,
                                            grammar=grammar)
                text, finish, n_prompt, n_out = res.text, res.finish_reason, len(tokens), len(res.tokens)
                token_probs, ends = res.probs, res.piece_ends
            else:
                text, finish, n_prompt, n_out, token_probs, ends = self._predict_llama_grammar(prompt, deadline)
            if deadline is not None:
                deadline.check()
        latency = time.perf_counter() - start
        answer, problems = self.task.parse(text)
        if answer is None and finish == "length":
            problems.append(f"output cut at max_new_tokens={self.max_new_tokens}")
        pred = Prediction(answer=answer, raw=text, problems=problems, latency_s=latency,
                          prompt_tokens=n_prompt, completion_tokens=n_out)
        if self.decoder is not None:
            pred.extra["decode"] = res.stats.to_dict()
        if self.confidence and answer is not None:
            from edge_runtime.router import answer_confidence

            parts: dict[str, Any] = {}
            pred.confidence, pred.extra["field_confidence"] = answer_confidence(
                self.task, example, answer, text, ends, token_probs, parts=parts)
            pred.extra["confidence_parts"] = parts
        return pred

    def _predict_llama_grammar(self, prompt: str, deadline: Deadline | None):
        """llama.cpp's GBNF sampler with a Python softmax per token: the old path, for comparison."""
        probs = TokenProbs() if self.confidence else None
        out = self.llm(prompt, max_tokens=self.max_new_tokens, temperature=0.0, grammar=self.grammar,
                       logits_processor=[probs] if probs is not None else None, stopping_criteria=_stopping(deadline))
        if probs is not None:
            probs.finish(None)  # the token that ended generation is not part of the answer
        usage = out.get("usage", {})
        choice = out["choices"][0]
        tokens = probs.tokens if probs is not None else []
        ends = [len(self.llm.detokenize(tokens[: i + 1])) for i in range(len(tokens))]
        return (choice["text"], choice.get("finish_reason"), usage.get("prompt_tokens", 0),
                usage.get("completion_tokens", 0), probs.probs if probs is not None else [], ends)


def task_prefix(task: TaskSpec) -> str:
    """The fixed part of every prompt of a task: everything before the input text."""
    marker = "\x00INPUT\x00"
    rendered = task.render_prompt({task.input_field: marker})
    return rendered.split(marker, 1)[0]
