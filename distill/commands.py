"""The commands behind `distill run|teach|curate|train|eval|presets` and the run summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from distill.pipeline.runner import run_pipeline
from distill.progress import console


def run_command(args, recipe, run_dir: Path) -> int:
    log = lambda msg: console.log(escape(msg))  # noqa: E731  ("[teach]" is not rich markup)
    if args.command == "run":
        records = run_pipeline(recipe, run_dir, start=args.start, until=args.until, force=args.force, log=log)
        if "eval" in records:
            try:
                from distill.report import write_report

                for path in write_report(run_dir):
                    log(f"report: {path}")
            except ImportError:
                pass
        print_summary(run_dir, records)
        return 0
    if args.command in ("teach", "curate", "train"):
        run_pipeline(recipe, run_dir, only=args.command, force=args.force, log=log)
        return 0
    if args.command == "eval":
        from distill.eval import evaluate_command
        from distill.pipeline.runner import recipe_for_run

        # the run's own retrieval (a faq knowledge base enriched at curate), as its bundle serves
        return evaluate_command(recipe_for_run(recipe, run_dir), run_dir, args.predictor, args.data, args.out)
    raise ValueError(args.command)


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


def print_presets() -> int:
    from distill.models.resolve import presets

    table = Table(title="student presets (distill/models/presets.yaml)")
    for col in ("name", "hf id", "params", "layers", "hidden", "kv heads", "head dim", "vocab", "context", "license", "lora r", "lr"):
        table.add_column(col)
    for name, f in presets().items():
        table.add_row(name, f["hf_id"], f"{f['params'] / 1e9:.2f}B", str(f["layers"]), str(f["hidden_size"]),
                      str(f["kv_heads"]), str(f["head_dim"]), str(f["vocab_size"]), str(f["context_length"]),
                      f["license"], str(f["lora_r"]), str(f["learning_rate"]))
    console.print(table)
    return 0
