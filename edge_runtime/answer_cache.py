"""The answer cache: the same input to the same task asked again gets the answer already
given (the student's, or the teacher's after an escalation) without the model or the teacher.

Exact match on the normalised input: whitespace runs become one space, ends are trimmed
(per line for OCR lines). The key also holds the bundle's manifest sha256 (a new bundle never
sees an old bundle's answers), the task, the FAQ context, the confidence threshold and the
teacher (a changed escalation setting is a different answer). Bounded LRU: at most
`max_entries` answers and `max_bytes` of them (their JSON size); the least recently used go
first. What is not cached: an answer whose escalation failed (the next ask may reach the
teacher) and an invalid answer.

In `/metrics`: `edge_answer_cache_hits_total`, `edge_answer_cache_misses_total`,
`edge_answer_cache_saved_seconds_total` (model and teacher time the hits did not spend),
`edge_answer_cache_evictions_total`, `edge_answer_cache_entries`, `edge_answer_cache_bytes`.
Turned off with `edge-runtime serve --no-answer-cache`.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from typing import Any

DEFAULTS = {"max_entries": 1024, "max_bytes": 8 * 2**20}


def normalise(value: str | list[str]) -> str:
    """The input as the cache compares it: whitespace-normalised, per line for OCR lines."""
    if isinstance(value, list):
        return "\n".join(" ".join(str(v).split()) for v in value)
    return " ".join(str(value).split())


def manifest_digest(manifest: dict[str, Any]) -> str:
    """sha256 of a bundle's manifest (its files' sums and settings): names one bundle."""
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


class AnswerCache:
    def __init__(self, max_entries: int = DEFAULTS["max_entries"], max_bytes: int = DEFAULTS["max_bytes"]):
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("--answer-cache-entries and --answer-cache-mb must be positive; "
                             "turn the cache off with --no-answer-cache")
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._items: OrderedDict[str, tuple[dict[str, Any], float, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = self.evictions = 0
        self.saved_s = 0.0
        self.bytes = 0

    @staticmethod
    def key(*, bundle: str, task: str, value: str | list[str], context: str = "", settings: Any = None) -> str:
        parts = [bundle, task, normalise(value), " ".join(context.split()), settings]
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()

    def get(self, key: str) -> dict[str, Any] | None:
        """The cached response body (a copy) or None; counts the hit or miss."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            self.saved_s += item[1]
            return json.loads(json.dumps(item[0]))

    def put(self, key: str, body: dict[str, Any], cost_s: float) -> bool:
        """Keep `body` (what answering cost `cost_s` seconds); False when it is larger than the
        whole cache."""
        size = len(json.dumps(body, default=str)) + len(key)
        if size > self.max_bytes:
            return False
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.bytes -= old[2]
            self._items[key] = (json.loads(json.dumps(body, default=str)), float(cost_s), size)
            self.bytes += size
            while len(self._items) > self.max_entries or self.bytes > self.max_bytes:
                _, (_, _, n) = self._items.popitem(last=False)
                self.bytes -= n
                self.evictions += 1
        return True

    def __len__(self) -> int:
        return len(self._items)

    def collect(self):
        """Prometheus metric families (register the cache on a registry to export them)."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        yield CounterMetricFamily("edge_answer_cache_hits", "task requests answered from the answer cache", value=self.hits)
        yield CounterMetricFamily("edge_answer_cache_misses", "task requests not in the answer cache", value=self.misses)
        yield CounterMetricFamily("edge_answer_cache_saved_seconds", "model and teacher seconds the cache hits did not spend",
                                  value=self.saved_s)
        yield CounterMetricFamily("edge_answer_cache_evictions", "answers dropped to keep the cache in bounds", value=self.evictions)
        yield GaugeMetricFamily("edge_answer_cache_entries", "answers held", value=len(self._items))
        yield GaugeMetricFamily("edge_answer_cache_bytes", "bytes of answers held (JSON size)", value=self.bytes)
