"""`edge-runtime report LOGDIR`: what a request log says, as a table and a small HTML page.

The table: requests, the time they span, escalation rate, failed escalations, mean student
confidence, schema-valid share, latency p50/p95 (the request's wall time in the handler),
answer-cache hit rate, teacher cost, and shadow agreement with a 95% Wilson interval when
the log has shadow-sampled records (a `shadow` object with a boolean `agree`). With
`--bundle BUNDLE`, drift: PSI per feature of the whole log against the bundle's reference.

The page (`report.html` in LOGDIR unless `--html PATH`) holds the same table and a plot of
confidence, latency and the running escalation rate over the requests. Plotting needs
matplotlib (the `full` extra: `pip install edge-distill[full]`); without it the page is
written without the plot and the command says so.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

from edge_runtime.request_log import read_log


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(records)
    conf = [float(r["confidence"]) for r in records if isinstance(r.get("confidence"), (int, float))]
    lat = [float(r["total_s"]) for r in records if isinstance(r.get("total_s"), (int, float))]
    escalated = sum(1 for r in records if r.get("escalated"))
    cached = sum(1 for r in records if r.get("cached"))
    shadow = [bool(r["shadow"]["agree"]) for r in records
              if isinstance(r.get("shadow"), dict) and isinstance(r["shadow"].get("agree"), bool)]
    out: dict[str, Any] = {
        "requests": n, "first": records[0].get("ts") if n else None, "last": records[-1].get("ts") if n else None,
        "escalation_rate": escalated / n if n else None,
        "escalation_failures": sum(1 for r in records if r.get("escalation_error")),
        "mean_confidence": sum(conf) / len(conf) if conf else None,
        "valid_rate": sum(1 for r in records if r.get("valid")) / n if n else None,
        "latency_p50_s": _pct(lat, 50), "latency_p95_s": _pct(lat, 95),
        "cache_hit_rate": cached / n if n else None,
        "cost_usd": round(sum(float(r.get("cost_usd") or 0) for r in records), 6),
        "tasks": sorted({str(r.get("task")) for r in records}), "bundles": len({r.get("bundle") for r in records}),
    }
    if shadow:
        lo, hi = wilson(sum(shadow), len(shadow))
        out["shadow"] = {"n": len(shadow), "agreement": sum(shadow) / len(shadow), "ci95": [lo, hi]}
    return out


def log_drift(records: list[dict[str, Any]], bundle_path: str | Path, threshold: float | None = None) -> dict[str, Any]:
    """PSI per feature of the logged requests against a bundle's drift reference (all of the
    log is the window). Inputs kept in the log (`full`, `masked`) give the character classes;
    `hash` records give lengths, confidence, tokens and labels only."""
    from edge_runtime.bundle import load_bundle
    from edge_runtime.drift import DEFAULTS, REFERENCE_FILE, DriftMonitor, char_classes

    bundle = load_bundle(bundle_path)
    ref = bundle.read_json(REFERENCE_FILE)
    if ref is None:
        raise ValueError(f"{bundle_path}: the bundle has no {REFERENCE_FILE}; re-pack it with `edge-runtime pack` "
                         f"from a run directory that has curate/train.jsonl")
    mon = DriftMonitor(ref, threshold or DEFAULTS["threshold"], window=max(1, len(records)),
                       min_samples=min(DEFAULTS["min_samples"], max(1, len(records))))
    task = bundle.task
    for r in records:
        text = r.get("input")
        if isinstance(text, list):
            text = "\n".join(map(str, text))
        student = r.get("student_answer")
        label = str(student.get(task.answer_keys()[0])) if task.kind == "classification" and isinstance(student, dict) else None
        mon.observe_values(chars=r.get("input_chars"), char_counts=char_classes(text) if isinstance(text, str) else None,
                           confidence=r.get("confidence"), label=label, prompt_tokens=r.get("prompt_tokens"))
    ev = mon.evaluate()
    return {"psi": {k: e["psi"] for k, e in ev.items()}, "noise": {k: e["noise"] for k, e in ev.items()},
            "threshold": mon.threshold, "flag": mon.drifted(ev)}


def _fmt(v: Any, kind: str = "") -> str:
    if v is None:
        return "-"
    if kind == "%":
        return f"{100 * v:.1f}%"
    if kind == "s":
        return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    s = summary
    out = [("requests", _fmt(s["requests"])), ("from", _fmt(s["first"])), ("to", _fmt(s["last"])),
           ("tasks", ", ".join(s["tasks"]) or "-"), ("bundles", _fmt(s["bundles"])),
           ("escalation rate", _fmt(s["escalation_rate"], "%")), ("failed escalations", _fmt(s["escalation_failures"])),
           ("mean confidence", _fmt(s["mean_confidence"])), ("schema-valid", _fmt(s["valid_rate"], "%")),
           ("latency p50", _fmt(s["latency_p50_s"], "s")), ("latency p95", _fmt(s["latency_p95_s"], "s")),
           ("cache hit rate", _fmt(s["cache_hit_rate"], "%")), ("teacher cost", f"${s['cost_usd']:.4f}")]
    sh = s.get("shadow")
    out.append(("shadow agreement", f"{100 * sh['agreement']:.1f}% (95% CI {100 * sh['ci95'][0]:.1f}-"
                f"{100 * sh['ci95'][1]:.1f}%, n={sh['n']})" if sh else "- (no shadow-sampled requests)"))
    d = s.get("drift")
    if d:
        psi = ", ".join(f"{k} {v:.3f}" for k, v in d["psi"].items()) or "too few requests"
        out.append(("drift", f"{'DRIFTED' if d['flag'] else 'stable'} (PSI past {d['threshold']:g} and its noise bound flags): {psi}"))
    return out


def table(summary: dict[str, Any]) -> str:
    r = rows(summary)
    width = max(len(k) for k, _ in r)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in r)


def plot_png(records: list[dict[str, Any]]) -> bytes | None:
    """The plot as PNG bytes; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    idx = list(range(1, len(records) + 1))
    fig, axes = plt.subplots(3, 1, figsize=(7, 6.5), sharex=True)
    axes[0].plot(idx, [r.get("confidence") or 0 for r in records], ".", ms=3)
    axes[0].set_ylabel("confidence")
    axes[1].plot(idx, [r.get("total_s") or 0 for r in records], ".", ms=3)
    axes[1].set_ylabel("latency (s)")
    esc, running = 0, []
    for i, r in enumerate(records, 1):
        esc += bool(r.get("escalated"))
        running.append(esc / i)
    axes[2].plot(idx, running)
    axes[2].set_ylabel("escalation rate")
    axes[2].set_xlabel("request")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def write_html(summary: dict[str, Any], records: list[dict[str, Any]], path: Path) -> bool:
    """Write the page; True when it has the plot."""
    png = plot_png(records)
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows(summary))
    figure = (f'<img alt="confidence, latency and escalation rate per request" src="data:image/png;base64,'
              f'{base64.b64encode(png).decode()}">' if png else
              "<p>No plot: matplotlib is not installed (<code>pip install edge-distill[full]</code>).</p>")
    Path(path).write_text(
        "<!doctype html><meta charset=utf-8><title>edge-runtime report</title>"
        "<style>body{font-family:sans-serif;max-width:760px;margin:2em auto}th{text-align:left;padding-right:1em}</style>"
        f"<h1>Request log report</h1><table>{body}</table>{figure}\n", encoding="utf-8")
    return png is not None


def report(logdir: str | Path, html_path: str | Path | None = None, bundle: str | Path | None = None,
           drift_threshold: float | None = None) -> tuple[str, dict[str, Any], str]:
    """(table text, summary, a note about the page) for `edge-runtime report`; with `bundle`,
    the log's drift against that bundle's reference too."""
    records = list(read_log(logdir))
    if not records:
        raise ValueError(f"{logdir}: the log has no records yet (serve with --log-dir {logdir} and send task requests)")
    summary = summarise(records)
    if bundle is not None:
        summary["drift"] = log_drift(records, bundle, drift_threshold)
    note = ""
    if html_path is not None:
        plotted = write_html(summary, records, Path(html_path))
        note = f"page written: {html_path}" + ("" if plotted else
                                                 " (without the plot: matplotlib is not installed; pip install edge-distill[full])")
    return table(summary), summary, note
