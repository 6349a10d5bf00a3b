"""A rich progress bar with rate and ETA (quantize must not import distill, so a small local one)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


@contextmanager
def bar(description: str, total: int) -> Iterator[Callable[[], None]]:
    """`with bar("label", n) as advance: ... advance()`"""
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console) as prog:
        task = prog.add_task(description, total=total)
        yield lambda: prog.advance(task)
