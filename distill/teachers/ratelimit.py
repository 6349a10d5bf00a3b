"""Requests-per-minute and tokens-per-minute limits over a sliding 60 s window.

A request takes one slot and its estimated tokens before it is sent; when the reply says
how many tokens it really used, the entry is corrected, so the TPM window tracks reality.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque


class RateLimiter:
    def __init__(self, rpm: int | None = None, tpm: int | None = None, window_s: float = 60.0):
        self.rpm, self.tpm, self.window = rpm, tpm, window_s
        self._events: deque[list[float]] = deque()  # [timestamp, tokens]
        self._lock = asyncio.Lock()

    def _prune(self, now: float) -> None:
        while self._events and self._events[0][0] <= now - self.window:
            self._events.popleft()

    def _wait_s(self, now: float, tokens: int) -> float:
        self._prune(now)
        waits = [0.0]
        if self.rpm is not None and len(self._events) >= self.rpm:
            waits.append(self._events[len(self._events) - self.rpm][0] + self.window - now)
        if self.tpm is not None:
            used = sum(e[1] for e in self._events)
            excess = used + min(tokens, self.tpm) - self.tpm
            for ts, tok in self._events:  # wait until enough old tokens leave the window
                if excess <= 0:
                    break
                excess -= tok
                waits.append(ts + self.window - now)
        return max(waits)

    def wait_s(self, tokens: int = 0) -> float:
        """Seconds before `acquire(tokens)` would go through (0: at once); lets a caller with
        several limiters pick one that is free instead of queueing behind a full one."""
        if self.rpm is None and self.tpm is None:
            return 0.0
        return self._wait_s(time.monotonic(), tokens)

    async def acquire(self, tokens: int = 0) -> list[float] | None:
        """Wait for a slot; returns a handle for `settle`."""
        if self.rpm is None and self.tpm is None:
            return None
        async with self._lock:  # FIFO: one waiter computes at a time
            while True:
                now = time.monotonic()
                wait = self._wait_s(now, tokens)
                if wait <= 0:
                    entry = [now, float(tokens)]
                    self._events.append(entry)
                    return entry
                await asyncio.sleep(wait)

    @staticmethod
    def settle(handle: list[float] | None, actual_tokens: int) -> None:
        if handle is not None:
            handle[1] = float(actual_tokens)
