"""The report's plots, drawn with matplotlib's Agg backend into PNG bytes.

Each function takes plain data (no run directory) and returns PNG bytes, or None when
there is nothing to draw, so the report embeds exactly the plots that mean something.
"""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLOURS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C"]


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def quality_vs_cost(points: list[dict[str, Any]], metric: str) -> bytes | None:
    """One dot per predictor: cost per 1,000 requests against the headline metric (with CI)."""
    pts = [p for p in points if p.get("cost") is not None and p.get("quality") is not None]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, p in enumerate(pts):
        ci = p.get("ci")
        yerr = [[p["quality"] - ci[0]], [ci[1] - p["quality"]]] if ci else None
        ax.errorbar([p["cost"]], [p["quality"]], yerr=yerr, fmt="o", color=COLOURS[i % len(COLOURS)], capsize=4, ms=8)
        ax.annotate(p["name"], (p["cost"], p["quality"]), textcoords="offset points", xytext=(6, 6), fontsize=9)
    costs = [p["cost"] for p in pts]
    if min(costs) > 0 and max(costs) / min(costs) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("cost per 1,000 requests (USD)")
    ax.set_ylabel(metric)
    ax.set_ylim(-0.02, 1.05)
    ax.grid(alpha=0.3)
    ax.set_title("quality against cost")
    return _png(fig)


def grouped_bars(groups: list[str], series: dict[str, list[float | None]], ylabel: str, title: str) -> bytes | None:
    """Bars per group (field or class), one colour per predictor."""
    if not groups or not series:
        return None
    n = len(series)
    width = 0.8 / n
    fig, ax = plt.subplots(figsize=(max(6.5, 0.55 * len(groups) * max(1, n / 2)), 4))
    for i, (name, values) in enumerate(series.items()):
        xs = [g + (i - (n - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, [v or 0.0 for v in values], width, label=name, color=COLOURS[i % len(COLOURS)])
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=45 if len(groups) > 6 else 0, ha="right" if len(groups) > 6 else "center", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def confusion(rows: list[str], columns: list[str], matrix: list[list[int]], title: str) -> bytes | None:
    if not rows or not matrix:
        return None
    size = min(12, 3 + 0.35 * len(columns))
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    im = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels(columns, rotation=90, fontsize=7)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    if len(columns) <= 15:
        for i, row in enumerate(matrix):
            for j, v in enumerate(row):
                if v:
                    ax.text(j, i, str(v), ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(title)
    return _png(fig)


def latency(latencies: dict[str, list[float]]) -> bytes | None:
    """Box plot of per-request latency per predictor."""
    data = {k: v for k, v in latencies.items() if v}
    if not data:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 0.6 * len(data) + 2))
    try:
        ax.boxplot(list(data.values()), orientation="horizontal")
    except TypeError:  # matplotlib < 3.10
        ax.boxplot(list(data.values()), vert=False)
    ax.set_yticks(range(1, len(data) + 1))
    ax.set_yticklabels(list(data))
    ax.set_xlabel("seconds per request")
    ax.set_title("latency per request")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def hybrid_curve(curves: dict[str, list[dict[str, Any]]], teacher_quality: float | None) -> bytes | None:
    """Quality and cost of student-first, teacher-on-doubt, as the threshold rises."""
    curves = {k: v for k, v in curves.items() if v}
    if not curves:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for i, (name, pts) in enumerate(curves.items()):
        c = COLOURS[i % len(COLOURS)]
        th = [p["threshold"] for p in pts]
        ax1.plot(th, [p["quality"] for p in pts], "o-", color=c, label=f"{name} quality")
        ax1.plot(th, [p["escalation_rate"] for p in pts], "s--", color=c, alpha=0.6, label=f"{name} escalated")
        ax2.plot([p["cost_per_1k_usd"] for p in pts], [p["quality"] for p in pts], "o-", color=c, label=name)
    if teacher_quality is not None:
        ax1.axhline(teacher_quality, color="black", lw=1, ls=":", label="teacher alone")
        ax2.axhline(teacher_quality, color="black", lw=1, ls=":", label="teacher alone")
    ax1.set_xlabel("confidence threshold")
    ax1.set_ylabel("quality / share escalated")
    ax1.set_ylim(-0.02, 1.05)
    ax1.legend(fontsize=7)
    ax1.grid(alpha=0.3)
    ax2.set_xlabel("cost per 1,000 requests (USD)")
    ax2.set_ylabel("quality")
    ax2.set_ylim(-0.02, 1.05)
    ax2.legend(fontsize=7)
    ax2.grid(alpha=0.3)
    fig.suptitle("hybrid: the student answers, low confidence goes to the teacher")
    return _png(fig)
