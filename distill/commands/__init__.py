"""The `distill` commands, one module each (`run`, `validate`, `teach`, `curate`, `train`,
`eval`, `report`, `presets`), each with `main(args) -> int`; `distill.cli` dispatches to them
through its one table, `COMMANDS`."""

from distill.commands.summary import print_summary, summary_rows

__all__ = ["print_summary", "summary_rows"]
