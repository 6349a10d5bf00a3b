"""Greedy schema-constrained decoding at the speed of free decoding.

llama.cpp's own grammar sampler checks every candidate of Gemma's 262,144-token vocabulary at
every step (3.4x slower than free decoding on receipts). Here llguidance computes which tokens
the answer's JSON schema allows, and only when the model's own first choice is not one of them:
a trained student's argmax is almost always allowed, so most steps cost one bit test.

Two more things make an answer cheaper than one forward pass per token, without changing it:
- forced tokens: where the schema allows exactly one continuation (keys, quotes, braces, the
  unique rest of an enum value), llguidance returns it and it is evaluated as one batch;
- copy-aware speculation: extraction values are copied from the prompt, so the continuation of
  the prompt span that the last generated tokens match is drafted and verified in one forward
  pass (prompt-lookup decoding). A drafted token is kept only while it equals the masked argmax
  at its position, so the text is exactly that of step-by-step greedy constrained decoding.

Reads llama-cpp-python's low-level API (batches with per-token logits, KV removal) and keeps
`Llama.input_ids`/`n_tokens` true, so the Llama object's own prefix reuse keeps working.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# The decoder's defaults, per task kind, chosen by measurement (benchmarks/device_latency.py;
# figures in docs/results.md). On the 2-core CPU hosts speculation does not pay: each verified
# row costs Gemma's 262k-row output layer (~6.5 ms, half a one-token pass) and a padded pass
# is compute-bound, so drafting 3 tokens ran at 1.02x and 8 at 1.15x of free decoding while
# plain passes with forced tokens batched ran at 0.94x. It stays available (`--speculate`,
# generation.json `decoding.speculate`) for hosts where a pass is memory-bound (GPUs, larger
# students). A bundle's generation.json `decoding` block overrides these, `serve` flags that.
TASK_DECODING = {
    "extraction": {"speculate": False, "draft_max": 3},
    "classification": {"speculate": False},
    "faq": {"speculate": False},
}


@dataclass
class DecodeSettings:
    """How an answer is decoded; generation.json's `decoding` block, overridable at `serve`."""

    speculate: bool = True
    draft_max: int = 8  # tokens proposed per speculative pass
    ngram_max: int = 3  # longest suffix of the output looked up in the prompt
    ngram_min: int = 1
    forced_batch: bool = True
    # pad every pass to draft_max + 1 rows even without speculation: the reference decoder
    # whose answers speculation must reproduce byte for byte (tests, benchmarks)
    fixed_shape: bool = False

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "DecodeSettings":
        d = dict(d or {})
        known = {k: d.pop(k) for k in list(d) if k in cls.__dataclass_fields__}
        if d:
            raise ValueError(f"unknown decoding settings {sorted(d)}; known: {sorted(cls.__dataclass_fields__)}")
        s = cls(**known)
        if s.draft_max < 1 or s.ngram_min < 1 or s.ngram_max < s.ngram_min:
            raise ValueError("decoding: draft_max >= 1 and 1 <= ngram_min <= ngram_max are required")
        return s

    @classmethod
    def for_task(cls, kind: str, overrides: dict[str, Any] | None = None) -> "DecodeSettings":
        """The kind's measured defaults (TASK_DECODING), then `overrides` (a bundle's, serve's)."""
        return cls.from_dict({**TASK_DECODING.get(kind, {}), **(overrides or {})})

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class DecodeStats:
    """Where an answer's tokens came from, and what deciding them cost."""

    forced: int = 0  # appended because the schema allowed nothing else
    sampled: int = 0  # chosen from a logits row (argmax), not drafted
    copied: int = 0  # drafted from the prompt and accepted by verification
    drafted: int = 0  # drafted tokens proposed for verification
    forward_passes: int = 0  # llama_decode calls after the prompt
    masked_steps: int = 0  # steps where the raw argmax was not allowed and the full mask was used
    mask_s: float = 0.0
    prob_s: float = 0.0
    prompt_s: float = 0.0

    @property
    def acceptance(self) -> float:
        return self.copied / self.drafted if self.drafted else 0.0

    def add(self, other: "DecodeStats") -> None:
        for k in self.__dataclass_fields__:
            setattr(self, k, getattr(self, k) + getattr(other, k))

    def to_dict(self) -> dict[str, Any]:
        d = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in self.__dict__.items()}
        d["acceptance"] = round(self.acceptance, 4)
        return d


