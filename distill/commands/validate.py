"""`distill validate RECIPE`: check a recipe and print it with every default filled in.

With `--explain`, a table instead: each field's path, resolved value, default and description
(read from the recipe models by `distill.recipe_docs`, as docs/recipe-reference.md is).
"""

from __future__ import annotations

from distill.recipe import dump_resolved, load_recipe

VALUE_WIDTH = 40  # long values (instructions, templates) fold in their column instead of widening the table


def main(args) -> int:
    recipe = load_recipe(args.recipe, args.overrides)
    if getattr(args, "explain", False):
        print_explained(recipe)
    else:
        print(dump_resolved(recipe), end="")
    return 0


def print_explained(recipe) -> None:
    """The rich table of `--explain`; values that differ from their default are bold."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from distill.recipe_docs import explain_rows

    table = Table(title=f"recipe {recipe.name}: resolved values (bold: set by the recipe), defaults and what they do",
                  show_lines=False)
    table.add_column("field", no_wrap=True)
    table.add_column("value", max_width=VALUE_WIDTH, overflow="fold")
    table.add_column("default", max_width=VALUE_WIDTH // 2, overflow="fold")
    table.add_column("description", ratio=1)
    for path, value, default, description in explain_rows(recipe):
        changed = value != default and not value.startswith("(")
        table.add_row(Text(path), Text(value, style="bold" if changed else ""), Text(default), Text(description))
    Console().print(table)
