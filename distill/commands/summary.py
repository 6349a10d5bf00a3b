"""The table `distill run` and `distill eval` end with: every evaluated predictor, quality next to speed and size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.table import Table

from distill.progress import console


def _fmt_metric(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _fmt_size(n: int | None) -> str:
    if not n:
        return "-"
    return f"{n / 2**20:.0f} MB" if n < 2**30 else f"{n / 2**30:.2f} GB"


def summary_rows(records: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    rows = []
    for stage in ("eval", "quantize"):
        outputs = records.get(stage, {}).get("outputs", {})
        evals = outputs.get("eval", outputs) if stage == "quantize" else outputs
        for name, summary in (evals.get("predictors") or {}).items():
            rows.append((name, summary))
    return rows


def print_summary(run_dir: Path, records: dict[str, dict[str, Any]]) -> None:
    """The final table: every evaluated predictor, quality next to speed and size."""
    rows = summary_rows(records)
    if not rows:
        return
    fields = sorted({f for _, s in rows for f in (s.get("field_accuracy") or {})})
    table = Table(title=f"{run_dir}: evaluation on {rows[0][1].get('n', '?')} held-out examples")
    table.add_column("predictor")
    for f in fields:
        table.add_column(f, justify="right")
    table.add_column("headline", justify="right")
    table.add_column("exact match", justify="right")
    table.add_column("valid JSON", justify="right")
    table.add_column("p50 latency", justify="right")
    table.add_column("size", justify="right")
    for name, s in rows:
        acc = s.get("field_accuracy") or {}
        table.add_row(
            name,
            *[_fmt_metric(acc.get(f)) for f in fields],
            _fmt_metric(s.get("headline")),
            _fmt_metric(s.get("exact_match")),
            _fmt_metric(s.get("json_validity")),
            f"{s['p50_latency_s']:.2f} s" if s.get("p50_latency_s") is not None else "-",
            _fmt_size(s.get("size_bytes")),
        )
    from rich.console import Console

    # the table is wider than the 80 columns rich assumes when output is not a terminal
    Console(stderr=True, width=max(console.width, 150)).print(table)
    (run_dir / "summary.json").write_text(json.dumps(dict(rows), indent=2))
