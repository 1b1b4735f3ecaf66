"""What the user sees while work runs: rich progress bars and log lines on stderr, library noise filtered.

Bars show only on a terminal and never with `--quiet`, so logs, pipes and CI stay clean.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from typing import Any, Iterable, Iterator, Sequence, TypeVar

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

# Everything human-readable goes to stderr so stdout stays clean for --json and piped predictions.
console = Console(stderr=True)
_quiet = False
_filter_libraries = False  # set by configure(): the CLI filters, library users keep every message
_libraries_quieted = False
T = TypeVar("T")

# Messages from transformers/peft/torch that describe something promptft does on purpose. Each is a
# regular expression searched in the message text.
NOISE = (
    r"[Tt]oken type ids are not supported",
    r"Some weights of .* were not initialized from the model checkpoint",
    r"You should probably TRAIN this model",
    r"Some weights of the model checkpoint .* were not used",
    r"None of the inputs have requires_grad=True",  # frozen backbones under gradient checkpointing
    r"`torch_dtype` is deprecated",
    r"is deprecated and will be removed",
)
# Parameters we add or replace ourselves: a load report about only these is expected, not a problem.
_HEAD_KEYS = re.compile(r"^(classifier|cls|lm_head|score|pooler|pre_classifier|qa_outputs)\.|(^|\.)position_ids$")
_REPORT_ROW = re.compile(r"^\s*([\w.\-{},*]+)\s*\|\s*(MISSING|UNEXPECTED|MISMATCH\w*|CONVERSION|\w+)\s*\|")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def enabled() -> bool:
    """Bars only on an interactive terminal and not with --quiet."""
    return not _quiet and sys.stderr.isatty()


def configure(quiet: bool = False, verbosity: int = 0) -> None:
    """Set up the CLI's output: progress on/off, promptft's log level, and the library-noise filters.

    verbosity 0 shows promptft warnings; 1 (`-v`) adds info lines (per-epoch metrics) and every
    library warning; 2 (`-vv`) adds debug lines.
    """
    global _filter_libraries
    set_quiet(quiet)
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    _console_log_handler(level)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # weight-loading bars would fight ours
    if verbosity:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "info" if verbosity > 1 else "warning")
        warnings.simplefilter("default")
        return
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "warning")
    # filterwarnings puts each new rule first, so the catch-all "once" goes in before the ignores.
    warnings.filterwarnings("once", category=UserWarning)  # a real warning per batch would repeat 1000s of times
    for category in (FutureWarning, DeprecationWarning, PendingDeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    for pattern in NOISE:
        warnings.filterwarnings("ignore", message=f".*{pattern}")
    _filter_libraries = True


def _console_log_handler(level: int) -> None:
    """promptft's log lines, and Python warnings, printed through the console so they sit above any bar."""
    handler = _rich_handler(level)
    logging.captureWarnings(True)
    for name in ("promptft", "py.warnings"):
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, "_promptft_console", False)]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(min(level, logger.level or logging.WARNING))
    logging.getLogger("py.warnings").propagate = False


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time, not the stream it was created with (tests swap it)."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def _rich_handler(level: int) -> logging.Handler:
    """Log lines through the console on a terminal (they sit above any bar); plain lines in a pipe or file."""
    if console.is_terminal:
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=console, show_path=False, show_time=False, markup=False,
                                               rich_tracebacks=False)
    else:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.setLevel(level)
    handler._promptft_console = True  # type: ignore[attr-defined]
    return handler


class LibraryNoise(logging.Filter):
    """Drop library log records that mean nothing to a promptft user; show every other message once."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = _ANSI.sub("", record.getMessage())
        if any(re.search(p, message) for p in NOISE) or _expected_load_report(message):
            return False
        if message in self.seen:
            return False
        self.seen.add(message)
        return True


def _expected_load_report(message: str) -> bool:
    """transformers' LOAD REPORT is expected when it only lists heads we replace (e.g. a fresh classifier)."""
    if "LOAD REPORT" not in message:
        return False
    keys = [m.group(1) for m in map(_REPORT_ROW.match, message.splitlines()) if m and m.group(1) != "Key"]
    return bool(keys) and all(_HEAD_KEYS.search(k) for k in keys)


def quiet_libraries() -> None:
    """Attach the noise filter to transformers' log handler, once; a no-op unless `configure` asked for it.

    Called where transformers is first used, so `promptft --help` never pays for importing it.
    """
    global _libraries_quieted
    if not _filter_libraries or _libraries_quieted:
        return
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    # transformers writes straight to stderr, which would tear through a live bar; print via our console.
    hf_logging.disable_default_handler()
    handler = _rich_handler(logging.WARNING)
    handler.addFilter(LibraryNoise())
    hf_logging.get_logger().addHandler(handler)
    _libraries_quieted = True


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
        if exc[0] is None and self.task is not None:  # early stopping: close the bar at the steps run, no stale ETA
            self.progress.update(self.task, total=self.progress.tasks[0].completed)
        self.progress.__exit__(*exc)

    def update(self, advance: int = 0, **fields: Any) -> None:
        self.fields.update(fields)
        self.progress.update(self.task, advance=advance, **self.fields)


def track(items: Iterable[T], description: str, total: int | None = None, unit: str = "rows") -> Iterator[T]:
    """Yield `items` while a transient bar shows count, rate (`unit`/s) and, when `total` is known, the ETA."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if not enabled() or getattr(console, "_live_stack", None):  # never stack a live display under the training bar
        yield from items
        return
    columns = [SpinnerColumn(), TextColumn(f"[bold]{description}[/]")]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn()]
    else:
        columns += [TextColumn("{task.completed:,} " + unit)]
    columns += [TextColumn("{task.fields[rate]} " + unit + "/s"), TimeElapsedColumn()]
    if total is not None:
        columns.append(TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(description, total=total, rate="-")
        for item in items:
            yield item
            speed = progress.tasks[0].speed
            progress.update(task, advance=1, rate=f"{speed:,.0f}" if speed else "-")


class Tracked(Sequence[T]):
    """A read-only view of a list whose first iteration shows a progress bar, for code that takes lists."""

    def __init__(self, items: Sequence[T], description: str) -> None:
        self.items, self.description, self.shown = items, description, False

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]

    def __iter__(self) -> Iterator[T]:
        if self.shown:
            return iter(self.items)
        self.shown = True
        return track(self.items, self.description)


def status(message: str) -> None:
    if not _quiet:
        console.print(message, highlight=False, soft_wrap=True)  # a pipe or log file gets whole lines