@dataclass
class DecodeResult:
    tokens: list[int]
    text: str
    probs: list[float]  # per token: its probability under the full-vocabulary softmax (1.0 when forced)
    piece_ends: list[int]  # byte offset where each token's text ends
    finish_reason: str  # "stop" | "length"
    stats: DecodeStats = field(default_factory=DecodeStats)


def _tokenizer_for(llm: Any):
    """llguidance's view of the model's vocabulary, built once per loaded model (~1 s)."""
    tok = getattr(llm, "_edge_lltokenizer", None)
    if tok is None:
        import warnings

        import llama_cpp
        from llguidance.llamacpp import lltokenizer_from_vocab

        with warnings.catch_warnings():  # it calls a llama_cpp alias deprecated once per token
            warnings.simplefilter("ignore", DeprecationWarning)
            tok = lltokenizer_from_vocab(llama_cpp.llama_model_get_vocab(llm.model))
        llm._edge_lltokenizer = tok
    return tok


def grammar_from_schema(schema: dict[str, Any]) -> str:
    """The llguidance grammar of a JSON schema, with the compact separators our answers use
    (`json.dumps` defaults: ", " and ": "), so keys and punctuation are forced, not sampled."""
    from llguidance import LLMatcher

    return LLMatcher.grammar_from_json_schema(
        schema, overrides={"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "})


