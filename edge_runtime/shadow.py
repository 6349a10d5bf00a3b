"""Shadow sampling (issue #18 item 2): live accuracy without labels.

`serve --shadow-fraction F` also sends a random share F of task requests to the teacher, and
`--shadow-below CONF` every request whose student confidence is below CONF, off the request
path (one background thread; the client already has the student's answer). Agreement between
student and teacher (the task's own `example_score` == 1, after its normalisation) estimates
live accuracy, with a 95% Wilson interval.

- Budget: `--shadow-max-per-hour N` and `--shadow-max-usd-per-hour X`, an
  `edge_runtime.budget.EscalationBudget` of its own (separate from escalation's): a sample
  takes a ticket before it is queued, so the teacher is never asked more than N times, nor
  (with steady costs) for more than X USD, in any sliding hour. Past it the request is simply
  not sampled (`edge_shadow_requests_total{outcome="skipped_budget"}`). Under a USD limit,
  until one shadow request has been costed only one is in flight at a time (the budget
  reserves the largest cost seen so far, and none is seen yet).
- Only the random sample estimates accuracy on the traffic; the low-confidence ones are
  reported apart (`sample="low_confidence"`), since they are the hard cases by construction.
- Escalated requests are not sampled: the teacher already answered them.
- The teacher call goes through `Router.ask_teacher`: masked and audited like an escalation
  (stage `shadow`), priced like one.
- With a request log, a sampled request's record is written once the teacher has answered,
  with `teacher_answer` and `shadow: {sample, agree, cost_usd}` (`edge-runtime report` reads it;
  `distill` trains on the teacher's answer).
"""

from __future__ import annotations

import logging
import math
import queue
import random
import threading
from dataclasses import dataclass
from typing import Any

from edge_runtime.budget import EscalationBudget
from edge_runtime.report import wilson
from edge_runtime.task import example_score

log = logging.getLogger("edge_runtime.shadow")

# serve's flag defaults: the one place. A cap on requests is on by default so that turning
# sampling on can never bill without bound (60 an hour is ~1.4k a day: a ±2.6-point interval).
DEFAULTS = {"fraction": 0.0, "below": None, "max_per_hour": 60, "max_usd_per_hour": None, "queue": 64}
SAMPLES = ("random", "low_confidence")


@dataclass
class ShadowSettings:
    fraction: float = DEFAULTS["fraction"]
    below: float | None = DEFAULTS["below"]
    max_per_hour: int | None = DEFAULTS["max_per_hour"]
    max_usd_per_hour: float | None = DEFAULTS["max_usd_per_hour"]
    queue_size: int = DEFAULTS["queue"]

    def __post_init__(self):
        if not (0.0 <= self.fraction <= 1.0):
            raise ValueError(f"--shadow-fraction must be between 0 and 1 (got {self.fraction!r})")
        if self.below is not None and not (0.0 <= self.below <= 1.0):
            raise ValueError(f"--shadow-below must be a confidence between 0 and 1 (got {self.below!r})")
        EscalationBudget(self.max_per_hour, self.max_usd_per_hour)  # same checks as escalation's budget
        if self.queue_size < 1:
            raise ValueError(f"shadow queue size must be >= 1 (got {self.queue_size})")

    @property
    def enabled(self) -> bool:
        return self.fraction > 0 or self.below is not None


