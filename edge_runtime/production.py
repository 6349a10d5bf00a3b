"""The production loop on the device: what `edge-runtime serve` does around each task
request besides answering it (issue #18, DESIGN.md "After shipping: the loop").

- the answer cache (`edge_runtime.answer_cache`): on unless `--no-answer-cache`;
- the request log (`edge_runtime.request_log`): on with `--log-dir DIR`;
- drift (`edge_runtime.drift`): on when the bundle carries `drift_reference.json`;
- shadow sampling (`edge_runtime.shadow`): on with `--shadow-fraction F` or `--shadow-below CONF`.

The server asks this module three things per task request: the cache key and a cached
answer (`lookup`), to keep a new answer (`store`), and to note the finished request
(`after`: drift window and log record; both cheap, the log written by its own thread).
Everything here is also exported in `/metrics`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from edge_runtime.answer_cache import DEFAULTS as CACHE_DEFAULTS
from edge_runtime.answer_cache import AnswerCache, manifest_digest
from edge_runtime.drift import DEFAULTS as DRIFT_DEFAULTS
from edge_runtime.drift import REFERENCE_FILE, DriftMonitor
from edge_runtime.request_log import DEFAULTS as LOG_DEFAULTS
from edge_runtime.request_log import INPUT_MODES, LogSettings, RequestLog
from edge_runtime.shadow import DEFAULTS as SHADOW_DEFAULTS
from edge_runtime.shadow import ShadowSampler, ShadowSettings

log = logging.getLogger("edge_runtime.production")


@dataclass
class LoopSettings:
    log: LogSettings | None = None
    answer_cache: bool = True
    cache_entries: int = CACHE_DEFAULTS["max_entries"]
    cache_bytes: int = CACHE_DEFAULTS["max_bytes"]
    drift_threshold: float = DRIFT_DEFAULTS["threshold"]
    drift_window: int = DRIFT_DEFAULTS["window"]
    drift_min_samples: int = DRIFT_DEFAULTS["min_samples"]
    drift_alpha: float = DRIFT_DEFAULTS["alpha"]
    shadow: ShadowSettings | None = None

    def __post_init__(self):
        if not 0 < self.drift_alpha < 1:
            raise ValueError(f"--drift-false-alarm must be between 0 and 1 (got {self.drift_alpha:g})")
        if self.drift_threshold <= 0 or self.drift_window < 1:
            raise ValueError(f"--drift-threshold must be > 0 (got {self.drift_threshold:g}) and --drift-window >= 1 "
                             f"(got {self.drift_window})")


class ProductionLoop:
    def __init__(self, bundle, router, settings: LoopSettings | None = None, registry=None):
        s = self.settings = settings or LoopSettings()
        self.bundle_id = manifest_digest(bundle.manifest)
        self.task, self.router = bundle.task, router
        self.cache = AnswerCache(s.cache_entries, s.cache_bytes) if s.answer_cache else None
        self.drift = None
        ref = bundle.read_json(REFERENCE_FILE)
        if ref is not None:
            self.drift = DriftMonitor(ref, s.drift_threshold, s.drift_window, s.drift_min_samples, s.drift_alpha)
        else:
            log.info("the bundle has no %s (packed before drift profiles, or from a run without inputs): "
                     "no drift metrics; re-pack it with `edge-runtime pack` to get them", REFERENCE_FILE)
        self.shadow = ShadowSampler(router, s.shadow) if s.shadow is not None and s.shadow.enabled else None
        self.log = RequestLog(s.log) if s.log else None  # last: it takes the directory's lock
        if registry is not None:
            for part in (self.cache, self.drift, self.shadow, self):
                if part is not None:
                    registry.register(part)

    # ---- per request ----
    def cache_key(self, example: dict[str, Any], context: str) -> str | None:
        if self.cache is None:
            return None
        t = self.router.teacher
        settings = [self.router.threshold, (t.base_url, t.model) if t is not None else None]
        return self.cache.key(bundle=self.bundle_id, task=self.task.name, value=example[self.task.input_field],
                              context=context, settings=settings)

    def lookup(self, key: str | None) -> dict[str, Any] | None:
        """A cached response body, marked `cached`, with no model or teacher cost; or None."""
        if key is None:
            return None
        body = self.cache.get(key)
        if body is None:
            return None
        body["cached"] = True
        if "cost_usd" in body:
            body["cost_usd"] = 0.0
        return body

    def store(self, key: str | None, body: dict[str, Any], model_s: float) -> None:
        """Keep an answer worth repeating: valid, and not one whose escalation failed or was
        skipped for the budget (once the budget frees up, the same input escalates)."""
        if key is None or body.get("answer") is None or body.get("escalation_error") or body.get("escalation_skipped"):
            return
        teacher_s = float((body.get("teacher_usage") or {}).get("latency_s", 0.0))
        self.cache.put(key, body, model_s + teacher_s)

    def after(self, response: dict[str, Any], example: dict[str, Any], total_s: float) -> None:
        """Note a finished task request: the drift window, then the log (never raises)."""
        try:
            teacher_said = bool(response.get("escalated"))  # the answer is the teacher's (now, or cached)
            cached = bool(response.get("cached"))
            student = response.get("student_answer") if teacher_said else response.get("answer")
            usage = response.get("usage") or {}
            if self.drift is not None:
                key = self.task.answer_keys()[0]
                label = str(student.get(key)) if self.task.kind == "classification" and isinstance(student, dict) else None
                self.drift.observe(self.task.input_text(example), confidence=response.get("confidence"),
                                   label=label, prompt_tokens=usage.get("prompt_tokens"))
            record = None
            if self.log is not None:
                record = {
                    "id": response.get("id"), "task": self.task.name, "bundle": self.bundle_id,
                    "input": example[self.task.input_field], "answer": response.get("answer"),
                    "source": "cache" if response.get("cached") else response.get("source"),
                    "confidence": response.get("confidence"), "valid": student is not None,
                    "escalated": teacher_said and not cached, "student_answer": student,
                    "teacher_answer": response.get("answer") if teacher_said else None,
                    **({"escalation_error": response["escalation_error"]} if response.get("escalation_error") else {}),
                    **({"escalation_skipped": response["escalation_skipped"]} if response.get("escalation_skipped") else {}),
                    "cached": cached, "latency_s": response.get("latency_s"),
                    "total_s": round(total_s, 4), "prompt_tokens": usage.get("prompt_tokens", 0),
                    "completion_tokens": usage.get("completion_tokens", 0), "cost_usd": response.get("cost_usd", 0.0),
                }
            # a shadow-sampled request's record is written by the sampler, with the teacher's answer
            if not (self.shadow is not None and self.shadow.offer(example, response, record, self.log)) and record:
                self.log.record(record)
        except Exception:  # the loop never fails a request
            log.exception("production loop: could not note request %s", response.get("id"))

    def handover(self, bundle, router, registry=None) -> "ProductionLoop":
        """The loop for the bundle a hot swap moves to: the same request log (its lock stays
        held, records go on in the same files) and the same shadow sampler (its hourly budget
        carries on, now asking through the new router); a fresh answer cache and drift window
        (the new student answers differently). This loop's cache, drift and log metrics leave
        `registry` for the new loop's."""
        from dataclasses import replace

        if registry is not None:
            for part in (self.cache, self.drift, self):
                if part is not None:
                    registry.unregister(part)
        new = ProductionLoop(bundle, router, replace(self.settings, log=None, shadow=None), registry)
        new.settings, new.log, new.shadow = self.settings, self.log, self.shadow  # shared: the old bundle's
        if new.shadow is not None:  # requests still in flight log and sample through them too
            new.shadow.router = router
        return new

    def close(self) -> None:
        if self.shadow is not None:
            self.shadow.close()  # before the log: it writes the sampled requests' records
        if self.log is not None:
            self.log.close()

    def collect(self):
        from prometheus_client.core import CounterMetricFamily

        if self.log is not None:
            c = CounterMetricFamily("edge_request_log_records", "request log records by outcome: written, dropped "
                                    "(queue full) or lost (a failed write)", labels=["outcome"])
            c.add_metric(["written"], self.log.written)
            c.add_metric(["dropped"], self.log.dropped)
            c.add_metric(["lost_batches"], self.log.failed_batches)
            yield c