class SchemaDecoder:
    """Decodes answers that match one grammar with one llama.cpp model. Not thread-safe: the
    caller holds the model's lock (LlamaCppPredictor does)."""

    def __init__(self, llm: Any, grammar: str, settings: DecodeSettings | None = None):
        from llguidance import LLMatcher

        self.llm = llm
        self.settings = settings or DecodeSettings()
        self.tokenizer = _tokenizer_for(llm)
        problem = LLMatcher.validate_grammar(grammar, self.tokenizer)
        if problem and not problem.startswith("WARNING"):
            raise ValueError(f"the answer schema is not valid (llguidance could not compile it): {problem}")
        self.grammar = grammar
        self.n_vocab = llm.n_vocab()
        self.eos = self.tokenizer.eos_token
        self._mask = np.zeros(((self.n_vocab + 31) // 32,), dtype=np.int32)
        self._pieces: dict[int, bytes] = {}

    # ---- llama.cpp plumbing -------------------------------------------------------------
    @property
    def shape(self) -> int:
        """Rows of every forward pass after the prompt. llama.cpp's CPU kernels give logits that
        depend on a batch's row count (1.5 logits apart for the same tokens between one-row and
        eight-row passes, measured on Gemma 3 270M), never on which row a token sits in or on the other rows' tokens: so every
        pass has the same shape, padded, and a drafted token is judged on exactly the logits
        step-by-step decoding would see. Without speculation, plain one-token passes."""
        s = self.settings
        return s.draft_max + 1 if (s.speculate or s.fixed_shape) else 1

    def _decode(self, tokens: list[int], logits: str = "last", stats: DecodeStats | None = None) -> None:
        """Evaluate `tokens` after the current context. `logits`: "last" or "all" rows, or
        "prompt": batches of up to n_batch rows, the last row's logits. Other passes are padded
        to `shape` rows (the padding leaves no KV behind) and counted in `stats`."""
        llm = self.llm
        step = llm.n_batch if logits == "prompt" else self.shape
        for i in range(0, len(tokens), step):
            chunk = tokens[i: i + step]
            n_past, k = llm.n_tokens, len(chunk)
            rows = chunk + [chunk[-1]] * (step - k) if logits != "prompt" else chunk
            if n_past + len(rows) > llm.n_ctx():
                raise ValueError(f"the prompt and answer need more than the context of {llm.n_ctx()} tokens")
            b = llm._batch.batch
            b.n_tokens = len(rows)
            last = i + k == len(tokens)
            for j, t in enumerate(rows):
                b.token[j], b.pos[j], b.n_seq_id[j] = t, n_past + j, 1
                b.seq_id[j][0] = 0
                b.logits[j] = j < k and (logits == "all" or (last and j == k - 1))
            llm._ctx.decode(llm._batch)
            if stats is not None:
                stats.forward_passes += 1
            if len(rows) > k:
                llm._ctx.kv_cache_seq_rm(0, n_past + k, -1)
            llm.input_ids[n_past: n_past + k] = chunk
            llm.n_tokens = n_past + k

    def _row(self, i: int) -> np.ndarray:
        """Logits of the i-th token of the last batch (-1: its last), without a copy."""
        return np.ctypeslib.as_array(self.llm._ctx.get_logits_ith(i), shape=(self.n_vocab,))

    def _truncate(self, n: int) -> None:
        """Forget every evaluated token from position n on (KV cells and bookkeeping); also
        what `Llama.reset()` left in the KV cache, which only zeroes the count."""
        self.llm._ctx.kv_cache_seq_rm(0, n, -1)
        self.llm.n_tokens = min(self.llm.n_tokens, n)

    def _start(self, prompt: list[int]) -> None:
        """Evaluate the part of the prompt the context does not already hold, so its last
        row of logits is ready. Reuses the longest common prefix (the task prefix)."""
        llm = self.llm
        if len(prompt) >= llm.n_ctx():
            raise ValueError(f"the prompt has {len(prompt)} tokens; the context holds {llm.n_ctx()}")
        held = llm.n_tokens
        common = 0
        limit = min(held, len(prompt))
        ids = llm.input_ids
        while common < limit and ids[common] == prompt[common]:
            common += 1
        common = min(common, len(prompt) - 1)  # at least one token evaluated: its logits are needed
        self._truncate(common)
        self._decode(prompt[common:], logits="prompt")

    # ---- choosing a token ---------------------------------------------------------------
    def _choose(self, matcher: Any, row: np.ndarray, stats: DecodeStats) -> int:
        """The argmax of `row` among the tokens the grammar allows now."""
        tok = int(row.argmax())
        t = time.perf_counter()
        if matcher.validate_tokens([tok]) == 1 and (tok != self.eos or matcher.is_accepting()):
            stats.mask_s += time.perf_counter() - t
            return tok
        from llguidance.numpy import fill_next_token_bitmask

        fill_next_token_bitmask(matcher, self._mask.reshape(1, -1))
        allowed = np.unpackbits(self._mask.view(np.uint8), bitorder="little")[: self.n_vocab].astype(bool)
        stats.mask_s += time.perf_counter() - t
        stats.masked_steps += 1
        if not allowed.any():
            return self.eos
        return int(np.where(allowed, row, -np.inf).argmax())

    def _prob(self, row: np.ndarray, tok: int, stats: DecodeStats) -> float:
        t = time.perf_counter()
        peak = float(row.max())
        p = float(np.exp(row[tok] - peak) / np.exp(row - peak).sum())
        stats.prob_s += time.perf_counter() - t
        return p

    def _draft(self, prompt: list[int], out: list[int]) -> list[int]:
        """Prompt lookup: the tokens that followed the latest occurrence in the prompt of the
        longest suffix (ngram_max down to ngram_min tokens) of what was generated so far."""
        s = self.settings
        seq = prompt + out
        for n in range(min(s.ngram_max, len(seq)), s.ngram_min - 1, -1):
            key = seq[-n:]
            first = key[0]
            for start in range(len(prompt) - n, -1, -1):
                if prompt[start] == first and prompt[start: start + n] == key:
                    follow = prompt[start + n: start + n + s.draft_max]
                    if follow:
                        return follow
        return []

    # ---- the loop -----------------------------------------------------------------------
    def generate(self, prompt: list[int], max_tokens: int, confidence: bool = True,
                 deadline: Any = None, grammar: str | None = None) -> DecodeResult:
        """Greedy decoding of one answer after `prompt` (token ids, BOS included). `grammar`
        replaces the decoder's own for this answer (a copy grammar built from its input).

        Tokens are decided (forced by the schema, chosen from a row of logits, or drafted and
        verified), then the decided-but-unevaluated ones (`pending`) go through the model in
        one pass, with a draft appended when speculating."""
        from llguidance import LLMatcher

        s, stats = self.settings, DecodeStats()
        matcher = LLMatcher(self.tokenizer, grammar or self.grammar, log_level=0)
        if matcher.is_error():
            raise ValueError(f"the answer grammar is not valid (llguidance could not compile it): {matcher.get_error()}")
        out: list[int] = []
        probs: list[float] = []

        def decide(tokens: list[int], p: list[float]) -> None:
            matcher.consume_tokens(tokens)
            out.extend(tokens)
            probs.extend(p)

        # what the schema forces first (`{"company": "`) is evaluated with the prompt, in its pass
        first = matcher.compute_ff_tokens()[:max_tokens] if s.forced_batch else []
        decide(first, [1.0] * len(first))
        stats.forced += len(first)
        t0 = time.perf_counter()
        self._start(prompt + first)
        stats.prompt_s = time.perf_counter() - t0
        row, pending = self._row(-1), []
        finish = "length"
        while True:
            if s.forced_batch and not matcher.is_stopped():
                forced = matcher.compute_ff_tokens()[: max_tokens - len(out)]
                decide(forced, [1.0] * len(forced))
                stats.forced += len(forced)
                pending += forced
            if matcher.is_stopped():
                finish = "stop"
                break
            if len(out) >= max_tokens or (deadline is not None and deadline(None, None)):
                break
            if not pending:  # `row` is current: choose the next token from it
                tok = self._choose(matcher, row, stats)
                if tok == self.eos:
                    finish = "stop"
                    break
                decide([tok], [self._prob(row, tok, stats) if confidence else 1.0])
                stats.sampled += 1
                pending = [tok]
                continue
            draft = self._draft(prompt, out) if s.speculate else []
            if draft:  # verified in the same pass as `pending`: one pass holds `shape` rows
                draft = draft[: max(0, min(max_tokens - len(out), self.shape - len(pending)))]
                draft = draft[: matcher.validate_tokens(draft)]
            base = self.llm.n_tokens
            self._decode(pending + draft, logits="all" if draft else "last", stats=stats)
            if not draft:
                row, pending = self._row(-1), []
                continue
            # keep drafted tokens while each is what step-by-step decoding would pick there
            stats.drafted += len(draft)
            at, accepted = len(pending) - 1, 0
            for d in draft:
                row_d = self._row(at + accepted)
                if matcher.is_stopped() or (s.forced_batch and matcher.compute_ff_tokens()):
                    break  # the schema decides the next tokens: the loop's forced step takes them
                if self._choose(matcher, row_d, stats) != d:
                    break
                decide([d], [self._prob(row_d, d, stats) if confidence else 1.0])
                accepted += 1
            stats.copied += accepted
            self._truncate(base + len(pending) + accepted)  # drop the KV of rejected drafts
            row, pending = self._row(at + accepted), []
        if matcher.is_error():
            raise RuntimeError(f"constrained decoding failed: {matcher.get_error()}")
        text_bytes, ends = b"", []
        for t in out:
            piece = self._pieces.get(t)
            if piece is None:
                piece = self._pieces[t] = self.tokenizer.decode_bytes([t])
            text_bytes += piece
            ends.append(len(text_bytes))
        return DecodeResult(out, text_bytes.decode("utf-8", errors="replace"), probs, ends, finish, stats)
