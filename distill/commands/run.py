"""`distill run RECIPE`: the whole pipeline (teach, curate, train, eval, quantize, pack), skipping
finished stages, then the report and the summary table."""

from __future__ import annotations

from distill.commands.common import load, log
from distill.commands.summary import print_summary
from distill.pipeline.runner import run_pipeline


def main(args) -> int:
    recipe, run_dir = load(args)
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
