"""Many endpoints for one API teacher: replicas, keys or regions that share the work.

`teacher.base_url` given as a list makes `OpenAIBackend` send each attempt through an
`EndpointPool`. The pool picks the endpoint with the least outstanding work for its weight
(outstanding / weight, like Envoy's least-request balancer), inside that endpoint's own
concurrency and rpm/tpm limits. A connection error, timeout or 5xx takes the endpoint out
for `teacher.endpoint_cooldown_s`; the backend's retry then goes to another one, so a
replica that dies mid-run costs no row. After the cooldown one request probes it (one
only, so a dead replica is not stormed); a success puts it back. When every endpoint has
failed again after its cooldown, the stage stops with `TeacherFatal`: what was labelled is
already in the cache, and the same command resumes from there.

Retries, backoff, `Retry-After` and the response-format fallbacks stay in the backend: the
pool only says where each attempt goes and keeps each endpoint's figures for the ledger.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import aiohttp

from distill.teachers.ledger import EndpointFigures
from distill.teachers.openai_teacher import TeacherFatal
from distill.teachers.prompting import estimate_tokens
from distill.teachers.ratelimit import RateLimiter
from edge_runtime.privacy import usage_of


def _is_loopback(url: str) -> bool:
    return (urlparse(url).hostname or "") in ("127.0.0.1", "localhost", "::1")


@dataclass
class Endpoint:
    name: str  # the URL without credentials: what logs, errors and the ledger show
    url: str  # as configured (may hold user:pass@)
    weight: float
    max_concurrency: int | None
    key_env: str
    headers: dict[str, str]
    limiter: RateLimiter
    figures: EndpointFigures = field(default_factory=EndpointFigures)
    outstanding: int = 0
    down_until: float = 0.0  # time.monotonic() before which it gets nothing
    strikes: int = 0  # failures since its last success, counted once per cooldown
    last_error: str = ""

    def usable(self, now: float, tokens: int) -> bool:
        if now < self.down_until:
            return False
        cap = 1 if self.strikes else self.max_concurrency  # after a failure: one probe at a time
        return (cap is None or self.outstanding < cap) and self.limiter.wait_s(tokens) <= 0


class EndpointPool:
    """Where each attempt of an `OpenAIBackend` with several endpoints goes."""

    def __init__(self, cfg):
        from edge_runtime.router import strip_userinfo

        self.cooldown_s = cfg.endpoint_cooldown_s
        self.model = cfg.model
        self.endpoints: list[Endpoint] = []
        for spec in cfg.base_url:
            key_env = spec.api_key_env or cfg.api_key_env
            key = os.environ.get(key_env)
            name = strip_userinfo(spec.url).rstrip("/")
            if not key and not _is_loopback(spec.url):
                raise TeacherFatal(f"the environment variable {key_env} is not set; export it with the API key for "
                                   f"{name} (teacher.base_url entry's api_key_env, else teacher.api_key_env)")
            self.endpoints.append(Endpoint(
                name=name, url=spec.url.rstrip("/"), weight=spec.weight, max_concurrency=spec.max_concurrency,
                key_env=key_env, headers={"Authorization": f"Bearer {key or 'none'}"},
                limiter=RateLimiter(spec.rpm, spec.tpm)))
        self._wake: asyncio.Event | None = None

    @property
    def figures(self) -> dict[str, EndpointFigures]:
        return {e.name: e.figures for e in self.endpoints}

    def share_figures(self, figures: dict[str, EndpointFigures]) -> None:
        """Count into `figures` (a ledger's), so two pools of one run add up in one place."""
        for e in self.endpoints:
            e.figures = figures.setdefault(e.name, e.figures)

    def _pick(self, now: float, tokens: int) -> Endpoint | None:
        ready = [e for e in self.endpoints if e.usable(now, tokens)]
        return min(ready, key=lambda e: (e.outstanding + 1) / e.weight) if ready else None

    def _notify(self) -> None:
        if self._wake is not None:
            self._wake.set()
            self._wake = None

    async def _take(self, tokens: int) -> Endpoint:
        while True:
            if all(e.strikes >= 2 for e in self.endpoints):
                raise TeacherFatal(
                    f"all {len(self.endpoints)} teacher endpoints are down ("
                    + "; ".join(f"{e.name}: {e.last_error}" for e in self.endpoints)
                    + "); every answer received is in the cache: run the same command again once one is back")
            now = time.monotonic()
            chosen = self._pick(now, tokens)
            if chosen is not None:
                chosen.outstanding += 1
                return chosen
            # wait for a slot to free up, the first cooldown to end or a rate window to open
            if self._wake is None:
                self._wake = asyncio.Event()
            ends = [e.down_until - now if e.down_until > now else e.limiter.wait_s(tokens) for e in self.endpoints]
            ends = [t for t in ends if t > 0]
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=min(ends) if ends else None)
            except asyncio.TimeoutError:
                pass

    def _failed(self, ep: Endpoint, why: str) -> None:
        """Take `ep` out for the cooldown; failures of requests sent before it went out count once."""
        ep.figures.errors += 1
        ep.last_error = why
        now = time.monotonic()
        if now >= ep.down_until:
            ep.strikes += 1
            ep.figures.taken_out += 1
            ep.down_until = now + self.cooldown_s

    async def post(self, client: aiohttp.ClientSession, body: dict[str, Any], on_sent=None) -> tuple[int, str, Any]:
        """One attempt at one endpoint: (status, text, headers), as `OpenAIBackend._post` returns.
        `on_sent(url, body, status, text, error)` is called after the HTTP call (the privacy audit)."""
        tokens = estimate_tokens(body["messages"]) + int(body.get("max_tokens") or 0)
        ep = await self._take(tokens)
        start = time.perf_counter()
        try:
            handle = await ep.limiter.acquire(tokens)  # free now: _take chose it for that
            start = time.perf_counter()
            status, text, error = 0, "", None
            try:
                async with client.post(ep.url + "/chat/completions", json=body, headers=ep.headers) as resp:
                    status, text, headers = resp.status, await resp.text(errors="replace"), resp.headers
            except asyncio.TimeoutError:
                error = "TimeoutError"
                self._failed(ep, "timed out")
                raise
            except aiohttp.ClientError as exc:
                error = type(exc).__name__
                self._failed(ep, f"connection error: {type(exc).__name__}")
                raise
            finally:
                if on_sent is not None:
                    on_sent(ep.url + "/chat/completions", body, status, text, error)
        finally:
            ep.outstanding -= 1
            ep.figures.seconds += time.perf_counter() - start
            self._notify()
        if status == 200:
            prompt, completion = usage_of(text)
            ep.limiter.settle(handle, prompt + completion)
            ep.figures.requests += 1
            ep.figures.prompt_tokens += prompt
            ep.figures.completion_tokens += completion
            ep.strikes = 0
        elif status in (401, 403):
            raise TeacherFatal(f"{ep.name} refused the API key from ${ep.key_env} (HTTP {status}); check the key")
        elif status == 404:
            raise TeacherFatal(f"{ep.name}/chat/completions answered 404 for model {self.model!r}: check this "
                               f"teacher.base_url entry (usually ends in /v1) and teacher.model ({text[:200]})")
        elif status >= 500 and "response_format" not in text:  # (that one is the format fallback, not a failure)
            self._failed(ep, f"HTTP {status}")
        elif status in (408, 429) or status >= 500:
            ep.figures.errors += 1
        return status, text, headers
