"""The run directory: its layout, atomic writes, and loading what a finished run left behind."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

from promptft_cli.errors import PromptftError

CONFIG = "config.yaml"
RUN_INFO = "run.json"
METRICS = "metrics.json"
HISTORY = "history.jsonl"
LOG = "train.log"
CHECKPOINT = "checkpoint"
CHECKPOINTS = "checkpoints"  # training-state checkpoints for resume (see checkpoints.py)
DATA = "data"
REPORT = "data_report.json"
SUMMARY = "summary.json"  # mean ± std over seeds, in the parent directory of a multi-seed run
MULTI_SEED = "multi-seed"  # run.json's kind for that parent (training/fewshot.py)
_UMASK = os.umask(0)
os.umask(_UMASK)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename, so readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; finished files get the usual mode
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_jsonl_atomic(path: Path, records: Iterable[dict[str, Any]]) -> None:
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PromptftError("file not found", file=path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PromptftError(f"not valid JSON ({exc})", file=path) from None


@dataclass(frozen=True)
class RunInfo:
    """`run.json`: `running` from the start, `failed` or `interrupted` when training stops early,
    `complete` only once metrics.json is written; evaluate and predict read complete runs only.

    The parent directory of a multi-seed run (the few-shot protocol) has one too, with `kind` multi-seed,
    the `seeds` to run and those `finished`; a single run's run.json has none of those three keys.
    """

    status: str
    labels: list[str]
    method: str
    head: str
    model: str
    best_epoch: int | None = None
    train_seconds: float | None = None
    trainable_parameters: int | None = None
    error: str | None = None
    """Why an unfinished run stopped (the error or signal), for the user who finds it later."""
    kind: str | None = None
    """`multi-seed` for the parent of one run per seed; None for a single run."""
    seeds: list[int] = field(default_factory=list)
    finished: list[int] = field(default_factory=list)
    """Seeds whose run is complete (multi-seed parents)."""

    @property
    def multi_seed(self) -> bool:
        return self.kind == MULTI_SEED

    def save(self, run_dir: Path) -> None:
        data = dict(self.__dict__)
        if self.kind is None:
            for key in ("kind", "seeds", "finished"):
                del data[key]
        write_json_atomic(run_dir / RUN_INFO, data)

    @classmethod
    def mark(cls, run_dir: Path, status: str, error: str | None = None) -> None:
        """Change the status of the run in `run_dir`, keeping what run.json already says."""
        if (run_dir / RUN_INFO).exists():
            replace(cls.load(run_dir), status=status, error=error).save(run_dir)

    @classmethod
    def load(cls, run_dir: Path) -> "RunInfo":
        data = read_json(run_dir / RUN_INFO)
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


def is_multi_seed(run_dir: Path) -> bool:
    path = run_dir / RUN_INFO
    return path.is_file() and read_json(path).get("kind") == MULTI_SEED


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and (path / CONFIG).exists()


def require_finished(run_dir: Path) -> RunInfo:
    """Refuse to read a run that did not finish: its checkpoint may be missing or stale."""
    if not run_dir.exists():
        raise PromptftError("run directory not found", file=run_dir)
    if not (run_dir / RUN_INFO).exists():
        raise PromptftError(f"not a finished run (no {RUN_INFO}); train it first", file=run_dir)
    if read_json(run_dir / RUN_INFO).get("kind") == MULTI_SEED:  # see fewshot.py
        seeds = sorted(p.name for p in run_dir.glob("seed-*"))
        raise PromptftError(f"this directory holds one run per seed; use one of them, e.g. {run_dir / (seeds or ['seed-N'])[0]}",
                            file=run_dir)
    info = RunInfo.load(run_dir)
    if info.status != "complete":
        why = f" ({info.error})" if info.error else ""
        raise PromptftError(f"run is {info.status}, not complete{why}; resume it with `promptft train CONFIG --resume`, "
                            f"or pass --checkpoint {run_dir / CHECKPOINTS}/step-N to use a saved checkpoint", file=run_dir)
    return info


def check_output_dir(run_dir: Path, overwrite: bool) -> None:
    """Never clobber a finished run, or an unfinished one that could be resumed, unless asked."""
    if overwrite or not (run_dir / RUN_INFO).exists():
        return
    if RunInfo.load(run_dir).status == "complete":
        raise PromptftError("output directory already holds a finished run; pass --overwrite or change output_dir", file=run_dir)
    if any((run_dir / CHECKPOINTS).glob("step-*")):
        raise PromptftError("output directory holds an unfinished run with checkpoints; continue it with "
                            "`promptft train CONFIG --resume`, or pass --overwrite to start over", file=run_dir)


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    # Appending one whole line per call keeps history readable even if the process dies mid-run.
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
