"""Resumable training state: save everything the loop needs to continue exactly where it stopped.

A checkpoint is a folder `checkpoints/step-00000012/` holding the trained weights (`model/`), the
optimizer, scheduler and RNG states, the loop's position and early-stopping state (`state.json`),
and hard links to the best weights so far (`best/`). It is written under a temporary name and
renamed; its manifest (size and SHA-256 of every file), written last, tells a complete checkpoint
from a partial or damaged one, which resume skips. accelerate's `save_state` is not used: it
unpickles RNG states (torch.load without weights_only) and knows nothing of our epoch/batch position.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from promptft_cli import runs
from promptft_cli.data.prepare import data_fingerprint
from promptft_cli.errors import Interrupted, PromptftError
from promptft_cli.modeling.weights import load_weights, save_weights
from promptft_cli.progress import status

log = logging.getLogger("promptft.checkpoints")

MANIFEST = "manifest.json"
STATE = "state.json"
MODEL = "model"
BEST = "best"
PREFIX = "step-"
# Keys that may change between an interrupted run and its resume without changing the result.
RESUME_MAY_CHANGE = ("checkpoint_every", "keep_checkpoints")


@dataclass
class LoopState:
    """Where the loop is and what early stopping knows; saved in every checkpoint as state.json."""

    epoch: int = 1
    """Epoch in progress (1-based)."""
    batch: int = 0
    """Batches of that epoch already trained (per process)."""
    step: int = 0
    """Optimiser steps done."""
    best: dict[str, float] | None = None
    best_epoch: int = 0
    waited: int = 0
    stopped_early: bool = False
    history_lines: int = 0
    """Lines of history.jsonl written up to this point (resume cuts the rest)."""
    seconds: float = 0.0
    """Training time so far, over all attempts."""
    labels: list[str] = field(default_factory=list)
    fingerprint: str = ""
    """The prepared data's fingerprint: resuming on other data would not reproduce the run."""

    def epochs_left(self, epochs: int) -> range:
        return range(self.epoch, self.epoch if self.stopped_early else epochs + 1)

    def next_epoch(self, epoch: int, patience: int) -> None:
        self.epoch, self.batch, self.stopped_early = epoch + 1, 0, self.waited >= patience


class StopOnSignal:
    """The first SIGINT or SIGTERM asks the loop to stop at the next step; a second one aborts at once."""

    signals = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopOnSignal":
        # Handlers can only be installed from the main thread (a library caller may train in another).
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.signals}
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        status(f"{signal.Signals(signum).name}: saving a checkpoint after this step (press Ctrl-C again to abort now)")


