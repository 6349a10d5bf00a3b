"""`edge-runtime compare OLD NEW --data FILE`: promote a candidate bundle only when it is
measurably better (issue #18, "promotion only when better").

Both bundles answer the same labelled rows; each row gets a score per bundle (the task's
`example_score`: 1/0 for a label or FAQ entry, the share of fields right for extraction).
The rows are paired, so the verdict rests on the per-row differences: a paired bootstrap
interval of the mean difference (NEW - OLD), and for 0/1 scores McNemar's exact test on the
rows where the two disagree. NEW is promoted when the interval's lower end is above
`--min-gain` (default 0: better with 95% confidence); otherwise the old bundle is kept.

Labelled rows come from a JSONL file (the task's input field plus `answer`, `gold` or
`label`: a teach/eval.jsonl of the run works), or from a request log directory (the teacher's
answers of escalated and shadow-sampled requests, `edge_runtime.request_log.teacher_answer`).
Runs on the device: no torch, no distill.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge_runtime.layout import iter_jsonl
from edge_runtime.task import TaskSpec, example_score

DEFAULTS = {"min_gain": 0.0, "level": 0.95, "bootstrap": 2000, "seed": 0}
REF_KEYS = ("answer", "gold", "label")  # where a row of a labelled JSONL file keeps its reference answer


def labelled_rows(task: TaskSpec, source: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    """`{"input": example, "ref": answer}` rows from a JSONL file or a request log directory."""
    source = Path(source)
    rows: list[dict[str, Any]] = []
    if source.is_dir():
        from edge_runtime.request_log import read_log, teacher_answer

        seen = set()
        for rec in read_log(source):
            ref = teacher_answer(rec)
            if rec.get("task") == task.name and ref is not None and "input" in rec and rec["input_sha256"] not in seen:
                seen.add(rec["input_sha256"])
                rows.append({"input": {task.input_field: rec["input"]}, "ref": ref})
    elif source.is_file():
        for n, row in iter_jsonl(source):
            if task.input_field not in row:
                raise ValueError(f"{source}:{n}: no {task.input_field!r} (the task's input field) in this row")
            ref = next((row[k] for k in REF_KEYS if row.get(k) not in (None, "")), None)
            if isinstance(ref, str):
                ref = {task.answer_keys()[0]: ref}
            if not isinstance(ref, dict):
                raise ValueError(f"{source}:{n}: no reference answer; give it as one of {', '.join(REF_KEYS)}")
            rows.append({"input": {task.input_field: row[task.input_field]}, "ref": ref})
    else:
        raise FileNotFoundError(f"--data {source}: no such file or log directory")
    if not rows:
        raise ValueError(f"--data {source}: no labelled rows for task {task.name!r} (a log needs escalated or "
                         f"shadow-sampled requests logged with --log-inputs full or masked)")
    return rows[:limit] if limit else rows


def paired_bootstrap(diff: np.ndarray, samples: int, level: float, seed: int) -> tuple[float, float]:
    """Percentile interval of the mean of paired differences, resampling rows (fixed seed)."""
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, size=(samples, diff.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


def mcnemar_exact(only_old: int, only_new: int) -> float:
    """Two-sided exact McNemar p-value: under "equally good" the rows only one bundle gets
    right split like fair coin flips."""
    n = only_old + only_new
    if n == 0:
        return 1.0
    k = min(only_old, only_new)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def verdict(old: list[float], new: list[float], min_gain: float = DEFAULTS["min_gain"],
            level: float = DEFAULTS["level"], samples: int = DEFAULTS["bootstrap"], seed: int = DEFAULTS["seed"]) -> dict[str, Any]:
    """The comparison of two bundles' per-row scores on the same rows: promote or keep."""
    a, b = np.asarray(old, dtype=float), np.asarray(new, dtype=float)
    if a.size != b.size or a.size == 0:
        raise ValueError(f"compare needs the same rows scored for both bundles (got {a.size} and {b.size})")
    diff = b - a
    lo, hi = paired_bootstrap(diff, samples, level, seed)
    out: dict[str, Any] = {"rows": int(a.size), "old": float(a.mean()), "new": float(b.mean()),
                           "difference": float(diff.mean()), "ci": [lo, hi], "level": level, "min_gain": min_gain}
    if set(np.unique(np.concatenate([a, b]))) <= {0.0, 1.0}:
        only_old, only_new = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
        out["mcnemar"] = {"only_old_right": only_old, "only_new_right": only_new, "p": mcnemar_exact(only_old, only_new)}
    out["promote"] = bool(lo > min_gain)
    return out


def score_bundle(bundle, rows: list[dict[str, Any]], n_threads: int | None = None,
                 progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Each row answered by the bundle's student (no escalation) and scored against its reference."""
    from edge_runtime.engines import bundle_predictor

    pred = bundle_predictor(bundle, n_threads=n_threads)
    out = []
    try:
        for i, row in enumerate(rows):
            p = pred.predict(row["input"])
            out.append({"answer": p.answer, "score": example_score(bundle.task, p.answer, row["ref"])})
            if progress and (i + 1) % 10 == 0:
                progress(f"{i + 1}/{len(rows)}")
    finally:
        pred.close()
    return out


def same_task(old, new) -> None:
    """Refuse to compare bundles that do not answer the same task the same way."""
    a, b = old.task, new.task
    if (a.name, a.kind, a.input_field, a.answer_keys()) != (b.name, b.kind, b.input_field, b.answer_keys()):
        raise ValueError(f"the bundles answer different tasks: OLD {a.name!r} ({a.kind}, {a.answer_keys()}), "
                         f"NEW {b.name!r} ({b.kind}, {b.answer_keys()}); compare bundles of the same task")


def compare(old_path: str | Path, new_path: str | Path, data: str | Path, *, limit: int | None = None,
            min_gain: float = DEFAULTS["min_gain"], level: float = DEFAULTS["level"],
            samples: int = DEFAULTS["bootstrap"], n_threads: int | None = None) -> dict[str, Any]:
    from edge_runtime.bundle import load_bundle

    old, new = load_bundle(old_path), load_bundle(new_path)
    same_task(old, new)
    rows = labelled_rows(new.task, data, limit)
    a = score_bundle(old, rows, n_threads)
    b = score_bundle(new, rows, n_threads)
    result = verdict([r["score"] for r in a], [r["score"] for r in b], min_gain, level, samples)
    result.update({"old_bundle": str(old_path), "new_bundle": str(new_path), "data": str(data)})
    return result


def summary(r: dict[str, Any]) -> str:
    pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
    lines = [f"rows            {r['rows']}  ({r['data']})",
             f"OLD             {pct(r['old'])}  {r['old_bundle']}",
             f"NEW             {pct(r['new'])}  {r['new_bundle']}",
             f"NEW - OLD       {100 * r['difference']:+.1f} points, {int(100 * r['level'])}% paired bootstrap CI "
             f"[{100 * r['ci'][0]:+.1f}, {100 * r['ci'][1]:+.1f}]"]
    if "mcnemar" in r:
        m = r["mcnemar"]
        lines.append(f"McNemar         only OLD right {m['only_old_right']}, only NEW right {m['only_new_right']}, "
                     f"p = {m['p']:.3g}")
    if r["promote"]:
        lines.append(f"verdict         PROMOTE: NEW is better (the interval's lower end is above {100 * r['min_gain']:+.1f} points)")
    else:
        lines.append(f"verdict         KEEP OLD: the interval's lower end is not above {100 * r['min_gain']:+.1f} points "
                     f"(more labelled rows narrow it)")
    return "\n".join(lines)