# ---- the serve flags -------------------------------------------------------------------
def add_serve_flags(s) -> None:
    import argparse

    g = s.add_argument_group("production loop (request log, answer cache, drift)")
    g.add_argument("--log-dir", default=None, metavar="DIR",
                   help="write a request log here (JSONL, format edge-request-log v1, see docs/production.md); off without it")
    g.add_argument("--log-inputs", choices=INPUT_MODES, default=LOG_DEFAULTS["inputs"],
                   help="what the log keeps of each input: full, masked (PII replaced; default) or hash (sha256 only)")
    g.add_argument("--log-max-file-mb", type=float, default=LOG_DEFAULTS["max_file_bytes"] / 2**20, metavar="MB",
                   help="start a new log file past this size (default %(default)g)")
    g.add_argument("--log-max-total-mb", type=float, default=LOG_DEFAULTS["max_total_bytes"] / 2**20, metavar="MB",
                   help="delete the oldest log files past this total (default %(default)g)")
    g.add_argument("--answer-cache", action=argparse.BooleanOptionalAction, default=True,
                   help="answer a repeated input (same task, whitespace-normalised) from memory (default on)")
    g.add_argument("--answer-cache-entries", type=int, default=CACHE_DEFAULTS["max_entries"], metavar="N")
    g.add_argument("--answer-cache-mb", type=float, default=CACHE_DEFAULTS["max_bytes"] / 2**20, metavar="MB")
    g.add_argument("--drift-threshold", type=float, default=DRIFT_DEFAULTS["threshold"], metavar="PSI",
                   help="raise edge_drift_flag when a feature's PSI passes this (default %(default)g)")
    g.add_argument("--drift-window", type=int, default=DRIFT_DEFAULTS["window"], metavar="N",
                   help="live task requests compared with the bundle's reference (default %(default)d)")
    g.add_argument("--drift-false-alarm", type=float, default=DRIFT_DEFAULTS["alpha"], metavar="P",
                   help="per feature, the chance that same-distribution traffic passes the PSI noise bound "
                        "(default %(default)g; edge_runtime/drift.py)")
    add_shadow_flags(s)


