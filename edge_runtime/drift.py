"""Drift: is live traffic still like what the student was trained and measured on?

At `pack`, the bundle gets `drift_reference.json` (format `edge-drift-reference` v1, listed in
the manifest like every bundle file): per feature, the share of the training inputs in each
bin. At `serve`, the runtime keeps the last `window` task requests and compares them with
it by the population stability index per feature,

    PSI = sum over bins of (live_share - ref_share) * ln(live_share / ref_share)

(a live share is floored at half a request, 0.5 / n, and a reference share at half a reference
row, 0.5 / N: an empty bin in n requests says the share is under about 1/n, not that it is zero;
the character-class shares, pooled over characters, keep the 1e-4 floor). Rule of thumb: below
0.1 stable, 0.1 to 0.2 moving, above 0.2 shifted.

The flag, per feature, from `min_samples` live requests on (default 50): a feature is flagged
when its PSI is past BOTH

- the threshold (`serve --drift-threshold`, default 0.2): the shift is large enough to matter, and
- the noise bound: what two samples of the same traffic exceed with probability `alpha` (default
  0.001, `serve --drift-false-alarm`) at these sizes. For n live requests against a reference
  of N rows, PSI is to second order Pearson's chi-square statistic scaled by (1/n + 1/N), so
  its expectation is (k - 1)(1/n + 1/N) and the bound is

      noise = (1/n + 1/N) * chi2_quantile(1 - alpha, k - 1)

  with k the bins that hold reference or live traffic (Wilson-Hilferty for the quantile).

`edge_drift_flag` is up when any feature is flagged; with five features and alpha 0.001 each,
same-distribution traffic raises it in at most ~0.5% of windows of any size. Why both: at 50
requests one input in a bin the reference holds at 0.1% (or none of the 4% of 16-32 character
inputs) reads PSI 0.1-0.3 from noise alone, which the bound covers (~0.3 for 3 bins, ~1.2 for 31
labels); at 500 requests and more the bound is small and the threshold keeps a real but
negligible difference between training and live traffic from flagging. A reference built from
fewer than `PER_BIN` (10) rows per occupied bin (e.g. the confidences of a 40-row eval) is not a
sample the bound can trust (a 40-row eval is rarely a random one): it is not scored at all, and
`serve` says so once at start.

Features (as data, `FEATURES`):
- `chars`: input length in characters (log-spaced bins);
- `prompt_tokens`: the student's prompt length in tokens (present when pack could tokenize);
- `char_class`: the share of characters that are digits, latin letters, CJK, spaces,
  punctuation or other, pooled over the inputs;
- `confidence`: the student's confidence, from its answers on the dev split (the run's eval
  predictions; absent when the run has none);
- `label`: the label distribution of a classification task, from the run's largest labelled
  set: the curated training rows' answers or the eval split's gold labels (the student's dev
  answers only when it has neither). Live, the student's answers are counted: its errors move
  the label PSI a little (~0.05 over 500 requests for the 0.92-accurate intents-zh student),
  well under the threshold.

In `/metrics`: `edge_drift_psi{feature}`, `edge_drift_psi_noise{feature}` (the noise bound at the
window's size), `edge_drift_feature_flag{feature}` (0/1), `edge_drift_flag` (0/1),
`edge_drift_threshold`, `edge_drift_false_alarm_ratio` (alpha), `edge_drift_window_requests`.
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
DEFAULTS = {"threshold": 0.2, "window": 500, "min_samples": 50, "max_rows": 5000, "alpha": 0.001}
PER_BIN = 10  # reference rows per occupied bin before the reference is a sample the noise bound can trust
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


def psi(expected: list[float], actual: list[float], floor_expected: float = EPS, floor_actual: float = EPS) -> float:
    """PSI of `actual` against `expected` shares, each floored (an empty bin stays finite; a bin
    empty on both sides counts nothing)."""
    return sum((a - e) * math.log(a / e) for e, a in ((max(e, floor_expected), max(a, floor_actual))
                                                      for e, a in zip(expected, actual) if e > 0 or a > 0))


def chi2_quantile(p: float, df: int) -> float:
    """The p-quantile of chi-square with `df` degrees of freedom (Wilson-Hilferty; within ~3%
    for df >= 1 at the tails used here, on the high side for df 1-2)."""
    from statistics import NormalDist

    df = max(1, df)
    z = NormalDist().inv_cdf(p)
    return df * max(0.0, 1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def noise_bound(n: int, n_ref: int | None, bins: int, alpha: float = DEFAULTS["alpha"]) -> float:
    """The PSI two samples of the same traffic (n live, n_ref reference) exceed with
    probability ~alpha over `bins` occupied bins: (1/n + 1/N) * chi2_quantile(1 - alpha, bins - 1)."""
    return (1 / n + (1 / n_ref if n_ref else 0.0)) * chi2_quantile(1 - alpha, bins - 1)


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
                 window: int = DEFAULTS["window"], min_samples: int = DEFAULTS["min_samples"],
                 alpha: float = DEFAULTS["alpha"]):
        if threshold <= 0 or window < 1 or min_samples < 1 or not 0 < alpha < 1:
            raise ValueError("--drift-threshold must be > 0, --drift-window >= 1 and --drift-false-alarm in (0, 1)")
        self.reference = check_reference(reference)
        self.features = self.reference["features"]
        self.threshold, self.alpha, self.min_samples = threshold, alpha, min(min_samples, window)
        self._window: deque = deque(maxlen=window)
        self._lock = threading.Lock()
        self.unscored = {}  # features never scored, why
        for name, f in self.features.items():
            floor = PER_BIN * sum(1 for share in f["shares"] if share > 0)
            if f["kind"] != "shares" and isinstance(f.get("n"), int) and f["n"] < floor:
                self.unscored[name] = f"reference from {f['n']} rows, under {floor} ({PER_BIN} per occupied bin)"
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

    def evaluate(self) -> dict[str, dict[str, Any]]:
        """Per scored feature: `psi`, `n` (live requests), `noise` (the bound at n) and `flag`
        (PSI past both the threshold and the noise bound)."""
        with self._lock:
            window = list(self._window)
        out = {}
        for name, ref in self.features.items():
            if name in self.unscored:
                continue
            seen = [o[name] for o in window if o.get(name) is not None]
            if name == "label":
                seen = [o["label"] if o["label"] is not None else INVALID for o in window]
            if len(seen) < self.min_samples:
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
            if not sum(counts):
                continue
            n, n_ref = len(seen), ref.get("n") if isinstance(ref.get("n"), int) and ref["n"] > 0 else None
            if ref["kind"] == "shares":  # shares of characters: the 1e-4 floor (a request holds many characters)
                value = psi(ref["shares"], _shares(counts))
            else:  # half a request, half a reference row
                value = psi(ref["shares"], _shares(counts), 0.5 / n_ref if n_ref else EPS, 0.5 / n)
            bins = sum(1 for e, c in zip(ref["shares"], counts) if e > 0 or c > 0)
            noise = noise_bound(n, n_ref, bins, self.alpha)
            out[name] = {"psi": round(value, 6), "n": n, "noise": round(noise, 6),
                         "flag": value > self.threshold and value > noise}
        return out

    def scores(self) -> dict[str, float]:
        """PSI per feature that has a reference and enough live observations."""
        return {name: e["psi"] for name, e in self.evaluate().items()}

    def drifted(self, evaluation: dict[str, dict[str, Any]] | None = None) -> bool:
        evaluation = self.evaluate() if evaluation is None else evaluation
        return any(e["flag"] for e in evaluation.values())

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        ev = self.evaluate()
        g = GaugeMetricFamily("edge_drift_psi", "population stability index of live task inputs against the bundle's "
                              "training reference, per feature, over the sliding window", labels=["feature"])
        noise = GaugeMetricFamily("edge_drift_psi_noise", "the PSI sampling noise alone exceeds with probability "
                                  "edge_drift_false_alarm_ratio at the window's size, per feature", labels=["feature"])
        flag = GaugeMetricFamily("edge_drift_feature_flag", "1 when the feature's PSI is past both the threshold and "
                                 "its noise bound", labels=["feature"])
        for name, e in ev.items():
            g.add_metric([name], e["psi"])
            noise.add_metric([name], e["noise"])
            flag.add_metric([name], int(e["flag"]))
        yield g
        yield noise
        yield flag
        yield GaugeMetricFamily("edge_drift_flag", "1 when a feature's PSI is past the threshold and its noise bound",
                                value=int(self.drifted(ev)))
        yield GaugeMetricFamily("edge_drift_threshold", "the PSI threshold of the drift flag", value=self.threshold)
        yield GaugeMetricFamily("edge_drift_false_alarm_ratio", "per feature, the chance that same-distribution "
                                "traffic passes the noise bound", value=self.alpha)
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


def _reference_labels(run: RunLayout, task, max_rows: int) -> tuple[list[str] | None, str | None]:
    """The label reference of a classification run: the largest labelled set it has, the curated
    training rows' answers (what the student was taught) or the eval split's gold labels, the
    training rows on a tie; the student's dev answers only when the run has neither. Both are
    samples of the traffic's label prior and the noise bound shrinks with their size: a 40-row
    eval (the first rows, often a few labels) told nothing about 31 labels."""
    key = task.answer_keys()[0]
    candidates = []
    for path, field in ((run.train_rows, "answer"), (run.eval_split, "gold")):
        if path.is_file():
            found = [r.get(field) for r in read_jsonl(path, max_rows)]
            found = [str(a[key]) for a in found if isinstance(a, dict) and a.get(key) is not None]
            if found:
                candidates.append((found, f"{path.relative_to(run.root).as_posix()} {field}"))
    if candidates:
        return max(candidates, key=lambda c: len(c[0]))  # the first (training rows) on a tie
    for p in (*sorted(run.quantized_eval.glob(f"gguf-*/{PREDICTIONS_FILE}")), run.predictions("student")):
        if p.is_file():
            answers = [r.get("answer") for r in read_jsonl(p, max_rows)]
            return ([str(a.get(key)) if isinstance(a, dict) else INVALID for a in answers] or None,
                    f"{p.relative_to(run.root).as_posix()} answer")
    return None, None


def reference_for_run(run_dir: Path, task, model: Path | None = None, qtype: str | None = None,
                      max_rows: int = DEFAULTS["max_rows"]) -> dict[str, Any] | None:
    """The reference profile of a run: training inputs from `curate/train.jsonl` (else the
    eval split `teach/eval.jsonl`), the quantized student's confidences on the dev split from
    `quantize/eval/gguf-*/predictions.jsonl` (else `eval/student/`), and for classification the
    labels of the largest labelled set (`_reference_labels`). None when the run has no inputs
    to profile."""
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
    labels, label_src = (_reference_labels(run, task, max_rows) if task.kind == "classification" else (None, None))
    from edge_runtime.bundle import run_head

    tokens = _prompt_tokens(model, task, rows, head=run_head(run_dir) is not None) if model is not None else None
    source = {"inputs": src.relative_to(run_dir).as_posix(), "rows": len(rows),
              "dev_predictions": preds_path.relative_to(run_dir).as_posix() if preds_path else None}
    if labels:
        source["labels"] = {"from": label_src, "rows": len(labels)}
    return build_reference(inputs, prompt_tokens=tokens, confidences=confidences or None, labels=labels,
                           label_set=list(task.labels) if task.kind == "classification" and task.labels else None,
                           source=source)
