"""The one error type users see: a one-line message naming file, row and field."""

from __future__ import annotations

from pathlib import Path


class PromptftError(Exception):
    """A problem with the user's input or config; the CLI prints it as one line and exits 2."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        row: int | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = str(file) if file is not None else None
        self.row = row
        self.field = field

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.row}" if self.row is not None else "")
        elif self.row is not None:
            where = f"row {self.row}"
        parts = [p for p in (where, f"field '{self.field}'" if self.field else "") if p]
        prefix = ": ".join(parts)
        return f"{prefix}: {self.message}" if prefix else self.message


class GateFailed(Exception):
    """A quality gate (e.g. --min-accuracy) was not met; the CLI exits 1."""

    exit_code = 1


class Interrupted(BaseException):
    """Training stopped on SIGINT/SIGTERM after saving a checkpoint; the CLI exits 128 + signal number.

    Not a KeyboardInterrupt: Typer turns those into a bare exit code, and this one carries a message.
    """

    def __init__(self, message: str, exit_code: int = 130) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message