def add_shadow_flags(s) -> None:
    g = s.add_argument_group("shadow sampling (live accuracy; needs --teacher-url)")
    g.add_argument("--shadow-fraction", type=float, default=SHADOW_DEFAULTS["fraction"], metavar="F",
                   help="also send this random share of task requests to the teacher, off the request path, and "
                        "export the agreement as live accuracy with a 95%% Wilson interval (default 0: off)")
    g.add_argument("--shadow-below", type=float, default=SHADOW_DEFAULTS["below"], metavar="CONF",
                   help="also shadow every request whose confidence is below CONF (reported apart: the hard cases)")
    g.add_argument("--shadow-max-per-hour", type=int, default=SHADOW_DEFAULTS["max_per_hour"], metavar="N",
                   help="at most N shadow requests in any sliding hour (default %(default)s)")
    g.add_argument("--shadow-max-usd-per-hour", type=float, default=SHADOW_DEFAULTS["max_usd_per_hour"], metavar="USD",
                   help="at most this shadow teacher cost in any sliding hour (default: no USD limit)")


def settings_from_flags(a) -> LoopSettings:
    logs = None
    if a.log_dir:
        logs = LogSettings(a.log_dir, inputs=a.log_inputs, max_file_bytes=int(a.log_max_file_mb * 2**20),
                           max_total_bytes=int(a.log_max_total_mb * 2**20))
    return LoopSettings(log=logs, answer_cache=a.answer_cache, cache_entries=a.answer_cache_entries,
                        cache_bytes=int(a.answer_cache_mb * 2**20), drift_threshold=a.drift_threshold,
                        drift_window=a.drift_window, drift_alpha=a.drift_false_alarm, shadow=ShadowSettings(
                            fraction=a.shadow_fraction, below=a.shadow_below, max_per_hour=a.shadow_max_per_hour,
                            max_usd_per_hour=a.shadow_max_usd_per_hour))
