"""Shared rich progress helpers so every long step shows rate and ETA the same way."""

from __future__ import annotations

import logging
import os
import warnings
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True, log_path=False)


def quiet_libraries(verbose: bool = False) -> None:
    """Keep library chatter off the terminal, which carries our bars and tables: FutureWarnings
    and DeprecationWarnings, tqdm bars (datasets' map steps, transformers' "Loading weights"),
    transformers' advisory logs, bitsandbytes' kernel notices. `--verbose` keeps them all.
    Environment variables the user set themselves win."""
    if verbose:
        return
    for key, value in (("TQDM_DISABLE", "1"), ("HF_DATASETS_DISABLE_PROGRESS_BARS", "1"),
                       ("HF_HUB_DISABLE_PROGRESS_BARS", "1"), ("TRANSFORMERS_VERBOSITY", "error"),
                       ("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")):
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    for name in ("bitsandbytes", "transformers", "datasets", "accelerate", "peft", "trl", "torch"):
        logging.getLogger(name).setLevel(logging.ERROR)


def progress(**extra) -> Progress:
    """A progress bar with count, rate and ETA."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[cyan]{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=False,
        **extra,
    )


class Bar:
    """`with Bar("label", total) as bar: bar.advance(info=...)` with an items/s rate."""

    def __init__(self, description: str, total: int | None, unit: str = "it"):
        self.progress = progress()
        self.unit = unit
        self.task = self.progress.add_task(description, total=total, rate="", info="")

    def __enter__(self) -> "Bar":
        self.progress.start()
        return self

    def advance(self, n: int = 1, info: str = "") -> None:
        self.progress.advance(self.task, n)
        speed = self.progress.tasks[0].speed
        rate = f"{speed:.2f} {self.unit}/s" if speed else ""
        self.progress.update(self.task, rate=rate, info=info)

    def __exit__(self, *exc) -> None:
        self.progress.stop()


@contextmanager
def status(message: str) -> Iterator[None]:
    with console.status(message):
        yield
    console.log(f"[green]done[/]: {message}")
