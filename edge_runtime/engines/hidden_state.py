"""Read a model's final hidden state out of one ordinary llama.cpp forward pass.

A classifier head needs the last token's final (normed) hidden state, not the vocabulary
logits. llama.cpp's embedding mode gives it, but makes every token of the pass an output, so
the 262k-row output layer of Gemma 3 runs once per input token. Instead, the context is created
with llama.cpp's graph-evaluation callback (`cb_eval`, the hook `llama-eval-callback` uses):
the pass runs as prompt evaluation with only the last token as an output, the callback copies
the tensor llama.cpp names `result_norm` (every architecture's final norm, `[n_embd, n_outputs]`)
and stops the graph there, so the output layer does not run at all.

`FinalNormTap.install` returns None where this cannot work (the ggml symbols are missing);
`HiddenStateReader` then uses the slower embedding-mode pass, whose numbers differ by float
rounding only. Both the classifier head and the FAQ retriever's query embedder read through it.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

TAPPED_TENSOR = b"result_norm"  # llama.cpp's name for the final norm's output, in every model graph


def _ggml_functions():
    """The three ggml calls the tap needs, typed; None if this llama-cpp-python does not expose them."""
    try:
        from llama_cpp import _ggml

        lib = _ggml.libggml
        get_name, nbytes, tensor_get = lib.ggml_get_name, lib.ggml_nbytes, lib.ggml_backend_tensor_get
    except (ImportError, AttributeError, OSError):
        return None
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.c_void_p]
    nbytes.restype, nbytes.argtypes = ctypes.c_size_t, [ctypes.c_void_p]
    tensor_get.restype = None
    tensor_get.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
    return get_name, nbytes, tensor_get


class FinalNormTap:
    """Owns the callback of one llama.cpp context; `hidden(tokens)` runs one pass and returns
    the last token's final hidden state. Not thread-safe: the caller holds its model lock."""

    def __init__(self, llm: Any, functions) -> None:
        import llama_cpp
        from llama_cpp import _internals

        self._get_name, self._nbytes, self._tensor_get = functions
        self.llm, self.n_embd = llm, llm.n_embd()
        self._captured: np.ndarray | None = None
        self.nodes_after_capture = 0  # graph nodes llama.cpp asked about after the tap stopped it: 0
        self._active = False  # taps only inside `hidden`: other passes on this context run whole
        # the CFUNCTYPE object must outlive the context: llama.cpp keeps only its address
        self._callback = llama_cpp.ggml_backend_sched_eval_callback(self._on_tensor)
        params = llm.context_params
        params.cb_eval, params.cb_eval_user_data = self._callback, None
        old, llm._ctx = llm._ctx, _internals.LlamaContext(model=llm._model, params=params, verbose=False)
        old.close()

    @classmethod
    def install(cls, llm: Any) -> "FinalNormTap | None":
        functions = _ggml_functions()
        return cls(llm, functions) if functions is not None else None

    def _on_tensor(self, tensor, ask: bool, _user_data) -> bool:
        if not self._active:
            return not ask  # want nothing, and never stop another pass's graph
        if ask:  # "do you want this node?" for every node of the graph
            self.nodes_after_capture += self._captured is not None
            return self._get_name(tensor) == TAPPED_TENSOR
        size = self._nbytes(tensor)
        buf = np.empty(size // 4, dtype=np.float32)
        self._tensor_get(tensor, buf.ctypes.data, 0, size)
        self._captured = buf
        return False  # stop this graph split here: the vocabulary logits are not needed

    def hidden(self, tokens: list[int]) -> np.ndarray | None:
        """The final hidden state of the last of `tokens` (the cache is cleared first), or None
        when the model's graph has no `result_norm` node (the caller falls back)."""
        ctx, batch, step = self.llm._ctx, self.llm._batch, self.llm.n_batch
        ctx.kv_cache_clear()
        self._captured, self._active = None, True
        try:
            for start in range(0, len(tokens), step):
                chunk = tokens[start:start + step]
                batch.set_batch(chunk, n_past=start, logits_all=False)  # only the chunk's last token is an output
                ctx.decode(batch)
        finally:
            self._active = False
            batch.reset()
        captured, self._captured = self._captured, None
        if captured is None or captured.size < self.n_embd:
            return None
        return captured[-self.n_embd:].copy()


def load_body(gguf_path, **kwargs: Any):
    """A GGUF loaded for `HiddenStateReader`: an ordinary context (embeddings off, so a pass is
    prompt evaluation) with last-token pooling for the embedding-mode fallback."""
    from llama_cpp import LLAMA_POOLING_TYPE_LAST

    from edge_runtime.engines.llamacpp import load_llama

    return load_llama(gguf_path, embedding=False, pooling_type=LLAMA_POOLING_TYPE_LAST, **kwargs)


class HiddenStateReader:
    """The last token's final hidden state of a text, from a model loaded by `load_body`: the
    tap where it works, else llama.cpp's embedding mode. Not thread-safe: callers hold a lock."""

    def __init__(self, llm: Any) -> None:
        self.llm, self.n_embd = llm, llm.n_embd()
        self.tap = FinalNormTap.install(llm)

    def hidden(self, text: str) -> tuple[np.ndarray, int]:
        """(state, token count) of `text`, in one pass that costs no more than prompt
        evaluation (the output layer does not run)."""
        tokens = self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
        if len(tokens) > self.llm.n_ctx():
            raise ValueError(f"input has {len(tokens)} tokens; the context holds {self.llm.n_ctx()}")
        state = self.tap.hidden(tokens) if self.tap is not None else None
        if state is None:
            state = self.hidden_by_embedding(tokens)
        return state, len(tokens)

    def hidden_by_embedding(self, tokens: list[int]) -> np.ndarray:
        """The same state through llama.cpp's embedding mode, for a build or graph the tap cannot
        read. Not `Llama.embed`: embedding mode makes every token of a pass an output (the
        vocabulary-sized output layer once per token), so the tokens before the last fill the
        KV cache with no output and the last goes alone with embeddings on. Its numbers differ
        from one batched pass by float rounding only (label probabilities within ~1e-2)."""
        import llama_cpp

        ctx, batch = self.llm._ctx, self.llm._batch
        ctx.kv_cache_clear()
        try:
            step = self.llm.n_batch
            for start in range(0, len(tokens) - 1, step):
                chunk = tokens[start:min(start + step, len(tokens) - 1)]
                batch.set_batch(chunk, n_past=start, logits_all=False)
                batch.batch.logits[len(chunk) - 1] = False  # no output row: these only fill the cache
                ctx.decode(batch)
            llama_cpp.llama_set_embeddings(ctx.ctx, True)
            batch.set_batch(tokens[-1:], n_past=len(tokens) - 1, logits_all=True)
            ctx.decode(batch)
            ptr = llama_cpp.llama_get_embeddings_seq(ctx.ctx, 0)
            return np.ctypeslib.as_array(ptr, shape=(self.n_embd,)).astype(np.float32)
        finally:
            batch.reset()
            llama_cpp.llama_set_embeddings(ctx.ctx, False)