class Keeper:
    """Saves training state every `every` steps and at each epoch end, keeps the newest `keep`, resumes."""

    def __init__(self, run_dir: Path, every: int | None, keep: int, classifier, optimizer, scheduler,
                 scaler=None, is_main: bool = True) -> None:
        self.run_dir, self.root, self.every, self.keep = run_dir, run_dir / runs.CHECKPOINTS, every, keep
        self.classifier, self.optimizer, self.scheduler, self.scaler = classifier, optimizer, scheduler, scaler
        self.is_main = is_main
        self._clock, self._seconds = time.perf_counter(), 0.0

    def elapsed(self) -> float:
        return round(self._seconds + time.perf_counter() - self._clock, 3)

    def step_done(self, st: LoopState, stop: StopOnSignal) -> None:
        """After an optimiser step: save when one is due or a signal asked to stop, then stop if asked."""
        if stop.signum is not None or (self.every and st.step % self.every == 0):
            self.save(st)
        self._stop_if_asked(st, stop)

    def epoch_done(self, st: LoopState, stop: StopOnSignal) -> None:
        self.save(st)
        self._stop_if_asked(st, stop)

    def _stop_if_asked(self, st: LoopState, stop: StopOnSignal) -> None:
        if stop.signum is not None:
            name = signal.Signals(stop.signum).name
            raise Interrupted(f"stopped by {name} at step {st.step}; checkpoint saved in {self.root / _name(st.step)}; "
                              "continue with `promptft train CONFIG --resume`", 128 + stop.signum)

    def save(self, st: LoopState) -> Path:
        """Write the checkpoint of step `st.step` beside the others, then rename it into place."""
        import torch

        final = self.root / _name(st.step)
        if not self.is_main:
            return final
        st.seconds, st.history_lines = self.elapsed(), _count_lines(self.run_dir / runs.HISTORY)
        tmp = self.root / f".tmp-{final.name}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_weights(self.classifier, tmp / MODEL)
        torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(self.scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(_rng_state(), tmp / "rng.pt")
        if self.scaler is not None:
            torch.save(self.scaler.state_dict(), tmp / "scaler.pt")
        if st.best is not None:
            _link_tree(self.run_dir / runs.CHECKPOINT, tmp / BEST)
        runs.write_json_atomic(tmp / STATE, asdict(st))
        runs.write_json_atomic(tmp / MANIFEST, {"files": _digest(tmp)})
        _swap_in(tmp, final)
        self._prune()
        log.info("checkpoint %s (epoch %d, batch %d)", final.name, st.epoch, st.batch)
        return final

    def _prune(self) -> None:
        for old in sorted(self.root.glob(f"{PREFIX}*"))[:-self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        for stale in self.root.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)

    def resume(self) -> LoopState:
        """Load the newest complete checkpoint into model, optimizer, scheduler and RNGs; cut history back to it."""
        import torch

        path = latest(self.root)
        if path is None:
            raise PromptftError("no complete checkpoint to resume from; train again without --resume", file=self.root)
        st = read_state(path)
        load_weights(self.classifier, path / MODEL)
        self.optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True))
        self.scheduler.load_state_dict(torch.load(path / "scheduler.pt", map_location="cpu", weights_only=True))
        if self.scaler is not None and (path / "scaler.pt").exists():
            self.scaler.load_state_dict(torch.load(path / "scaler.pt", map_location="cpu", weights_only=True))
        if self.is_main:
            _restore_best(path / BEST, self.run_dir / runs.CHECKPOINT)
            _truncate_lines(self.run_dir / runs.HISTORY, st.history_lines)
        _set_rng_state(torch.load(path / "rng.pt", map_location="cpu", weights_only=True))
        self._clock, self._seconds = time.perf_counter(), st.seconds
        log.info("resumed from %s (epoch %d, batch %d, step %d)", path.name, st.epoch, st.batch, st.step)
        return st


def remaining_batches(accelerator, train_loader, epoch: int, done: int):
    """The batches of `epoch` in their seeded order, after the first `done` (trained before a resume)."""
    train_loader.set_epoch(epoch)  # the prepared loader passes it on to EpochBatches
    return accelerator.skip_first_batches(train_loader, done) if done else train_loader


def _name(step: int) -> str:
    return f"{PREFIX}{step:08d}"


