"""Progress display for long work: rich bars on a terminal, silence otherwise."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

# Everything human-readable goes to stderr so stdout stays clean for --json and piped predictions.
console = Console(stderr=True)
_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def enabled() -> bool:
    return not _quiet and sys.stderr.isatty()


class TrainProgress:
    """A bar over optimiser steps showing epoch, loss, learning rate, examples/s and the last validation metric."""

    def __init__(self, total_steps: int, epochs: int) -> None:
        self.total, self.epochs = total_steps, epochs
        self.fields: dict[str, Any] = {"epoch": 0, "loss": float("nan"), "lr": 0.0, "eps": 0.0, "val": "-"}
        self.progress = Progress(
            TextColumn("[bold]train[/] epoch {task.fields[epoch]}/" + str(epochs)),
            BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f} lr {task.fields[lr]:.2e} {task.fields[eps]:.0f} ex/s val {task.fields[val]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=not enabled(), transient=False)
        self.task = None

    def __enter__(self) -> "TrainProgress":
        self.progress.__enter__()
        self.task = self.progress.add_task("train", total=self.total, **self.fields)
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def update(self, advance: int = 0, **fields: Any) -> None:
        self.fields.update(fields)
        self.progress.update(self.task, advance=advance, **self.fields)


def status(message: str) -> None:
    if not _quiet:
        console.print(message, highlight=False)
