"""The teacher-escalation budget of one server: at most N escalations and X USD in any
sliding hour (`edge-runtime serve --escalation-max-per-hour N --escalation-max-usd-per-hour X`).

An escalation asks for a ticket before the teacher is contacted (`acquire`) and settles it
with what it cost (`settle`). When the budget is spent, `acquire` says why and the router
returns the student's answer flagged `escalation_skipped: "budget"`; the request never fails.

- Requests: a ticket counts from the moment it is granted, whatever the escalation's outcome
  (a teacher that was contacted may have billed), so the teacher is contacted at most N
  times in any window of `window_s` seconds, concurrent requests included.
- USD: the cost is known only once the teacher has answered, so each escalation in flight
  reserves the largest cost one escalation has had so far, and a new one is granted only
  when cost so far + reservations + that estimate stay within X. With steady costs X is
  never passed; an escalation dearer than every earlier one can pass it by the difference.
  A cost counts at the time it was settled.

`clock` (default `time.monotonic`) is injectable so tests slide the window without waiting.
The budget is also a Prometheus collector: refusals by limit and the budget used this hour.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_S = 3600.0


@dataclass(frozen=True)
class Ticket:
    granted_at: float


class EscalationBudget:
    def __init__(self, max_per_hour: int | None = None, max_usd_per_hour: float | None = None, *,
                 window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic):
        if max_per_hour is not None and (isinstance(max_per_hour, bool) or not isinstance(max_per_hour, int)
                                         or max_per_hour < 0):
            raise ValueError(f"--escalation-max-per-hour must be a whole number >= 0 (got {max_per_hour!r})")
        if max_usd_per_hour is not None and not (max_usd_per_hour >= 0 and max_usd_per_hour != float("inf")):
            raise ValueError(f"--escalation-max-usd-per-hour must be a finite number >= 0 (got {max_usd_per_hour!r})")
        self.max_per_hour, self.max_usd_per_hour = max_per_hour, max_usd_per_hour
        self.window_s, self.clock = window_s, clock
        self._lock = threading.Lock()
        self._granted: deque[float] = deque()  # when each ticket of the window was granted
        self._costs: deque[tuple[float, float]] = deque()  # (settled at, usd)
        self._in_flight = 0
        self._largest_cost = 0.0
        self.refused = {"requests": 0, "usd": 0}

    @property
    def limited(self) -> bool:
        return self.max_per_hour is not None or self.max_usd_per_hour is not None

    def _prune(self, now: float) -> None:
        start = now - self.window_s
        while self._granted and self._granted[0] <= start:
            self._granted.popleft()
        while self._costs and self._costs[0][0] <= start:
            self._costs.popleft()

    def _usd(self) -> float:
        return sum(c for _, c in self._costs)

    def acquire(self) -> tuple[Ticket | None, str]:
        """(a ticket, "") when an escalation may go ahead; (None, why) when the budget is spent."""
        with self._lock:
            now = self.clock()
            self._prune(now)
            if self.max_per_hour is not None and len(self._granted) >= self.max_per_hour:
                self.refused["requests"] += 1
                free_in = self._granted[0] + self.window_s - now if self._granted else self.window_s
                return None, (f"the teacher escalation budget of {self.max_per_hour} per hour is spent; "
                              f"the next escalation is possible in {max(free_in, 0):.0f} s")
            if self.max_usd_per_hour is not None:
                committed = self._usd() + self._in_flight * self._largest_cost
                if committed >= self.max_usd_per_hour or committed + self._largest_cost > self.max_usd_per_hour:
                    self.refused["usd"] += 1
                    return None, (f"the teacher escalation budget of {self.max_usd_per_hour:g} USD per hour is spent "
                                  f"({self._usd():.4f} USD used in the last hour, "
                                  f"{self._in_flight} escalation(s) in flight)")
            self._granted.append(now)
            self._in_flight += 1
            return Ticket(now), ""

    def settle(self, ticket: Ticket, cost_usd: float) -> None:
        """The escalation of `ticket` is over and cost `cost_usd` (0 when it failed)."""
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            cost = float(cost_usd) if cost_usd and cost_usd > 0 else 0.0
            self._largest_cost = max(self._largest_cost, cost)
            if cost:
                self._costs.append((self.clock(), cost))

    def used(self) -> dict[str, float]:
        """Escalations granted and USD spent in the window ending now."""
        with self._lock:
            self._prune(self.clock())
            return {"requests": len(self._granted), "usd": self._usd(), "in_flight": self._in_flight}

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        used = self.used()
        refused = CounterMetricFamily("edge_escalation_budget_refusals", "escalations refused because the hourly "
                                      "teacher budget was spent (the student's answer was returned)", labels=["limit"])
        for kind in ("requests", "usd"):
            refused.add_metric([kind], self.refused[kind])
        yield refused
        g = GaugeMetricFamily("edge_escalation_budget_used", "teacher escalation budget used in the last hour "
                              "(requests: escalations granted; usd: their settled cost)", labels=["kind"])
        g.add_metric(["requests"], used["requests"])
        g.add_metric(["usd"], used["usd"])
        yield g
        limit = GaugeMetricFamily("edge_escalation_budget_limit", "teacher escalation budget per hour "
                                  "(absent: no limit)", labels=["kind"])
        if self.max_per_hour is not None:
            limit.add_metric(["requests"], self.max_per_hour)
        if self.max_usd_per_hour is not None:
            limit.add_metric(["usd"], self.max_usd_per_hour)
        yield limit


def server_budget(teacher, max_per_hour: int | None, max_usd_per_hour: float | None,
                  registry=None) -> EscalationBudget | None:
    """The budget `create_app` gives its router, exported in `registry`: None when no limit is
    set. A USD limit needs the teacher's prices (without them every escalation costs 0 and the
    limit never binds). Raised before any model loads, so a bad flag fails fast."""
    budget = EscalationBudget(max_per_hour, max_usd_per_hour)
    if not budget.limited:
        return None
    if teacher is None:
        import logging

        logging.getLogger("edge_runtime.budget").warning(
            "an escalation budget is set but escalation is off (no --teacher-url): the budget has nothing to limit")
    elif max_usd_per_hour is not None and not (teacher.usd_per_1k_input or teacher.usd_per_1k_output):
        raise ValueError("--escalation-max-usd-per-hour needs the teacher's prices to cost an escalation: give "
                         "--teacher-price-input-per-m and/or --teacher-price-output-per-m (USD per million tokens)")
    if registry is not None:
        registry.register(budget)
    return budget
