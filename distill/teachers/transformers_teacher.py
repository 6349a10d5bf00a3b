"""The `transformers` teacher: a local HF model (a path or a model id already on disk).

No grammar here, so answers are held to the schema by validation and the engine's one
retry. A tokenizer with a chat template is asked in chat form, else with the student's
plain prompt. Generation runs in a worker thread, one request at a time."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from distill.teachers.openai_teacher import Completion
from distill.teachers.prompting import flatten, split_reasoning
from edge_runtime.task import TaskSpec


class TransformersBackend:
    concurrency = 1

    def __init__(self, cfg, task: TaskSpec, model: Any = None, tokenizer: Any = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.identity = f"transformers:{cfg.model}"
        try:
            self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(cfg.model)
            self.model = model or AutoModelForCausalLM.from_pretrained(cfg.model)
        except OSError as exc:
            raise FileNotFoundError(
                f"teacher.model {cfg.model!r} could not be loaded ({exc}); give a local model directory"
            ) from None
        self.model.eval()
        self.chat = bool(getattr(self.tokenizer, "chat_template", None))
        self.language = task.prompt_language  # of the plain format's output marker on a retry
        self._lock = threading.Lock()

    def _complete(self, messages: list[dict[str, str]], sampling: dict[str, Any]) -> Completion:
        import torch

        start = time.perf_counter()
        if self.chat:
            prompt = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            prompt = flatten(messages, self.language)
        enc = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=not self.chat)
        temp = sampling["temperature"]
        gen = dict(max_new_tokens=sampling["max_tokens"], do_sample=temp > 0,
                   pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
        if temp > 0:
            gen["temperature"] = temp
        with self._lock, torch.no_grad():
            if sampling.get("seed") is not None:
                torch.manual_seed(sampling["seed"])
            out = self.model.generate(**enc, **gen)
        new = out[0, enc["input_ids"].shape[1]:]
        content = self.tokenizer.decode(new, skip_special_tokens=True)
        text, reasoning = split_reasoning(content)
        finish = "length" if len(new) >= sampling["max_tokens"] else "stop"
        return Completion(text, reasoning, content, int(enc["input_ids"].shape[1]), int(len(new)), 0, finish,
                          time.perf_counter() - start)

    async def complete(self, messages, sampling) -> Completion:
        return await asyncio.to_thread(self._complete, messages, sampling)

    async def aclose(self) -> None:
        return None
