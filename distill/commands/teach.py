"""`distill teach RECIPE`: label the training inputs with the recipe's teacher (the pipeline's teach stage alone, skipped when up to date)."""

from distill.commands.common import run_stage as main

__all__ = ["main"]
