"""`distill report`'s files for a run directory: report.md, report.html and the metrics JSON."""

from __future__ import annotations

import json
from pathlib import Path


def write_report(run_dir: Path, compare: list[Path] | None = None) -> list[Path]:
    """Write the run's report files into `run_dir`; `compare` adds other runs side by side."""
    from distill.report.build import collect, markdown
    from distill.report.html import render

    run_dir = Path(run_dir)
    model = collect(run_dir)
    others = [collect(Path(p)) for p in compare or []]
    md_path, html_path, json_path = run_dir / "report.md", run_dir / "report.html", run_dir / "metrics.json"
    md_path.write_text(markdown(model, others), encoding="utf-8")
    html_path.write_text(render(model, others), encoding="utf-8")
    if json_path.is_file() and "predictors" in json.loads(json_path.read_text()) and "economics" not in json.loads(json_path.read_text()):
        json_path = run_dir / "report-metrics.json"  # an eval out dir: keep its own metrics.json
    machine = {k: v for k, v in model.items() if k not in ("examples",)}
    machine["compared"] = [{"run_dir": o["run_dir"], "predictors": o["predictors"]} for o in others]
    json_path.write_text(json.dumps(machine, indent=2, default=str), encoding="utf-8")
    return [md_path, html_path, json_path]
