"""A Hugging Face causal LM answering a task: greedy decoding of exactly the training prompt.

The loop is written out (prefill, then one token at a time with the KV cache) rather than
calling `generate`, so prefill and decode are timed apart (prompt and generation tokens/s)
and the probability of every chosen token is at hand for a confidence. It stops at EOS,
at `max_new_tokens`, or once the output starts with a complete JSON object (the parser
would take that object and ignore the rest, so the answer is the same, only sooner).
"""

from __future__ import annotations

import inspect
import math
import time
from pathlib import Path
from typing import Any

from edge_runtime.layout import MAX_NEW_TOKENS
from edge_runtime.predictor import Prediction
from edge_runtime.task import TaskSpec, complete_json_prefix


def weights_size(path: str | Path) -> int | None:
    """Bytes of the weight files in an HF checkpoint directory."""
    path = Path(path)
    if not path.is_dir():
        return None
    total = sum(p.stat().st_size for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".pt"))
    return total or None


class HFPredictor:
    """Greedy generation with transformers on the task's prompt; parses with the task."""

    def __init__(self, model_dir: str | Path, task: TaskSpec, name: str = "hf", max_new_tokens: int = MAX_NEW_TOKENS,
                 device: str | None = None, quantization_config=None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model_dir = Path(model_dir) if Path(model_dir).exists() else model_dir
        if isinstance(model_dir, Path) and not (model_dir / "config.json").is_file():
            raise FileNotFoundError(
                f"{model_dir} is not a Hugging Face model directory (no config.json); "
                f"give the directory `save_pretrained` wrote (e.g. <run>/train/merged)"
            )
        self.name, self.task, self.path = name, task, model_dir
        self.max_new_tokens = max_new_tokens
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        if quantization_config is None:
            self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype).to(self.device).eval()
        else:  # e.g. bitsandbytes (quantize.bnb.bnb_config): quantized while loading, placed by device_map
            self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype, device_map={"": self.device},
                                                              quantization_config=quantization_config).eval()
        eos = self.model.generation_config.eos_token_id if self.model.generation_config else None
        eos = eos if eos is not None else self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}
        self.size_bytes = weights_size(model_dir) if isinstance(model_dir, Path) else None
        if quantization_config is not None:  # what it takes in memory, not the full-precision files it came from
            self.size_bytes = self.model.get_memory_footprint()
        self.chat, self.stop = _prompt_format(model_dir, self.tokenizer, task)
        # transformers renamed `past_key_values` to `cache` (5.x); speak whichever this one does.
        params = inspect.signature(self.model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._keep = {"logits_to_keep": 1} if "logits_to_keep" in params else {}

    def _forward(self, ids, past=None):
        kwargs = {self._cache_kw: past} if past is not None else {}
        out = self.model(input_ids=ids, use_cache=True, **kwargs, **self._keep)
        cache = getattr(out, "cache", None) if self._cache_kw == "cache" else None
        return (cache if cache is not None else out.past_key_values), out.logits[0, -1]

    def predict(self, example: dict[str, Any]) -> Prediction:
        import torch

        prompt = self.task.render_prompt(example)
        if self.chat:  # a student with a chat template was trained on the prompt as a user turn
            prompt = self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                        add_generation_prompt=True)
        ids = self.tokenizer(prompt, add_special_tokens=not self.chat, return_tensors="pt").input_ids.to(self.device)
        out_ids: list[int] = []
        logprob_sum, min_prob = 0.0, 1.0
        finish = "length"
        with torch.inference_mode():
            t0 = time.perf_counter()
            past, logits = self._forward(ids)  # only the last position's logits: the vocabulary is large
            _sync(self.device)
            prefill_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            for _ in range(self.max_new_tokens):
                probs = torch.softmax(logits.float(), dim=-1)
                token = int(torch.argmax(probs))
                if token in self.eos_ids:
                    finish = "stop"
                    break
                p = float(probs[token])
                logprob_sum += math.log(max(p, 1e-12))
                min_prob = min(min_prob, p)
                out_ids.append(token)
                if self.stop and any(x in self.tokenizer.decode(out_ids[-8:]) for x in self.stop):
                    finish = "stop"
                    break
                if token in self._brace_ids() and complete_json_prefix(self.tokenizer.decode(out_ids)):
                    finish = "json"
                    break
                step = torch.tensor([[token]], device=self.device)
                past, logits = self._forward(step, past)
            _sync(self.device)
            decode_s = time.perf_counter() - t1
        text = self.tokenizer.decode(out_ids, skip_special_tokens=not self.stop)
        for x in self.stop:  # a chat turn ends with its suffix (e.g. <end_of_turn>): the answer is before it
            text = text.split(x, 1)[0]
        answer, problems = self.task.parse(text)
        if answer is None and finish == "length":
            problems.append(f"output cut at max_new_tokens={self.max_new_tokens}")
        return Prediction(
            answer=answer,
            raw=text,
            problems=problems,
            latency_s=prefill_s + decode_s,
            prompt_tokens=int(ids.shape[1]),
            completion_tokens=len(out_ids),
            confidence=self._confidence(logprob_sum, min_prob) if out_ids else None,
            extra={"prefill_s": prefill_s, "decode_s": decode_s, "min_token_prob": min_prob if out_ids else None,
                   "finish": finish},
        )

    def _confidence(self, logprob_sum: float, min_prob: float) -> float:
        """Classification and faq: the probability of the whole answer (the label's
        probability). Extraction: the weakest token's probability, so one unsure field
        shows even in a long answer."""
        return min_prob if self.task.kind == "extraction" else math.exp(logprob_sum)

    def _brace_ids(self) -> set[int]:
        """Token ids whose text contains `}`: only after one can the object be complete."""
        if not hasattr(self, "_braces"):
            vocab = self.tokenizer.get_vocab()
            self._braces = {i for t, i in vocab.items() if "}" in t}
        return self._braces


def _prompt_format(model_dir, tokenizer, task) -> tuple[bool, list[str]]:
    """(chat?, stop strings other than EOS) as the model was trained: from the
    `template.json` training saved next to it, else derived the way training derives it."""
    try:
        from distill.train.data import TEMPLATE_FILE, PromptFormat, prompt_format
    except ImportError:
        return False, []
    path = Path(model_dir) / TEMPLATE_FILE if isinstance(model_dir, Path) else None
    fmt = PromptFormat.load(model_dir) if path is not None and path.is_file() else prompt_format(tokenizer, task)
    stops = [x for x in fmt.stop if x and x != tokenizer.eos_token]
    return fmt.kind == "chat", stops


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
