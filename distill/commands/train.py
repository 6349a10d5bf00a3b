"""`distill train RECIPE`: train the student (LoRA, QLoRA or full SFT) and merge it (the pipeline's train stage alone, skipped when up to date)."""

from distill.commands.common import run_stage as main

__all__ = ["main"]
