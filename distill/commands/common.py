"""What the commands that take a recipe share: the recipe and run directory from the
arguments, the stage log, and running one stage."""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape

from distill.progress import console
from distill.recipe import Recipe, load_recipe


def load(args) -> tuple[Recipe, Path]:
    """The recipe (with its --set overrides) and the run directory (default runs/<recipe name>)."""
    recipe = load_recipe(args.recipe, args.overrides)
    return recipe, args.run_dir or Path("runs") / recipe.name


def log(msg: str) -> None:
    console.log(escape(msg))  # "[teach]" is not rich markup


def run_stage(args) -> int:
    """`distill teach|curate|train`: that one stage of the pipeline."""
    from distill.pipeline.runner import run_pipeline

    recipe, run_dir = load(args)
    run_pipeline(recipe, run_dir, only=args.command, force=args.force, log=log)
    return 0
