"""An ONNX export of the student answering a task through onnxruntime, with a KV cache.

Reads the folder `quantize.onnx_export` writes: `model.onnx` (inputs `input_ids`,
`attention_mask`, `position_ids`, `past_key_values.{i}.key/value`; outputs the last
position's `logits` and `present.{i}.key/value`), `tokenizer.json`, `onnx_meta.json` and,
when training saved one, `template.json` (plain or chat prompt, BOS, stop strings).
Only numpy, onnxruntime, tokenizers (and jinja2 for a chat template): a router runs it.

Generation is greedy: one prefill over the prompt, then one token per step feeding the
presents back as the past. Like the HF predictor it stops at EOS, at a stop string, at
`max_new_tokens`, or once the output starts with a complete JSON object. Decoding is not
constrained: an answer that does not parse comes back as `answer=None` with the parser's
problems (JSON validity is measured, not forced).
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.layout import MAX_NEW_TOKENS
from edge_runtime.predictor import Prediction
from edge_runtime.task import TaskSpec, complete_json_prefix

MODEL_FILE, META_FILE, TEMPLATE_FILE = "model.onnx", "onnx_meta.json", "template.json"


def load_session(path: str | Path, n_threads: int | None = None):
    """An onnxruntime CPU session; a missing or corrupt file raises with the path named."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}; export one with `quantize onnx HF_DIR --out DIR`")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = n_threads or max(1, os.cpu_count() or 1)
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ValueError(f"onnxruntime could not load {path}: {exc}. The file may be truncated or not an ONNX "
                         f"model; re-export it with `quantize onnx`") from exc


