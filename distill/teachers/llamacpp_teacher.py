"""The `llamacpp` teacher: a local GGUF in process, its answers held to the task's JSON
schema by a grammar. A GGUF with a chat template is asked in chat form; a base model gets
the student's own plain prompt (`prompting.flatten`)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from distill.teachers.openai_teacher import Completion, RequestFailed
from distill.teachers.prompting import flatten, split_reasoning
from edge_runtime.task import TaskSpec


def resolve_gguf(model: str) -> Path:
    path = Path(model).expanduser()
    if path.is_file():
        return path
    try:
        from distill.models.resolve import resolve

        resolved = resolve(model, need_hf=False)
        if resolved.gguf_path:
            return Path(resolved.gguf_path)
    except Exception as exc:  # noqa: BLE001 - reported below with the fix
        raise FileNotFoundError(f"teacher.model {model!r} is neither a GGUF file nor a known model ({exc})") from None
    raise FileNotFoundError(f"teacher.model {model!r}: no GGUF found; give the path to a .gguf file")


class LlamaCppBackend:
    concurrency = 1  # one context; llama.cpp uses every core for one request

    def __init__(self, cfg, task: TaskSpec, llm: Any = None):
        from llama_cpp import LlamaGrammar

        from edge_runtime.engines.llamacpp import load_llama

        self.path = resolve_gguf(cfg.model)
        self.identity = f"llamacpp:{self.path.name}:{self.path.stat().st_size}"
        self.llm = llm or load_llama(self.path, n_ctx=cfg.n_ctx)
        self.grammar = LlamaGrammar.from_json_schema(json.dumps(task.json_schema()), verbose=False)
        self.chat = bool((getattr(self.llm, "metadata", None) or {}).get("tokenizer.chat_template"))
        self.language = task.prompt_language  # of the plain format's output marker on a retry

    def _complete(self, messages: list[dict[str, str]], sampling: dict[str, Any]) -> Completion:
        start = time.perf_counter()
        kw = dict(max_tokens=sampling["max_tokens"], temperature=sampling["temperature"], grammar=self.grammar,
                  seed=sampling.get("seed") or 0)
        try:
            if self.chat:
                out = self.llm.create_chat_completion(messages=messages, **kw)
                choice = out["choices"][0]
                content = choice["message"].get("content") or ""
            else:
                out = self.llm(flatten(messages, self.language), **kw)
                choice = out["choices"][0]
                content = choice["text"]
        except ValueError as exc:  # e.g. the prompt does not fit n_ctx
            raise RequestFailed(f"llama.cpp: {exc}") from None
        text, reasoning = split_reasoning(content)
        usage = out.get("usage", {})
        return Completion(text, reasoning, content, usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0),
                          0, choice.get("finish_reason") or "", time.perf_counter() - start)

    async def complete(self, messages, sampling) -> Completion:
        return await asyncio.to_thread(self._complete, messages, sampling)

    async def aclose(self) -> None:
        return None