def verify(folder: Path) -> str | None:
    """Why the checkpoint in `folder` cannot be used (missing manifest, file missing or changed), or None."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
    except FileNotFoundError:
        return "incomplete: no manifest (the save was interrupted)"
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return "damaged manifest"
    for rel, want in files.items():
        path = folder / rel
        if not path.is_file():
            return f"missing {rel}"
        if path.stat().st_size != want["size"] or _sha256(path) != want["sha256"]:
            return f"{rel} was changed or truncated"
    return None


def latest(root: Path) -> Path | None:
    """The newest complete checkpoint under `root`; damaged ones are logged and skipped."""
    for folder in sorted(root.glob(f"{PREFIX}*"), reverse=True):
        problem = verify(folder)
        if problem is None:
            return folder
        log.warning("skipping checkpoint %s: %s", folder, problem)
        status(f"skipping checkpoint {folder.name}: {problem}")
    return None


def read_state(folder: Path) -> LoopState:
    data = runs.read_json(folder / STATE)
    return LoopState(**{k: v for k, v in data.items() if k in LoopState.__dataclass_fields__})


def weights_for(run_dir: Path, checkpoint: Path) -> tuple[Path, list[str]]:
    """The weights folder and labels for `--checkpoint`: a `checkpoints/step-N` folder or a weights folder."""
    path = checkpoint if checkpoint.exists() or checkpoint.is_absolute() else run_dir / checkpoint
    if not path.is_dir():
        raise PromptftError("checkpoint folder not found", file=checkpoint)
    if (path / STATE).exists() or (path / MANIFEST).exists():
        problem = verify(path)
        if problem:
            raise PromptftError(f"checkpoint cannot be used: {problem}", file=path)
        return path / MODEL, read_state(path).labels
    labels = runs.RunInfo.load(run_dir).labels if (run_dir / runs.RUN_INFO).exists() else []
    if not labels:
        raise PromptftError(f"the run records no labels yet; point --checkpoint at a {runs.CHECKPOINTS}/step-N folder", file=path)
    return path, labels


def check_resumable(cfg) -> None:
    """Refuse a resume that could not reproduce the interrupted run: nothing saved, finished, or config/data changed."""
    run_dir = cfg.run_dir
    if not (run_dir / runs.CONFIG).exists():
        raise PromptftError("nothing to resume: no run in this output directory; train without --resume", file=run_dir)
    if (run_dir / runs.RUN_INFO).exists() and runs.RunInfo.load(run_dir).status == "complete":
        raise PromptftError("run is already complete; nothing to resume (pass --overwrite to train again)", file=run_dir)
    saved = yaml.safe_load((run_dir / runs.CONFIG).read_text(encoding="utf-8")) or {}
    changed = _first_difference(saved, json.loads(json.dumps(cfg.dump())))
    if changed:
        raise PromptftError(f"config differs from the interrupted run's ({changed}); resume needs the same config",
                            file=run_dir / runs.CONFIG, field=changed.split(":")[0])
    path = latest(run_dir / runs.CHECKPOINTS)
    if path is None:
        raise PromptftError("no complete checkpoint to resume from; train again without --resume",
                            file=run_dir / runs.CHECKPOINTS)
    if read_state(path).fingerprint != data_fingerprint(cfg):
        raise PromptftError("the data files changed since the run was interrupted; resume needs the same data "
                            "(or train again without --resume)", file=run_dir, field="data")


def _first_difference(saved: Any, current: Any, prefix: str = "") -> str | None:
    if isinstance(saved, dict) and isinstance(current, dict):
        for key in list(dict.fromkeys([*saved, *current])):
            if key in RESUME_MAY_CHANGE:
                continue
            diff = _first_difference(saved.get(key), current.get(key), f"{prefix}{key}.")
            if diff:
                return diff
        return None
    return None if saved == current else f"{prefix.rstrip('.')}: {saved!r} then, {current!r} now"


def _rng_state() -> dict[str, Any]:
    import random

    import numpy as np
    import torch

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": random.getstate(), "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
            "torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(state: dict[str, Any]) -> None:
    import random

    import numpy as np
    import torch

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
        os.fsync(fh.fileno())  # the manifest must not promise bytes still in the page cache
    return h.hexdigest()


def _digest(folder: Path) -> dict[str, dict[str, Any]]:
    return {p.relative_to(folder).as_posix(): {"size": p.stat().st_size, "sha256": _sha256(p)}
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link (copy where links are not possible) every file of `src` into `dst`: no extra disk space."""
    for path in sorted(src.rglob("*")):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)


def _swap_in(tmp: Path, final: Path) -> None:
    """Rename `tmp` to `final`, replacing an older folder of that name without ever leaving neither."""
    old = final.with_name(f".tmp-old-{final.name}")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _restore_best(saved: Path, dest: Path) -> None:
    """Put back the best weights as they were at the checkpoint (later epochs may have replaced them)."""
    if not saved.exists():
        shutil.rmtree(dest, ignore_errors=True)
        return
    tmp = dest.with_name(f".{dest.name}.restore")
    shutil.rmtree(tmp, ignore_errors=True)
    _link_tree(saved, tmp)
    _swap_in(tmp, dest)


def _count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as fh:
        return sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 20), b""))


def _truncate_lines(path: Path, n: int) -> None:
    if not path.exists():
        return
    lines = path.read_bytes().split(b"\n")[:n]
    runs.write_bytes_atomic(path, b"".join(line + b"\n" for line in lines))
