"""Drift: is live traffic still like what the student was trained and measured on?

At `pack`, the bundle gets `drift_reference.json` (format `edge-drift-reference` v1, listed in
the manifest like every bundle file): per feature, the share of the training inputs in each
bin. At `serve`, the runtime keeps the last `window` task requests and compares them with
it by the population stability index per feature,

    PSI = sum over bins of (live_share - ref_share) * ln(live_share / ref_share)

(shares floored at 1e-4 so an empty bin is finite). Rule of thumb: below 0.1 stable, 0.1 to
0.2 moving, above 0.2 shifted. The flag rises when any feature passes the threshold
(`serve --drift-threshold`, default 0.2) with enough live requests seen.

Enough, per feature: sampling noise alone gives PSI of about (bins - 1) / n between two
samples of the same traffic (31 labels seen over 50 requests: ~0.6, past the threshold), so
a feature is scored only with `PER_BIN` (10) live requests per occupied reference bin, and at
least `min_samples` (the window, if smaller, caps it). A categorical or numeric reference
itself built from fewer rows than that (e.g. dev predictions of a 40-row eval for 31 labels)
is not scored at all, and said so once at start: re-pack from a run with a larger eval split.

Features (as data, `FEATURES`):
- `chars`: input length in characters (log-spaced bins);
- `prompt_tokens`: the student's prompt length in tokens (present when pack could tokenize);
- `char_class`: the share of characters that are digits, latin letters, CJK, spaces,
  punctuation or other, pooled over the inputs;
- `confidence`: the student's confidence, from its answers on the dev split (the run's eval
  predictions; absent when the run has none);
- `label`: the label distribution of a classification task (the student's dev answers, else
  the training labels).

In `/metrics`: `edge_drift_psi{feature}`, `edge_drift_flag` (0/1), `edge_drift_threshold`,
`edge_drift_window_requests`.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections import deque
from pathlib import Path
from typing import Any

from edge_runtime.gguf_types import split_type
from edge_runtime.layout import PREDICTIONS_FILE, RunLayout, read_jsonl

REFERENCE_FILE = "drift_reference.json"
REFERENCE_FORMAT = "edge-drift-reference"
REFERENCE_VERSION = 1
DEFAULTS = {"threshold": 0.2, "window": 500, "min_samples": 50, "max_rows": 5000}
PER_BIN = 10  # live (and reference) rows per occupied reference bin before a feature's PSI means anything
CHAR_CLASSES = ("digit", "latin", "cjk", "space", "punct", "other")
INVALID = "(invalid)"
FEATURES: dict[str, dict[str, Any]] = {
    "chars": {"kind": "numeric", "edges": [0, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192]},
    "prompt_tokens": {"kind": "numeric", "edges": [0, 32, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 2048]},
    "char_class": {"kind": "shares", "categories": list(CHAR_CLASSES)},
    "confidence": {"kind": "numeric", "edges": [round(i / 10, 1) for i in range(10)]},
    "label": {"kind": "categorical"},
}
_CLASS_RE = {
    "digit": re.compile(r"[0-9]"),
    "latin": re.compile(r"[A-Za-z\u00c0-\u024f]"),
    "cjk": re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]"),
    "space": re.compile(r"\s"),
    "punct": re.compile(r"[!-/:-@\[-`{-~\u3000-\u303f\uff01-\uff0f\uff1a-\uff20]"),
}
EPS = 1e-4
log = logging.getLogger("edge_runtime.drift")


def char_classes(text: str) -> list[int]:
    """Characters of `text` per class of CHAR_CLASSES."""
    counts = [len(_CLASS_RE[c].findall(text)) for c in CHAR_CLASSES[:-1]]
    return counts + [max(0, len(text) - sum(counts))]


def bin_index(value: float, edges: list[float]) -> int:
    """Bin i holds [edges[i], edges[i+1]); the last bin everything from edges[-1] up."""
    i = 0
    while i + 1 < len(edges) and value >= edges[i + 1]:
        i += 1
    return i


def _shares(counts: list[float]) -> list[float]:
    total = sum(counts)
    return [round(c / total, 6) for c in counts] if total else [0.0] * len(counts)


def psi(expected: list[float], actual: list[float]) -> float:
    return sum((a - e) * math.log(a / e) for e, a in ((max(e, EPS), max(a, EPS)) for e, a in zip(expected, actual)))


def build_reference(inputs: list[str], *, prompt_tokens: list[int] | None = None,
                    confidences: list[float] | None = None, labels: list[str] | None = None,
                    label_set: list[str] | None = None, source: dict[str, Any] | None = None) -> dict[str, Any]:
    """The reference profile of the training inputs (and dev answers), as stored in a bundle."""
    if not inputs:
        raise ValueError("a drift reference needs at least one input")
    feats: dict[str, Any] = {}
    feats["chars"] = _numeric("chars", [len(t) for t in inputs])
    if prompt_tokens:
        feats["prompt_tokens"] = _numeric("prompt_tokens", prompt_tokens)
    pooled = [0] * len(CHAR_CLASSES)
    for t in inputs:
        pooled = [a + b for a, b in zip(pooled, char_classes(t))]
    feats["char_class"] = {"kind": "shares", "categories": list(CHAR_CLASSES), "shares": _shares(pooled), "n": len(inputs)}
    if confidences:
        feats["confidence"] = _numeric("confidence", confidences)
    if labels:
        cats = list(label_set or sorted(set(labels))) + [INVALID]
        counts = [sum(1 for x in labels if (x if x in cats else INVALID) == c) for c in cats]
        feats["label"] = {"kind": "categorical", "categories": cats, "shares": _shares(counts), "n": len(labels)}
    return {"format": REFERENCE_FORMAT, "version": REFERENCE_VERSION, "source": source or {}, "features": feats}


def _numeric(name: str, values: list[float]) -> dict[str, Any]:
    edges = FEATURES[name]["edges"]
    counts = [0] * len(edges)
    for v in values:
        counts[bin_index(float(v), edges)] += 1
    return {"kind": "numeric", "edges": edges, "shares": _shares(counts), "n": len(values)}


def check_reference(ref: Any, where: str = REFERENCE_FILE) -> dict[str, Any]:
    """`ref` if it is a reference this runtime reads; ValueError naming the problem otherwise."""
    if not isinstance(ref, dict) or ref.get("format") != REFERENCE_FORMAT or ref.get("version") != REFERENCE_VERSION:
        raise ValueError(f"{where}: not an {REFERENCE_FORMAT} v{REFERENCE_VERSION} file; re-pack the bundle "
                         f"with this edge-runtime or upgrade edge-runtime")
    for name, f in (ref.get("features") or {}).items():
        if not isinstance(f, dict) or not isinstance(f.get("shares"), list) or \
                len(f["shares"]) != len(f.get("edges") or f.get("categories") or []):
            raise ValueError(f"{where}: feature {name!r} needs shares matching its edges or categories; re-pack the bundle")
    return ref


class DriftMonitor:
    """Live traffic over a sliding window against a reference; thread-safe `observe`."""

    def __init__(self, reference: dict[str, Any], threshold: float = DEFAULTS["threshold"],
                 window: int = DEFAULTS["window"], min_samples: int = DEFAULTS["min_samples"]):
        if threshold <= 0 or window < 1 or min_samples < 1:
            raise ValueError("--drift-threshold must be > 0 and --drift-window >= 1")
        self.reference = check_reference(reference)
        self.features = self.reference["features"]
        self.threshold, self.min_samples = threshold, min(min_samples, window)
        self._window: deque = deque(maxlen=window)
        self._lock = threading.Lock()
        self.needed, self.unscored = {}, {}  # live requests before a feature is scored; features never scored, why
        for name, f in self.features.items():
            floor = PER_BIN * sum(1 for share in f["shares"] if share > 0)
            if f["kind"] != "shares" and isinstance(f.get("n"), int) and f["n"] < floor:
                self.unscored[name] = f"reference from {f['n']} rows, under {floor} ({PER_BIN} per occupied bin)"
            else:  # pooled character shares count characters, not requests: min_samples is enough
                self.needed[name] = min(window, max(self.min_samples, floor if f["kind"] != "shares" else 0))
        if self.unscored:
            log.warning("drift: not scoring %s; re-pack the bundle from a run with a larger eval split",
                        "; ".join(f"{k}: {v}" for k, v in self.unscored.items()))

    def observe(self, text: str, *, confidence: float | None = None, label: str | None = None,
                prompt_tokens: int | None = None) -> None:
        self.observe_values(chars=len(text), char_counts=char_classes(text) if "char_class" in self.features else None,
                            confidence=confidence, label=label, prompt_tokens=prompt_tokens)

    def observe_values(self, *, chars: int | None, char_counts: list[int] | None = None, confidence: float | None = None,
                       label: str | None = None, prompt_tokens: int | None = None) -> None:
        """One request by its feature values (a log record without its input text has no char_counts)."""
        obs = {"chars": chars, "char_class": char_counts, "confidence": confidence, "label": label,
               "prompt_tokens": prompt_tokens or None}
        with self._lock:
            self._window.append(obs)

    def scores(self) -> dict[str, float]:
        """PSI per feature that has a reference and enough live observations."""
        with self._lock:
            window = list(self._window)
        out = {}
        for name, ref in self.features.items():
            if name not in self.needed:
                continue
            seen = [o[name] for o in window if o.get(name) is not None]
            if name == "label":
                seen = [o["label"] if o["label"] is not None else INVALID for o in window]
            if len(seen) < self.needed[name]:
                continue
            if ref["kind"] == "numeric":
                counts = [0] * len(ref["edges"])
                for v in seen:
                    counts[bin_index(float(v), ref["edges"])] += 1
            elif ref["kind"] == "shares":
                counts = [sum(col) for col in zip(*seen)]
            else:
                cats = ref["categories"]
                counts = [sum(1 for v in seen if (v if v in cats else INVALID) == c) for c in cats]
            if sum(counts):
                out[name] = round(psi(ref["shares"], _shares(counts)), 6)
        return out

    def drifted(self, scores: dict[str, float] | None = None) -> bool:
        scores = self.scores() if scores is None else scores
        return any(v > self.threshold for v in scores.values())

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        scores = self.scores()
        g = GaugeMetricFamily("edge_drift_psi", "population stability index of live task inputs against the bundle's "
                              "training reference, per feature, over the sliding window", labels=["feature"])
        for name, value in scores.items():
            g.add_metric([name], value)
        yield g
        yield GaugeMetricFamily("edge_drift_flag", "1 when a feature's PSI is past the threshold", value=int(self.drifted(scores)))
        yield GaugeMetricFamily("edge_drift_threshold", "the PSI threshold of the drift flag", value=self.threshold)
        yield GaugeMetricFamily("edge_drift_window_requests", "task requests in the drift window", value=len(self._window))


# ---- pack: the reference of a run -----------------------------------------------------
def _prompt_tokens(model: Path, task, examples: list[dict[str, Any]], head: bool = False) -> list[int] | None:
    """Token counts of what the student reads on the device: its prompt, or for a classifier
    head the input alone (`heads.head_input`), as the runtime reports them per request."""
    from edge_runtime.heads import head_input

    text_of = (lambda e: head_input(task, e)) if head else task.render_prompt
    try:
        from llama_cpp import Llama

        from edge_runtime.engines.llamacpp import quiet_llama_logs

        quiet_llama_logs()  # the vocab-only load's context warning stays out of pack's output
        llm = Llama(str(model), vocab_only=True, verbose=False)
    except Exception:  # informative only: the profile is still useful without token counts
        return None
    try:
        return [len(llm.tokenize(text_of(e).encode("utf-8"), add_bos=True, special=False)) for e in examples]
    except Exception:
        return None
    finally:
        close = getattr(llm, "close", None)
        if callable(close):
            close()


def reference_for_run(run_dir: Path, task, model: Path | None = None, qtype: str | None = None,
                      max_rows: int = DEFAULTS["max_rows"]) -> dict[str, Any] | None:
    """The reference profile of a run: training inputs from `curate/train.jsonl` (else the
    eval split `teach/eval.jsonl`), the quantized student's confidences and labels on the dev
    split from `quantize/eval/gguf-*/predictions.jsonl` (else `eval/student/`). None when the
    run has no inputs to profile."""
    run_dir = Path(run_dir)
    run = RunLayout(run_dir)
    src = next((p for p in (run.train_rows, run.eval_split) if p.is_file()), None)
    if src is None:
        return None
    rows = [r for r in read_jsonl(src, max_rows) if task.input_field in r]
    if not rows:
        return None
    inputs = [task.input_text(r) for r in rows]
    preds_path = None
    candidates = sorted(run.quantized_eval.glob(f"gguf-*/{PREDICTIONS_FILE}"))
    preferred = [p for p in candidates if qtype and split_type(qtype)[0] in p.parent.name]
    for p in (*preferred, *candidates, run.predictions("student")):
        if p.is_file():
            preds_path = p
            break
    preds = read_jsonl(preds_path, max_rows) if preds_path else []
    confidences = [float(p["confidence"]) for p in preds if isinstance(p.get("confidence"), (int, float))]
    labels = None
    if task.kind == "classification":
        key = task.answer_keys()[0]
        answers = [p.get("answer") for p in preds] if preds else [r.get("answer") for r in rows]
        labels = [str(a.get(key)) if isinstance(a, dict) else INVALID for a in answers]
    from edge_runtime.bundle import run_head

    tokens = _prompt_tokens(model, task, rows, head=run_head(run_dir) is not None) if model is not None else None
    source = {"inputs": src.relative_to(run_dir).as_posix(), "rows": len(rows),
              "dev_predictions": preds_path.relative_to(run_dir).as_posix() if preds_path else None}
    return build_reference(inputs, prompt_tokens=tokens, confidences=confidences or None, labels=labels,
                           label_set=list(task.labels) if task.kind == "classification" and task.labels else None,
                           source=source)
