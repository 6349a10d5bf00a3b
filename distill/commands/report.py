"""`distill report RUN_DIR`: write report.md, report.html and metrics.json for a run directory."""

from __future__ import annotations


def main(args) -> int:
    from distill.report import write_report

    paths = write_report(args.run_dir, compare=args.compare)
    for p in paths:
        print(p)
    return 0
