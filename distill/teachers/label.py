"""The labelling engine every model teacher shares: cache, budget, limits, validation, vote.

For each input and each sample: look the request up in the cache; otherwise reserve its
worst-case cost, wait for the rate limits and a concurrency slot, send it, and commit the
reply with its ledger entry at once. An invalid answer is asked again once with the
validation error; still invalid, it is dropped and counted. Identical requests in flight
are sent once. The output order is the input order, built from the cache, so a resumed
run can never duplicate a row.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from distill.teachers.cache import ResponseCache, request_key
from distill.teachers.ledger import BudgetExceeded, Ledger
from distill.teachers.logprob_labels import logprob_distribution, mean_distribution
from distill.teachers.openai_teacher import Completion, RequestFailed, TeacherFatal
from distill.teachers.prompting import build_messages, estimate_tokens, retry_messages
from distill.teachers.ratelimit import RateLimiter
from distill.teachers.vote import DISTRIBUTION_FIELD, label_distribution, majority
from edge_runtime.prompt_text import prompt_text
from edge_runtime.task import TaskSpec


class Backend(Protocol):
    identity: str
    concurrency: int

    async def complete(self, messages: list[dict[str, str]], sampling: dict[str, Any]) -> Completion: ...

    async def aclose(self) -> None: ...


@dataclass
class Outcome:
    answer: dict[str, Any] | None
    problems: list[str] = field(default_factory=list)
    completion: Completion | None = None
    failure: str = ""  # "request" | "budget" | "invalid" when answer is None
    cost_usd: float = 0.0
    cached: bool = True


class Labeller:
    def __init__(self, task: TaskSpec, backend: Backend, ledger: Ledger, *, cache: ResponseCache | None = None,
                 limiter: RateLimiter | None = None, temperature: float = 0.0, max_tokens: int = 512,
                 samples: int = 1, keep_reasoning: bool = False, top_logprobs: int = 0):
        self.task, self.backend, self.ledger, self.cache = task, backend, ledger, cache
        self.limiter = limiter or RateLimiter()
        self.temperature, self.max_tokens, self.samples = temperature, max_tokens, samples
        self.keep_reasoning = keep_reasoning
        # log-probabilities only serve a classification task's label distribution
        self.top_logprobs = top_logprobs if task.kind == "classification" else 0
        self.run_id = uuid.uuid4().hex[:12]
        self._sem: asyncio.Semaphore | None = None
        self._inflight: dict[str, asyncio.Future] = {}
        self.from_cache = 0
        self.sent = 0
        self.fatal: TeacherFatal | None = None
        self.unusable_paid = 0  # 200s with a broken body, paid for and in the ledger
        if hasattr(backend, "on_unusable"):
            backend.on_unusable = self._paid_unusable
        if getattr(backend, "pool", None) is not None:  # several endpoints: their figures go in the ledger
            backend.pool.share_figures(ledger.endpoints)

    def _paid_unusable(self, usage: tuple[int, int, int] | None, messages, sampling) -> None:
        """Charge a paid but unusable reply: the usage it reports, or else its worst case (every
        prompt byte a token, `max_tokens` of completion), so `max_cost_usd` is never crossed
        unseen. Stops the retries of this request when the budget is now spent."""
        if usage is None:
            usage = (estimate_tokens(messages, 1.0), sampling["max_tokens"], 0)
        cost = self.ledger.record(*usage, 0)
        self.unusable_paid += 1
        if self.cache is not None:
            key = request_key(self.backend.identity, messages, sampling, getattr(self.backend, "endpoint", None))
            self.cache.record_cost(key, self.backend.identity, usage, cost, self.ledger_run)
        if self.ledger.max_cost_usd is not None and self.ledger.spent_usd + self.ledger.reserved_usd > self.ledger.max_cost_usd:
            self.ledger.stopped = True
            raise BudgetExceeded(f"stopping: unusable replies that were paid for took the spend to "
                                 f"${self.ledger.spent_usd:.6f} (teacher.max_cost_usd=${self.ledger.max_cost_usd})")

    def sampling(self, sample: int) -> dict[str, Any]:
        sampling = {
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": sample if self.samples > 1 else None,
        }
        if self.top_logprobs:  # only then: the cache keys of runs without it stay as they were
            sampling["top_logprobs"] = self.top_logprobs
        return sampling

    async def fetch(self, messages: list[dict[str, str]], sampling: dict[str, Any]) -> tuple[Completion, float, bool]:
        """(completion, cost paid now, came from cache)."""
        endpoint = getattr(self.backend, "endpoint", None)
        key = request_key(self.backend.identity, messages, sampling, endpoint)
        hit = self.cache.get(key) if self.cache is not None else None
        if hit is None and self.cache is not None and endpoint:
            # paid before the key named the endpoint: still this cache's answer, never paid twice
            hit = self.cache.get(request_key(self.backend.identity, messages, sampling))
        if hit is not None:
            self.from_cache += 1
            return Completion.from_dict(hit), 0.0, True
        if key in self._inflight:
            comp = await asyncio.shield(self._inflight[key])
            return comp, 0.0, True
        future = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            comp, cost = await self._send(key, messages, sampling)
            future.set_result(comp)
            return comp, cost, False
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._inflight[key]

    async def _send(self, key: str, messages, sampling) -> tuple[Completion, float]:
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.backend.concurrency)
        if self.ledger.stopped:
            raise BudgetExceeded("the budget was reached")
        async with self._sem:
            if self.fatal is not None:  # the teacher is unusable: send nothing more
                raise self.fatal
            est = estimate_tokens(messages, self.ledger.tokens_per_byte)
            reserved = self.ledger.reserve(est, sampling["max_tokens"])
            try:
                handle = await self.limiter.acquire(est + sampling["max_tokens"])
                try:
                    comp = await self.backend.complete(messages, sampling)
                except TeacherFatal as exc:
                    self.fatal = exc
                    raise
                self.limiter.settle(handle, comp.prompt_tokens + comp.completion_tokens)
                size = sum(len(m["content"].encode("utf-8")) for m in messages)
                cost = self.ledger.record(comp.prompt_tokens, comp.completion_tokens, comp.cached_tokens, size)
                self.sent += 1
                if self.cache is not None:
                    request = {"messages": messages, "sampling": sampling}
                    usage = (comp.prompt_tokens, comp.completion_tokens, comp.cached_tokens)
                    self.cache.put(key, self.backend.identity, request, comp.to_dict(), usage, cost, self.ledger_run)
                return comp, cost
            finally:
                self.ledger.release(reserved)

    @property
    def ledger_run(self) -> str:
        return self.run_id

    async def sample(self, messages: list[dict[str, str]], index: int) -> Outcome:
        sampling = self.sampling(index)
        cost, cached = 0.0, True
        try:
            comp, paid, hit = await self.fetch(messages, sampling)
            cost, cached = cost + paid, cached and hit
            answer, problems = self.task.parse(comp.text)
            if answer is None:
                problems = self._explain(comp, problems)
                language = self.task.prompt_language  # the retry turn speaks the task's language
                complaint = self._explain(comp, self.task.parse(comp.text, language)[1], language)
                comp, paid, hit = await self.fetch(retry_messages(messages, comp.raw or comp.text, complaint, language), sampling)
                cost, cached = cost + paid, cached and hit
                answer, problems = self.task.parse(comp.text)
                problems = self._explain(comp, problems) if answer is None else []
        except BudgetExceeded as exc:
            return Outcome(None, [str(exc)], failure="budget", cost_usd=cost, cached=cached)
        except RequestFailed as exc:
            return Outcome(None, [str(exc)], failure="request", cost_usd=cost, cached=cached)
        return Outcome(answer, problems, comp, "" if answer else "invalid", cost, cached)

    def _logprob_distribution(self, outs: list[Outcome]) -> dict[str, float] | None:
        """The mean over valid samples of the label distribution their log-probabilities spell."""
        if not self.top_logprobs:
            return None
        dists = [logprob_distribution(self.task.labels, o.completion.raw, o.completion.logprobs)
                 for o in outs if o.answer is not None and o.completion is not None]
        return mean_distribution([d for d in dists if d])

    def _explain(self, comp: Completion, problems: list[str], language: str = "en") -> list[str]:
        if comp.finish_reason == "length":
            return [*problems, prompt_text(language)["problem_cut"].format(max_tokens=self.max_tokens)]
        return problems

    async def label(self, row: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None, list[Outcome]]:
        messages = build_messages(self.task, row)
        outs = await asyncio.gather(*(self.sample(messages, i) for i in range(self.samples)))
        for kind in ("budget", "request"):
            bad = [o for o in outs if o.failure == kind]
            if bad:
                return None, {"id": row["id"], "reason": kind, "problems": bad[0].problems}, outs
        answer, agreement = majority(self.task, [o.answer for o in outs])
        if answer is None:
            last = outs[0].completion
            return None, {"id": row["id"], "reason": "invalid", "problems": outs[0].problems,
                          "raw": last.raw[:500] if last else ""}, outs
        labelled = {**row, "answer": answer, "agreement": round(agreement, 4)}
        shares = self._logprob_distribution(outs) or label_distribution(self.task, [o.answer for o in outs])
        if shares is not None:  # the teacher's label distribution: its log-probabilities, else its votes
            labelled[DISTRIBUTION_FIELD] = shares
        if self.keep_reasoning:
            labelled["reasoning"] = next((o.completion.reasoning for o in outs if o.answer == answer), "") or next(
                (o.completion.reasoning for o in outs if o.completion), "")
        return labelled, None, outs
