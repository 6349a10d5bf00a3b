"""The cost ledger: tokens and dollars per request, and a budget that is never crossed.

Before a request is sent, its worst case (an upper estimate of its prompt tokens plus
`max_tokens` of completion) is reserved; a request whose worst case would take the spend
past `max_cost_usd` is not sent and the stage stops cleanly, keeping everything already
paid for. The paid entries themselves are stored by the cache, in the same transaction as
the response, so the ledger on disk is exact even after a kill.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from distill.teachers.prices import Price


class BudgetExceeded(Exception):
    """The next request could cross `max_cost_usd`; nothing more is sent."""


@dataclass
class EndpointFigures:
    """One endpoint's share of a run when `teacher.base_url` lists several (endpoints.py)."""

    requests: int = 0  # answered with HTTP 200
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: int = 0  # connection errors, timeouts, 408/429/5xx
    taken_out: int = 0  # times a failure put it in cooldown
    seconds: float = 0.0  # time spent on its requests, failed ones included


@dataclass
class Ledger:
    price: Price | None
    max_cost_usd: float | None = None
    spent_usd: float = 0.0  # paid in this run
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    requests: int = 0
    reserved_usd: float = 0.0
    stopped: bool = False
    tokens_per_byte: float = 1.0  # learnt from replies; starts at the byte-level upper bound
    _ratios: list[float] = field(default_factory=list)
    endpoints: dict[str, EndpointFigures] = field(default_factory=dict)  # by URL, when there are several

    def __post_init__(self) -> None:
        if self.max_cost_usd is not None and self.price is None:
            raise ValueError(
                "teacher.max_cost_usd is set but the model's price is unknown: set "
                "teacher.price_input_per_m and teacher.price_output_per_m (USD per million tokens)"
            )

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
        return self.price.cost(prompt_tokens, completion_tokens, cached_tokens) if self.price else 0.0

    def reserve(self, est_prompt_tokens: int, max_completion_tokens: int) -> float:
        """Reserve a request's worst-case cost, or raise BudgetExceeded."""
        worst = self.cost(est_prompt_tokens, max_completion_tokens)
        if self.max_cost_usd is not None and self.spent_usd + self.reserved_usd + worst > self.max_cost_usd:
            self.stopped = True
            raise BudgetExceeded(
                f"stopping: the next request (up to ${worst:.6f}) could take the spend "
                f"${self.spent_usd:.6f} past teacher.max_cost_usd=${self.max_cost_usd}"
            )
        self.reserved_usd += worst
        return worst

    def release(self, reserved: float) -> None:
        self.reserved_usd = max(0.0, self.reserved_usd - reserved)

    def record(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int, prompt_bytes: int) -> float:
        cost = self.cost(prompt_tokens, completion_tokens, cached_tokens)
        self.spent_usd += cost
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.cached_tokens += cached_tokens
        self.requests += 1
        if prompt_bytes and prompt_tokens:
            # keep a safety margin over the worst ratio seen, never above the hard bound
            self._ratios.append(prompt_tokens / prompt_bytes)
            self.tokens_per_byte = min(1.0, max(self._ratios) * 1.25)
        return cost

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_prompt_tokens": self.cached_tokens,
            "cost_usd": round(self.spent_usd, 8),
            "max_cost_usd": self.max_cost_usd,
            "stopped_by_budget": self.stopped,
            "price_source": self.price.source if self.price else "unknown (cost not counted)",
            **({"endpoints": {url: {**asdict(f), "seconds": round(f.seconds, 3)} for url, f in self.endpoints.items()}}
               if self.endpoints else {}),
        }