class OnnxPredictor:
    """Answers a task with an ONNX causal LM (fp32, INT8 or INT4). Thread-safe: one request at a time."""

    def __init__(self, model_dir: str | Path, task: TaskSpec, name: str = "onnx", max_new_tokens: int = MAX_NEW_TOKENS,
                 n_threads: int | None = None):
        from tokenizers import Tokenizer

        self.path, self.task, self.name = Path(model_dir), task, name
        self.max_new_tokens = max_new_tokens
        for needed in (MODEL_FILE, META_FILE, "tokenizer.json"):
            if not (self.path / needed).is_file():
                raise FileNotFoundError(f"{self.path} has no {needed}: give a folder `quantize onnx` wrote")
        self.meta = json.loads((self.path / META_FILE).read_text(encoding="utf-8"))
        self.session = load_session(self.path / MODEL_FILE, n_threads)
        self.tokenizer = Tokenizer.from_file(str(self.path / "tokenizer.json"))
        self.eos_ids = set(self.meta.get("eos_token_ids") or [])
        self.template = self._template()
        eos_text = self.template.get("eos_token")
        self.stop = [s for s in self.template.get("stop", []) if s and s != eos_text]
        self._past_names = [i.name for i in self.session.get_inputs() if i.name.startswith("past_key_values.")]
        self._out_names = [o.name for o in self.session.get_outputs()]
        dtype = self.session.get_inputs()[3].type if len(self.session.get_inputs()) > 3 else "tensor(float)"
        self._dtype = np.float16 if "float16" in dtype else np.float32
        self._lock = threading.Lock()

    def _template(self) -> dict[str, Any]:
        path = self.path / TEMPLATE_FILE
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
        return {"kind": "plain", "stop": []}

    @property
    def size_bytes(self) -> int:
        return sum((self.path / n).stat().st_size for n in (MODEL_FILE, MODEL_FILE + ".data")
                   if (self.path / n).is_file())

    # ------------------------------------------------------------------ tokens
    def prompt_ids(self, prompt: str) -> list[int]:
        """Token ids exactly as the HF student saw the prompt in training: the plain format
        through the tokenizer's post-processor (which adds BOS), a chat template rendered
        as a user turn and tokenized without adding specials again."""
        if self.template.get("kind") == "chat" and self.template.get("chat_template"):
            import jinja2

            env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
            env.globals["raise_exception"] = lambda msg: (_ for _ in ()).throw(ValueError(msg))
            text = env.from_string(self.template["chat_template"]).render(
                messages=[{"role": "user", "content": prompt}], add_generation_prompt=True,
                bos_token=self.template.get("bos_token") or "", eos_token=self.template.get("eos_token") or "")
            return self.tokenizer.encode(text, add_special_tokens=False).ids
        return self.tokenizer.encode(prompt, add_special_tokens=True).ids

    def _feeds(self, ids: list[int], start: int, past: list[np.ndarray] | None) -> dict[str, np.ndarray]:
        n = len(ids)
        feeds = {"input_ids": np.array([ids], dtype=np.int64),
                 "attention_mask": np.ones((1, start + n), dtype=np.int64),
                 "position_ids": np.arange(start, start + n, dtype=np.int64)[None]}
        if past is None:
            shape = (1, self.meta["num_kv_heads"], 0, self.meta["head_dim"])
            past = [np.zeros(shape, dtype=self._dtype)] * len(self._past_names)
        feeds.update(zip(self._past_names, past))
        return feeds

    def generate(self, prompt_ids: list[int], max_new: int, stop_on_json: bool = False):
        """Greedy decoding; returns (tokens, their probabilities, finish, prefill_s, decode_s)."""
        tokens: list[int] = []
        probs: list[float] = []
        finish = "length"
        t0 = time.perf_counter()
        logits, *past = self.session.run(self._out_names, self._feeds(prompt_ids, 0, None))
        prefill_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        pos = len(prompt_ids)
        for _ in range(max_new):
            row = logits[0].astype(np.float64)
            token = int(row.argmax())
            if token in self.eos_ids:
                finish = "stop"
                break
            peak = row[token]
            probs.append(float(1.0 / np.exp(row - peak).sum()))
            tokens.append(token)
            if self.stop or stop_on_json:
                text = self.tokenizer.decode(tokens, skip_special_tokens=not self.stop)
                if self.stop and any(s in text[-64:] for s in self.stop):
                    finish = "stop"
                    break
                if stop_on_json and "}" in self.tokenizer.decode([token]) and complete_json_prefix(text):
                    finish = "json"
                    break
            logits, *past = self.session.run(self._out_names, self._feeds([token], pos, past))
            pos += 1
        return tokens, probs, finish, prefill_s, time.perf_counter() - t1

    def greedy_ids(self, prompt_ids: list[int], max_new: int) -> list[int]:
        """The greedy continuation's token ids (EOS excluded), for tests and the answer check."""
        with self._lock:
            return self.generate(list(prompt_ids), max_new)[0]

    # ------------------------------------------------------------------ predictor
    def predict(self, example: dict[str, Any], context: str = "") -> Prediction:
        prompt = self.task.render_prompt(example, context=context)
        ids = self.prompt_ids(prompt)
        with self._lock:
            tokens, probs, finish, prefill_s, decode_s = self.generate(ids, self.max_new_tokens, stop_on_json=True)
        text = self.tokenizer.decode(tokens, skip_special_tokens=not self.stop)
        for s in self.stop:  # a chat turn ends with its suffix: the answer is before it
            text = text.split(s, 1)[0]
        answer, problems = self.task.parse(text)
        if answer is None and finish == "length":
            problems.append(f"output cut at max_new_tokens={self.max_new_tokens}")
        pred = Prediction(answer=answer, raw=text, problems=problems, latency_s=prefill_s + decode_s,
                          prompt_tokens=len(ids), completion_tokens=len(tokens),
                          extra={"prefill_s": prefill_s, "decode_s": decode_s, "finish": finish,
                                 "min_token_prob": min(probs) if probs else None,
                                 "mean_token_prob": sum(probs) / len(probs) if probs else None})
        if answer is not None and tokens:
            from edge_runtime.router import answer_confidence

            ends = [len(self.tokenizer.decode(tokens[: i + 1], skip_special_tokens=True).encode())
                    for i in range(len(tokens))]
            pred.confidence, pred.extra["field_confidence"] = answer_confidence(
                self.task, example, answer, text, ends, probs)
        elif probs:
            pred.confidence = min(probs) if self.task.kind == "extraction" else math.exp(sum(map(math.log, probs)))
        return pred
