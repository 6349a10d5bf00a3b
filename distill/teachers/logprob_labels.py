"""A classification teacher's label distribution from the log-probabilities of its own reply.

An OpenAI-compatible endpoint asked for `logprobs` + `top_logprobs` returns, for every token of
the reply, the token it chose and the most likely alternatives at that step. The label value of
`{"label": "..."}` is spelled by a few of those tokens; walking them keeps, for each label, the
probability the teacher gave to spelling it: the chosen label gets the product of its tokens'
probabilities, and an alternative at step i that starts (or completes) other labels gets the
chosen prefix's probability times its own, shared among the labels it is consistent with. The
result is renormalised over the labels. It is exact where the labels part at one token, and
an honest approximation otherwise (mass beyond the top-k list is never seen).

Works on bytes, since a token may end inside a multi-byte character (Chinese labels); a reply
whose tokens do not spell its content, or that has no label value, gives None.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

LABEL_VALUE = re.compile(rb'"label"\s*:\s*"')


def _token_bytes(item: dict[str, Any]) -> bytes | None:
    raw = item.get("bytes")
    if isinstance(raw, list) and all(isinstance(b, int) and 0 <= b < 256 for b in raw):
        return bytes(raw)
    token = item.get("token")
    return token.encode("utf-8") if isinstance(token, str) else None


def _logprob(item: dict[str, Any]) -> float | None:
    value = item.get("logprob")
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def logprob_distribution(labels: list[str], content: str, logprobs: list[dict[str, Any]] | None) -> dict[str, float] | None:
    """{label: probability} read from a reply's token log-probabilities (OpenAI `logprobs.content`),
    or None where the reply cannot be read that way."""
    if not logprobs or not isinstance(logprobs, list):
        return None
    text = content.encode("utf-8")
    match = LABEL_VALUE.search(text)
    if match is None:
        return None
    start = match.end()
    end = text.find(b'"', start)
    if end < 0:
        return None
    chosen = text[start:end].decode("utf-8", errors="replace")
    encoded = {label: json.dumps(label, ensure_ascii=False)[1:-1].encode("utf-8") for label in labels}
    if chosen not in encoded:
        return None
    steps = []
    offset = 0
    for item in logprobs:
        if not isinstance(item, dict):
            return None
        token, lp = _token_bytes(item), _logprob(item)
        if token is None or lp is None:
            return None
        steps.append((offset, token, lp, item.get("top_logprobs") or []))
        offset += len(token)
    if b"".join(s[1] for s in steps) != text:
        return None  # the tokens do not spell the reply (a server that rewrote it): not readable
    mass = dict.fromkeys(labels, 0.0)
    prefix = 0.0  # log-probability of the chosen tokens so far, from the label value's first token
    for at, token, lp, top in steps:
        if at + len(token) <= start:
            continue  # before the value: common to every label
        for alt in top:
            alt_bytes, alt_lp = (_token_bytes(alt), _logprob(alt)) if isinstance(alt, dict) else (None, None)
            if alt_bytes is None or alt_lp is None or alt_bytes == token:
                continue
            spelled = text[:at] + alt_bytes
            if len(spelled) <= start or spelled[:start] != text[:start]:
                continue
            value = spelled[start:]
            if b'"' in value:
                fits = [lab for lab, enc in encoded.items() if enc == value[:value.index(b'"')]]
            else:
                fits = [lab for lab, enc in encoded.items() if enc.startswith(value)]
            for label in fits:
                mass[label] += math.exp(prefix + alt_lp) / len(fits)
        prefix += lp
        if at + len(token) > end:  # this token closes the value: the chosen label is spelled
            mass[chosen] += math.exp(prefix)
            break
    total = sum(mass.values())
    if total <= 0 or not math.isfinite(total):
        return None
    ranked = sorted(((label, m / total) for label, m in mass.items() if m > 0), key=lambda kv: -kv[1])
    return {label: round(p, 6) for label, p in ranked}


def mean_distribution(distributions: list[dict[str, float]]) -> dict[str, float] | None:
    """The average of several samples' distributions (self-consistency with log-probabilities)."""
    if not distributions:
        return None
    total: dict[str, float] = {}
    for dist in distributions:
        for label, p in dist.items():
            total[label] = total.get(label, 0.0) + p / len(distributions)
    return {label: round(p, 6) for label, p in sorted(total.items(), key=lambda kv: -kv[1])}
