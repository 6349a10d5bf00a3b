"""The `openai` teacher: any OpenAI-compatible chat endpoint, over aiohttp.

Plain HTTP rather than the SDK so that retries, `Retry-After`, response-format fallbacks
and `reasoning_content` are all under our control (the SDK's own retries are opaque to the
ledger). aiohttp rather than httpx because on this 2-core machine httpx's async pool
reached 56 req/s at 64 concurrent 200 ms requests (18% of ideal) where aiohttp reached
309 (96%); see benchmarks/teacher_throughput.py. Retried: 429, 408, 5xx, timeouts, dropped connections and bodies that are not
the JSON a chat completion should be; each with exponential backoff and full jitter, or
the server's `Retry-After` when it gives one. Fatal: 401/403/404 (a wrong key, model or
URL: every other request would fail the same way).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlparse

import aiohttp

from distill.teachers.prompting import split_reasoning

# Ways to ask for structured output, most specific first; a server that rejects one (400/422)
# is asked the next way. `json_object`+`schema` is llama.cpp / Anyscale / vLLM style.
FORMAT_MODES = ("json_schema", "json_object_schema", "json_object", "none")


class RequestFailed(Exception):
    """One request failed for good (retries spent, or a permanent error)."""


class TeacherFatal(Exception):
    """The teacher cannot work at all (bad key, unknown model, wrong URL); stop the stage."""


@dataclass
class Completion:
    text: str  # the answer part of the reply (reasoning removed)
    reasoning: str = ""
    raw: str = ""  # the reply's content as sent
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    finish_reason: str = ""
    latency_s: float = 0.0
    logprobs: list[dict[str, Any]] | None = None  # OpenAI `choices[0].logprobs.content`, when asked for

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Completion":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def retry_after_s(headers) -> float | None:
    """Seconds the server asked us to wait (`retry-after-ms`, `Retry-After` seconds or date),
    or None when it gave none or nothing usable (`soon`, `nan`, `inf`, a broken date): the
    caller then uses its own backoff. A malformed header never aborts the stage."""
    def seconds(text: str, scale: float = 1.0) -> float | None:
        try:
            value = float(text) / scale
        except (TypeError, ValueError):
            return None
        return max(0.0, value) if math.isfinite(value) else None

    if "retry-after-ms" in headers:
        ms = seconds(headers["retry-after-ms"], 1000)
        if ms is not None:
            return ms
    value = headers.get("retry-after")
    if not value:
        return None
    number = seconds(value)
    if number is not None:
        return number
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, when.timestamp() - time.time()) if when else None


def _usage_of(text: str) -> tuple[int, int, int] | None:
    """(prompt, completion, cached) tokens a broken reply still reports, or None."""
    try:
        usage = json.loads(text)["usage"]
        return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0), 0
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _is_loopback(url: str) -> bool:
    return (urlparse(url).hostname or "") in ("127.0.0.1", "localhost", "::1")


class OpenAIBackend:
    """Sends chat completions; one instance per event loop."""

    def __init__(self, cfg, schema: dict[str, Any], task_name: str = "answer"):
        self.cfg, self.schema, self.task_name = cfg, schema, task_name
        self.identity = cfg.model
        from edge_runtime.router import strip_userinfo

        # several endpoints: each attempt goes where endpoints.EndpointPool says; the first names the cache
        self.pool = None
        base_url = cfg.base_url
        if isinstance(base_url, list):
            from distill.teachers.endpoints import EndpointPool

            self.pool, base_url = EndpointPool(cfg), base_url[0].url
        self.endpoint = strip_userinfo(base_url).rstrip("/")  # part of the cache key (cache.request_key)
        self.on_unusable = None  # called with (usage | None, messages, sampling) for a paid 200 that is unusable
        self.on_sent = None  # called with (url, body, status, text, error) after each HTTP call
        self.concurrency = cfg.concurrency
        key = os.environ.get(cfg.api_key_env)
        if self.pool is None and not key and not _is_loopback(base_url):
            raise TeacherFatal(
                f"the environment variable {cfg.api_key_env} (teacher.api_key_env) is not set; "
                f"export it with the API key for {base_url}"
            )
        self._headers = {"Authorization": f"Bearer {key or 'none'}"}
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._client: aiohttp.ClientSession | None = None
        self._modes = list(FORMAT_MODES if cfg.response_format else ("none",))
        self.retries = 0  # retried attempts, for the summary
        self.errors: dict[str, int] = {}

    @property
    def client(self) -> aiohttp.ClientSession:
        if self._client is None:
            self._client = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.cfg.concurrency),
                timeout=aiohttp.ClientTimeout(total=self.cfg.timeout_s),
            )
        return self._client

    async def _post(self, body: dict[str, Any]) -> tuple[int, str, Any]:
        if self.pool is not None:
            return await self.pool.post(self.client, body, self.on_sent)
        status, text, error = 0, "", None
        try:
            async with self.client.post(self._url, json=body, headers=self._headers) as resp:
                status, text = resp.status, await resp.text(errors="replace")
                return status, text, resp.headers
        except BaseException as exc:
            error = type(exc).__name__
            raise
        finally:
            if self.on_sent is not None:  # the privacy audit (distill.teachers.privacy): every HTTP call
                self.on_sent(self._url, body, status, text, error)

    def _payload(self, messages: list[dict[str, str]], sampling: dict[str, Any], mode: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.cfg.model,
            "messages": messages,
            "temperature": sampling["temperature"],
            "max_tokens": sampling["max_tokens"],
        }
        if sampling.get("seed") is not None:
            body["seed"] = sampling["seed"]
        if sampling.get("top_logprobs"):  # a classification teacher's label distribution (logprob_labels.py)
            body["logprobs"], body["top_logprobs"] = True, sampling["top_logprobs"]
        if mode == "json_schema":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": self.task_name.replace("-", "_"), "schema": self.schema, "strict": True},
            }
        elif mode == "json_object_schema":
            body["response_format"] = {"type": "json_object", "schema": self.schema}
        elif mode == "json_object":
            body["response_format"] = {"type": "json_object"}
        return body

    def _count(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    async def complete(self, messages: list[dict[str, str]], sampling: dict[str, Any]) -> Completion:
        attempt, last = 0, "no attempt made"
        while True:
            mode = self._modes[0]
            wait: float | None = None
            start = time.perf_counter()
            try:
                status, text, headers = await self._post(self._payload(messages, sampling, mode))
            except asyncio.TimeoutError:
                last = f"timed out after {self.cfg.timeout_s}s"
                self._count("timeout")
            except aiohttp.ClientError as exc:
                last = f"connection error: {type(exc).__name__}"
                self._count("connection")
            else:
                if status == 200:
                    try:
                        return self._completion(json.loads(text), time.perf_counter() - start)
                    except (ValueError, KeyError, IndexError, TypeError) as exc:
                        last = f"the endpoint returned a body that is not a chat completion ({type(exc).__name__})"
                        self._count("bad body")
                        if self.on_unusable is not None:  # a 200 is billed: the ledger counts it (may stop the stage)
                            self.on_unusable(_usage_of(text), messages, sampling)
                elif mode != "none" and (status in (400, 422) or (status >= 500 and "response_format" in text)):
                    # llama-cpp-python answers an unknown response_format type with a 500
                    # The server does not take this response_format; ask the next way. Requests in
                    # flight with the same mode fail alike: only the first one moves the list on.
                    if len(self._modes) > 1 and self._modes[0] == mode:
                        self._modes.pop(0)
                    continue
                elif status in (401, 403):
                    raise TeacherFatal(
                        f"{self.cfg.base_url} refused the API key from ${self.cfg.api_key_env} (HTTP {status}); check the key"
                    )
                elif status == 404:
                    raise TeacherFatal(
                        f"{self._url} answered 404 for model {self.cfg.model!r}: check teacher.base_url "
                        f"(usually ends in /v1) and teacher.model ({text[:200]})"
                    )
                elif status == 429 or status == 408 or status >= 500:
                    last = f"HTTP {status}"
                    self._count(f"http {status}")
                    wait = retry_after_s(headers)
                else:
                    raise RequestFailed(f"HTTP {status}: {text[:300]}")
            if attempt >= self.cfg.max_retries:
                raise RequestFailed(f"gave up after {attempt + 1} attempts; last: {last}")
            if wait is None:  # exponential backoff with full jitter
                wait = random.uniform(0, min(30.0, self.cfg.backoff_s * 2**attempt))
            attempt += 1
            self.retries += 1
            await asyncio.sleep(min(wait, 120.0))

    def _completion(self, data: dict[str, Any], latency: float) -> Completion:
        choice = data["choices"][0]
        message = choice["message"]
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            raise TypeError("message.content is not a string")
        text, reasoning = split_reasoning(content, message.get("reasoning_content") or message.get("reasoning"))
        usage = data.get("usage") or {}
        details = usage.get("prompt_tokens_details") or {}
        cached = details.get("cached_tokens") or usage.get("prompt_cache_hit_tokens") or 0
        logprobs = (choice.get("logprobs") or {}).get("content") if isinstance(choice.get("logprobs"), dict) else None
        return Completion(
            text=text,
            reasoning=reasoning,
            raw=content or "",
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            cached_tokens=int(cached),
            finish_reason=choice.get("finish_reason") or "",
            latency_s=latency,
            logprobs=logprobs if isinstance(logprobs, list) else None,
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
