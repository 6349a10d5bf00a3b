"""`distill validate RECIPE`: check a recipe and print it with every default filled in."""

from __future__ import annotations

from distill.recipe import dump_resolved, load_recipe


def main(args) -> int:
    recipe = load_recipe(args.recipe, args.overrides)
    print(dump_resolved(recipe), end="")
    return 0
