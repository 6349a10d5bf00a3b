"""Small and large together: a student answer carries a confidence, and when it falls
below the bundle's threshold the request goes to the teacher (any OpenAI-compatible
endpoint) if one is configured and reachable. An unreachable teacher never fails the
request: the student's answer comes back flagged low-confidence. Escalations are counted
and costed so the saving of running small is visible.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from edge_runtime.budget import EscalationBudget
from edge_runtime.normalise import value_spans
from edge_runtime.predictor import Prediction
from edge_runtime.privacy import DEFAULTS as PRIVACY_DEFAULTS
from edge_runtime.privacy import AuditLog, Masker, is_local, strip_userinfo, usage_of
from edge_runtime.task import NO_ANSWER, TaskSpec


# ---- confidence ---------------------------------------------------------------
def _squash(text: str) -> str:
    return re.sub(r"[\s,]+", "", unicodedata.normalize("NFKC", text)).upper()  # full-width ￥，（ as ASCII


def value_in_input(task: TaskSpec, example: dict[str, Any], key: str, value: str) -> bool:
    """An extracted value must be copied from the input (spaces, commas and case aside;
    an amount may drop its currency; a date or amount may be normalised: 2024-03-05 for 2024年3月5日)."""
    if not value.strip():
        return True
    source = _squash(task.input_text(example))
    if _squash(value) in source:
        return True
    kind = task.fields[key].type if task.kind == "extraction" else "text"
    if kind in ("date", "amount") and any(task.normalise(key, s) == task.normalise(key, value)
                                          for s in value_spans(task.input_text(example), kind)):
        return True
    if kind == "amount":
        digits = re.sub(r"[^0-9.]", "", value)
        return bool(digits) and digits in re.sub(r"[^0-9.]", "", task.input_text(example))
    return False


def _value_spans(text: str, keys: list[str]) -> dict[str, tuple[int, int]]:
    """Byte span of each key's string value in the model's raw JSON text."""
    spans = {}
    decoder = json.JSONDecoder()
    for key in keys:
        m = re.search(r'"%s"\s*:\s*"' % re.escape(key), text)
        if not m:
            continue
        start = m.end() - 1
        try:
            _, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            continue
        spans[key] = (len(text[: start + 1].encode()), len(text[: end - 1].encode()))
    return spans


def answer_confidence(task: TaskSpec, example: dict[str, Any], answer: dict[str, Any], text: str,
                      token_ends: list[int], token_probs: list[float], *,
                      parts: dict[str, Any] | None = None) -> tuple[float, dict[str, float]]:
    """(overall, per key). Classification: the probability of the label's tokens.
    Extraction: per field the geometric mean of its value tokens' probabilities, zero when
    the value does not occur in the input; overall is the weakest field. FAQ: the id's
    token probability combined with the retrieval evidence (see `faq_confidence`).
    `token_ends[i]` is the byte offset where token i's text ends. `parts`, when given, is
    filled with what the overall confidence was made of (the task endpoint returns it)."""
    if token_ends and token_ends[-1] != len(text.encode()) and token_ends[-1]:
        scale = len(text.encode()) / token_ends[-1]  # detokenising alone may drop a leading space
        token_ends = [round(e * scale) for e in token_ends]
    spans = _value_spans(text, task.answer_keys())
    per: dict[str, float] = {}
    token_scores: dict[str, float] = {}
    in_input = True
    for key in task.answer_keys():
        lo, hi = spans.get(key, (0, 0))
        logs, begin = [], 0
        for end, p in zip(token_ends, token_probs):
            if end > lo and begin < hi:
                logs.append(math.log(max(p, 1e-12)))
            begin = end
        if task.kind == "extraction":
            score = token_scores[key] = math.exp(sum(logs) / len(logs)) if logs else 1.0
            if not value_in_input(task, example, key, str(answer.get(key, ""))):
                score, in_input = 0.0, False
        else:
            score = token_scores[key] = math.exp(sum(logs)) if logs else 1.0
        per[key] = round(score, 4)
    info: dict[str, Any]
    if task.kind == "faq":
        conf, info = faq_confidence(task, example, str(answer.get("faq_id", "")), token_scores.get("faq_id", 0.0))
        per["faq_id"] = round(conf, 4)
    elif task.kind == "extraction":
        info = {"token": round(min(token_scores.values()), 4) if token_scores else 0.0, "values_in_input": in_input}
    else:
        info = {"token": per.get("label", 0.0)}
    if parts is not None:
        parts.update(info)
    return (min(per.values()) if per else 0.0), per


def retrieval_evidence(task: TaskSpec, example: dict[str, Any], faq_id: str) -> dict[str, Any] | None:
    """How well BM25 over the task's whole knowledge base supports answering `faq_id` for
    this query; None when the task has no knowledge base (candidates came from elsewhere).

    For an entry: `retrieval` = s_chosen / (s_chosen + s_rival), where s_rival is the best
    score of any other entry: 1 when only the chosen entry matches, 0.5 on a tie, below 0.5
    when another entry outscores it, 0 when it shares no word with the query.
    For "none": 1 when no entry shares a word with the query, else 1 minus the share of the
    query's idf weight that the top entry covers (a top entry holding every query word
    argues against "none")."""
    if task.kind != "faq" or not task.knowledge_base:
        return None
    import numpy as np

    from edge_runtime.retrieval import tokenize

    kb = task.knowledge()
    query = tokenize(task.input_text(example))
    scores = kb._bm25.scores(query)
    order = np.argsort(-scores, kind="stable")
    top = float(scores[order[0]])
    ev: dict[str, Any] = {"top_id": kb.ids[int(order[0])] if top > 0 else None, "top_score": round(top, 4)}
    if faq_id == NO_ANSWER:
        if top <= 0:
            return {**ev, "retrieval": 1.0}
        bm = kb._bm25
        n_docs = len(kb)
        weights = {t: float(bm.idf[bm.vocab[t]]) if t in bm.vocab else math.log1p((n_docs + 0.5) / 0.5) for t in set(query)}
        row = bm.tf[int(order[0])]
        covered = sum(w for t, w in weights.items() if t in bm.vocab and row[bm.vocab[t]] > 0)
        return {**ev, "retrieval": round(1.0 - covered / sum(weights.values()), 4)}
    if faq_id not in kb.ids:
        return {**ev, "retrieval": 0.0, "chosen_score": 0.0, "rank": None}
    i = kb.ids.index(faq_id)
    chosen = float(scores[i])
    rival = float(np.max(np.delete(scores, i))) if len(kb) > 1 else 0.0
    rank = int(np.nonzero(order == i)[0][0]) + 1
    share = chosen / (chosen + rival) if chosen + rival > 0 else 0.0
    return {**ev, "retrieval": round(share, 4), "chosen_score": round(chosen, 4), "runner_up_score": round(rival, 4),
            "rank": rank if chosen > 0 else None}


def faq_confidence(task: TaskSpec, example: dict[str, Any], faq_id: str, token_prob: float) -> tuple[float, dict[str, Any]]:
    """(confidence, parts) of a FAQ answer: confidence = sqrt(token * retrieval), the
    geometric mean of the id's token probability and the retrieval evidence of
    `retrieval_evidence`, so either one being weak pulls the answer below the threshold.
    Without a knowledge base it is the token probability alone."""
    ev = retrieval_evidence(task, example, faq_id)
    parts: dict[str, Any] = {"token": round(token_prob, 4)}
    if ev is None:
        return token_prob, {**parts, "retrieval": None}
    parts.update(ev)
    return math.sqrt(max(token_prob, 0.0) * ev["retrieval"]), parts


# ---- escalation -----------------------------------------------------------------
@dataclass
class TeacherEndpoint:
    base_url: str
    model: str
    api_key: str = ""
    timeout_s: float = 30.0
    usd_per_1k_input: float = 0.0
    usd_per_1k_output: float = 0.0
    price_source: str = "none"
    mask: bool = PRIVACY_DEFAULTS["mask"]  # mask PII before sending (remote teachers only)
    local_hosts: tuple[str, ...] = PRIVACY_DEFAULTS["local_hosts"]
    audit: AuditLog | None = None  # one line per HTTP call to a remote teacher

    @property
    def remote(self) -> bool:
        return not is_local(self.base_url, self.local_hosts)


DEFAULT_TEACHER_KEY_ENV = "EDGE_TEACHER_API_KEY"
log = logging.getLogger("edge_runtime.router")


def operator_teacher(generation: dict[str, Any], url: str | None, model: str | None = None,
                     key_env: str | None = None, price_input_per_m: float | None = None,
                     price_output_per_m: float | None = None, *, mask: bool = PRIVACY_DEFAULTS["mask"],
                     local_hosts: tuple[str, ...] | None = None, audit_log: str | None = None,
                     audit_content: bool = PRIVACY_DEFAULTS["audit_content"]) -> TeacherEndpoint | None:
    """The teacher the operator enabled at serve time, or None (no escalation).

    A bundle is data from elsewhere: its generation.json `teacher` (URL, model, key variable)
    is only a suggestion. Escalation happens only when the operator names the URL; the key is
    read from the environment variable the operator names (default EDGE_TEACHER_API_KEY),
    never from the one the bundle names, so a bundle cannot send a secret anywhere. The
    prices (USD per million prompt / completion tokens) cost each escalation; not given, they
    are the model's list prices from `edge_runtime/prices.yaml` (0 for a model not listed).
    `mask`: PII is masked before it goes to a teacher outside `local_hosts` (restored in the
    answer); `audit_log`: a JSONL file that gets one line per HTTP call to such a teacher."""
    if not url:
        return None
    suggested = generation.get("teacher") or {}
    model = model or (suggested.get("model") if isinstance(suggested, dict) else None) or "teacher"
    key = os.environ.get(key_env or DEFAULT_TEACHER_KEY_ENV, "")
    source = "--teacher-price-*-per-m"
    if price_input_per_m is None and price_output_per_m is None:
        from edge_runtime.prices import lookup

        found = lookup(str(model))
        price_input_per_m, price_output_per_m = (found[1][0], found[1][2]) if found else (0.0, 0.0)
        source = f"list price of {found[0]!r} (edge_runtime/prices.yaml)" if found else "none (unknown model: $0)"
    price_input_per_m, price_output_per_m = price_input_per_m or 0.0, price_output_per_m or 0.0
    for name, price in (("--teacher-price-input-per-m", price_input_per_m), ("--teacher-price-output-per-m", price_output_per_m)):
        if not (0 <= price < math.inf):
            raise ValueError(f"{name} must be a finite number of USD >= 0 (got {price!r})")
    teacher = TeacherEndpoint(base_url=url, model=str(model), api_key=key, usd_per_1k_input=price_input_per_m / 1000,
                              usd_per_1k_output=price_output_per_m / 1000, price_source=source, mask=mask,
                              local_hosts=tuple(local_hosts if local_hosts is not None else PRIVACY_DEFAULTS["local_hosts"]))
    if audit_log:
        teacher.audit = AuditLog(audit_log, content=audit_content)
    log.info("escalation to %s (%s): priced by %s; %s", strip_userinfo(url), model, source,
             "local, sent as is" if not teacher.remote else ("remote, PII masked" if mask else "remote, NOT masked"))
    return teacher


def suggested_teacher(generation: dict[str, Any]) -> str | None:
    """The teacher URL a bundle suggests (for a note at start), without any credentials in it."""
    t = generation.get("teacher")
    url = t.get("base_url") if isinstance(t, dict) else None
    return strip_userinfo(url) if isinstance(url, str) and url else None


@dataclass
class RouterStats:
    escalations: int = 0
    teacher_failures: int = 0
    cost_usd: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {"escalations": self.escalations, "teacher_failures": self.teacher_failures,
                "cost_usd": round(self.cost_usd, 6)}


class Router:
    """Decides between the student's answer and the teacher's."""

    def __init__(self, task: TaskSpec, threshold: float, teacher: TeacherEndpoint | None = None,
                 budget: EscalationBudget | None = None):
        self.task, self.threshold, self.teacher = task, threshold, teacher
        self.budget = budget  # the hourly escalation budget (edge_runtime.budget); None: unlimited
        self.stats = RouterStats()
        self._format = 0  # index into FORMATS: the strictest JSON mode the teacher accepted

    def route(self, example: dict[str, Any], student: Prediction) -> dict[str, Any]:
        """The response body for a task request: answer, confidence, source and flags."""
        confidence = student.confidence if student.confidence is not None else 0.0
        body: dict[str, Any] = {
            "answer": student.answer, "confidence": round(confidence, 4), "source": "student",
            "low_confidence": confidence < self.threshold, "threshold": self.threshold,
            "field_confidence": student.extra.get("field_confidence", {}),
            "confidence_parts": student.extra.get("confidence_parts", {}),
            "usage": {"prompt_tokens": student.prompt_tokens, "completion_tokens": student.completion_tokens},
        }
        if "alternatives" in student.extra:  # a classifier head's next most likely labels
            body["alternatives"] = student.extra["alternatives"]
        if student.answer is None:
            body["problems"] = student.problems
        if not body["low_confidence"] or self.teacher is None:
            return body
        ticket = None
        if self.budget is not None:
            ticket, why = self.budget.acquire()
            if ticket is None:  # spent: the student's answer, flagged, never an error
                body.update(escalation_skipped="budget", escalation_skipped_reason=why)
                return body
        cost = 0.0
        try:
            answer, usage, cost = self.ask_teacher(example)
        except TeacherError as exc:
            with self.stats.lock:
                self.stats.teacher_failures += 1
            log.warning("escalation failed: %s", exc)  # the detail stays in the operator's log
            body["escalation_error"] = exc.public
            return body
        finally:
            if ticket is not None:
                self.budget.settle(ticket, cost)
        with self.stats.lock:
            self.stats.escalations += 1
            self.stats.cost_usd += cost
        body.update(answer=answer, source="teacher", low_confidence=False, escalated=True,
                    student_answer=student.answer, student_confidence=body["confidence"],
                    teacher_usage=usage, cost_usd=round(cost, 6))
        return body

    # Ways to ask for JSON, strictest first. llama.cpp's server answers json_schema with a 500
    # and DeepSeek documents only json_object, so a refusal moves the router to the next one.
    FORMATS = ("json_schema", "json_object", "none")

    def _payload(self, example: dict[str, Any], fmt: str, masker: Masker | None = None) -> dict[str, Any]:
        t = self.teacher
        prompt = self.task.render_teacher_prompt(example)
        payload: dict[str, Any] = {
            "model": t.model, "temperature": 0,
            "messages": [{"role": "user", "content": masker.mask(prompt) if masker else prompt}],
        }
        if fmt == "json_schema":
            payload["response_format"] = {"type": "json_schema", "json_schema": {
                "name": self.task.name, "schema": self.task.json_schema(), "strict": True}}
        elif fmt == "json_object":
            payload["response_format"] = {"type": "json_object"}
        return payload

    def _post(self, url: str, body: bytes, headers: dict[str, str], masker: Masker | None, stage: str):
        """One HTTP call, written to the audit log (remote teachers) whatever its outcome."""
        import httpx

        t = self.teacher
        status, text, error = 0, "", None
        try:
            resp = httpx.post(url, content=body, headers=headers, timeout=t.timeout_s)
            status, text = resp.status_code, resp.text
            return resp
        except httpx.HTTPError as exc:
            error = exc.__class__.__name__
            raise
        finally:
            if t.audit is not None and t.remote:
                p, c = usage_of(text) if status == 200 else (0, 0)
                try:
                    t.audit.record(stage=stage, endpoint=url, model=t.model, sent=body, status=status, prompt_tokens=p,
                                   completion_tokens=c, masked=masker.masked if masker else None, error=error)
                except OSError as exc:  # an unaudited call is a failed one: the student's answer stands
                    raise TeacherError(f"the audit log {t.audit.path} cannot be written: {exc}",
                                       "escalation unavailable") from exc

    def ask_teacher(self, example: dict[str, Any], stage: str = "escalation") -> tuple[dict[str, Any], dict[str, int], float]:
        """(answer, usage, cost) from the teacher. PII is masked first when the teacher is
        remote and masking is on; the values are restored in the answer."""
        import httpx

        t = self.teacher
        assert t is not None
        headers = {"Authorization": f"Bearer {t.api_key}"} if t.api_key else {}
        headers["Content-Type"] = "application/json"
        url = t.base_url.rstrip("/") + "/chat/completions"
        masker = Masker() if t.mask and t.remote else None
        start = time.perf_counter()
        while True:
            fmt = self.FORMATS[self._format]
            body = json.dumps(self._payload(example, fmt, masker), ensure_ascii=False).encode("utf-8")
            try:
                resp = self._post(url, body, headers, masker, stage)
            except httpx.HTTPError as exc:
                raise TeacherError(f"teacher at {strip_userinfo(t.base_url)} unreachable: {exc.__class__.__name__}: {exc}",
                                   f"teacher unreachable ({exc.__class__.__name__})") from exc
            refused = resp.status_code in (400, 422) or (resp.status_code >= 500 and "response_format" in resp.text)
            if fmt != "none" and refused:
                with self.stats.lock:  # only the first request to see the refusal moves on
                    if self.FORMATS[self._format] == fmt:
                        self._format += 1
                continue
            break
        if resp.status_code != 200:
            raise TeacherError(f"teacher at {strip_userinfo(t.base_url)} answered HTTP {resp.status_code}: {resp.text[:200]}",
                               f"teacher answered HTTP {resp.status_code}")
        try:
            data = resp.json()
            text = data["choices"][0]["message"]["content"] or ""
            text = masker.restore(text) if masker else text
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise TeacherError(f"teacher at {strip_userinfo(t.base_url)} sent a malformed response: {exc}",
                               "teacher sent a malformed response") from exc
        answer, problems = self.task.parse(text)
        if answer is None:
            raise TeacherError(f"teacher answer is not valid for task {self.task.name}: {problems}",
                               f"teacher answer is not valid for task {self.task.name}")
        usage = data.get("usage") or {}
        cost = (usage.get("prompt_tokens", 0) * t.usd_per_1k_input + usage.get("completion_tokens", 0) * t.usd_per_1k_output) / 1000
        usage = {"prompt_tokens": usage.get("prompt_tokens", 0), "completion_tokens": usage.get("completion_tokens", 0),
                 "latency_s": round(time.perf_counter() - start, 3)}
        return answer, usage, cost


class TeacherError(RuntimeError):
    """An escalation that failed. `str()` has the detail for the operator's log; `public` is
    what a client may see (no teacher URL, no teacher error body)."""

    def __init__(self, message: str, public: str | None = None):
        super().__init__(message)
        self.public = public or "escalation to the teacher failed"
