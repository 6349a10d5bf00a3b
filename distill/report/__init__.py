"""Reports: `report.md`, a self-contained `report.html` and `metrics.json` for a run directory."""

from distill.report.write import write_report

__all__ = ["write_report"]
