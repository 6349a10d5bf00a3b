"""`distill curate RECIPE`: validate, deduplicate and decontaminate the teacher's data (the pipeline's curate stage alone, skipped when up to date)."""

from distill.commands.common import run_stage as main

__all__ = ["main"]