class ShadowSampler:
    """Decides which requests to shadow, asks the teacher on its own thread, keeps the tally."""

    def __init__(self, router, settings: ShadowSettings, *, rng: random.Random | None = None,
                 budget: EscalationBudget | None = None):
        if router.teacher is None:
            raise ValueError("--shadow-fraction / --shadow-below need a teacher: add --teacher-url URL")
        t = router.teacher
        if settings.max_usd_per_hour is not None and not (t.usd_per_1k_input or t.usd_per_1k_output):
            raise ValueError("--shadow-max-usd-per-hour needs the teacher's prices: give --teacher-price-input-per-m "
                             "and --teacher-price-output-per-m, or a --teacher-model listed in edge_runtime/prices.yaml")
        self.router, self.settings = router, settings
        self.budget = budget or EscalationBudget(settings.max_per_hour, settings.max_usd_per_hour)
        self.rng = rng or random.Random()
        self.queue: queue.Queue = queue.Queue(settings.queue_size)
        self.lock = threading.Lock()
        self.counts = {(s, o): 0 for s in SAMPLES for o in ("agree", "disagree", "error", "skipped_budget", "dropped")}
        self.sent = self.in_flight = 0
        self.cost_usd = self.largest_cost = 0.0
        self._thread = threading.Thread(target=self._run, daemon=True, name="shadow")
        self._thread.start()

    def choose(self, response: dict[str, Any]) -> str | None:
        """The sample a finished request falls in, or None (escalated, cached, no valid answer, not drawn)."""
        if response.get("escalated") or response.get("cached") or response.get("answer") is None:
            return None
        conf = response.get("confidence")
        if self.settings.below is not None and isinstance(conf, (int, float)) and conf < self.settings.below:
            return "low_confidence"
        if self.settings.fraction > 0 and self.rng.random() < self.settings.fraction:
            return "random"
        return None

    def offer(self, example: dict[str, Any], response: dict[str, Any], record: dict[str, Any] | None = None,
              request_log=None) -> bool:
        """Queue a shadow request for this finished one when it is drawn and the budget allows.
        True when queued: the sampler then writes `record` to `request_log` itself."""
        sample = self.choose(response)
        if sample is None:
            return False
        if self.queue.full():
            self._count(sample, "dropped")
            return False
        with self.lock:  # a USD limit with no cost seen yet: one request at a time until one is known
            blind = self.settings.max_usd_per_hour is not None and self.largest_cost == 0 and self.in_flight > 0
        ticket = None if blind else self.budget.acquire()[0]
        if ticket is None:
            self._count(sample, "skipped_budget")
            return False
        with self.lock:
            self.in_flight += 1
        try:
            self.queue.put_nowait((sample, ticket, example, response.get("answer"), record, request_log))
        except queue.Full:
            self.budget.settle(ticket, 0.0)
            with self.lock:
                self.in_flight -= 1
            self._count(sample, "dropped")
            return False
        return True

    def _count(self, sample: str, outcome: str) -> None:
        with self.lock:
            self.counts[(sample, outcome)] += 1

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            self._one(*item)
            self.queue.task_done()

    def _one(self, sample, ticket, example, student, record, request_log) -> None:
        from edge_runtime.router import TeacherError

        cost, shadow = 0.0, {"sample": sample}
        try:
            with self.lock:
                self.sent += 1
            answer, _usage, cost = self.router.ask_teacher(example, stage="shadow")
            agree = example_score(self.router.task, student, answer) == 1.0
            self._count(sample, "agree" if agree else "disagree")
            shadow.update(agree=agree, cost_usd=round(cost, 6))
            if record is not None:
                record["teacher_answer"] = answer
        except TeacherError as exc:
            log.warning("shadow request failed: %s", exc)
            self._count(sample, "error")
            shadow["error"] = exc.public
        except Exception:  # a shadow request never takes the server down
            log.exception("shadow request failed")
            self._count(sample, "error")
            shadow["error"] = "internal error"
        finally:
            self.budget.settle(ticket, cost)
            with self.lock:
                self.cost_usd += cost
                self.largest_cost = max(self.largest_cost, cost)
                self.in_flight -= 1
        if record is not None and request_log is not None:
            request_log.record({**record, "shadow": shadow})

    def agreement(self, sample: str = "random") -> dict[str, Any]:
        with self.lock:
            k, n = self.counts[(sample, "agree")], self.counts[(sample, "agree")] + self.counts[(sample, "disagree")]
        lo, hi = wilson(k, n)
        return {"n": n, "agree": k, "ratio": k / n if n else None, "ci95": [lo, hi]}

    def drain(self, timeout_s: float = 30.0) -> None:
        """Wait until every queued shadow request is done (tests, shutdown)."""
        done = threading.Event()
        threading.Thread(target=lambda: (self.queue.join(), done.set()), daemon=True).start()
        done.wait(timeout_s)

    def close(self) -> None:
        self.drain()
        self.queue.put(None)
        self._thread.join(5)

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        c = CounterMetricFamily("edge_shadow_requests", "task requests drawn for shadow sampling, by sample "
                                "(random, low_confidence) and outcome", labels=["sample", "outcome"])
        with self.lock:
            counts, cost = dict(self.counts), self.cost_usd
        for (sample, outcome), v in counts.items():
            c.add_metric([sample, outcome], v)
        yield c
        yield CounterMetricFamily("edge_shadow_cost_usd", "teacher cost of shadow requests", value=cost)
        ratio = GaugeMetricFamily("edge_shadow_agreement_ratio", "share of shadow-sampled requests where the student "
                                  "agreed with the teacher (random: the live accuracy estimate)", labels=["sample"])
        low = GaugeMetricFamily("edge_shadow_agreement_ci95_lower", "95% Wilson interval, lower bound", labels=["sample"])
        high = GaugeMetricFamily("edge_shadow_agreement_ci95_upper", "95% Wilson interval, upper bound", labels=["sample"])
        for sample in SAMPLES:
            a = self.agreement(sample)
            if a["n"]:
                ratio.add_metric([sample], a["ratio"])
                low.add_metric([sample], a["ci95"][0])
                high.add_metric([sample], a["ci95"][1])
        yield ratio
        yield low
        yield high
        if self.budget.limited:
            used = self.budget.used()
            yield GaugeMetricFamily("edge_shadow_budget_used_requests", "shadow requests granted in the last hour",
                                    value=used["requests"])
