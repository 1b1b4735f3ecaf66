"""Crash-safe training: checkpoints, resume (bitwise equal to an uninterrupted run on CPU), signals, damage."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from factories import toy_sentiment_rows, write_config, write_csv

from promptft_cli import runs
from promptft_cli.config import load_config
from promptft_cli.errors import Interrupted, PromptftError
from promptft_cli.training import checkpoints
from promptft_cli.training.loop import train

# 36 train rows in batches of 8: 5 steps per epoch, 10 in all; checkpoints at steps 3, 5 (epoch end), 6, 9, 10.
TRAIN = {"epochs": 2, "batch_size": 8, "checkpoint_every": 3, "keep_checkpoints": 2, "early_stopping": {"patience": 9}}

# Runs the CLI with every history line slowed down, so a test can signal it between two checkpoints.
SLOW_CLI = """
import sys, time
from promptft_cli.runs import plots
from promptft_cli import runs
plots.write_run_plots = lambda *a, **k: []
_append, _delay = runs.append_jsonl, float(sys.argv[1])
def slow_append(path, record):
    _append(path, record)
    time.sleep(_delay)
runs.append_jsonl = slow_append
sys.argv = ["promptft", *sys.argv[2:]]
from promptft_cli.cli.commands import main
main()
"""


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
    """One thread (2 shared cores: OpenMP spinning costs seconds per step) and no plots (not under test here)."""
    from promptft_cli.runs import plots

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setattr(plots, "write_run_plots", lambda *a, **k: [], raising=False)
    yield
    torch.set_num_threads(threads)


def make_project(directory: Path, model: Path, method: str = "full", **train_cfg) -> Path:
    write_csv(directory / "train.csv", toy_sentiment_rows(40))
    write_csv(directory / "test.csv", toy_sentiment_rows(10, seed=1))
    options = {"num_virtual_tokens": 4} if method in ("prompt_tuning", "p_tuning", "prefix_tuning") else {}
    return write_config(directory, model, data={"train": "train.csv", "test": "test.csv"},
                        method={"name": method, **options}, train={**TRAIN, **train_cfg})


@pytest.fixture(scope="module")
def reference(tiny_encoder, tmp_path_factory):
    """The uninterrupted run every resumed run must reproduce."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from promptft_cli.runs import plots

        saved, plots.write_run_plots = getattr(plots, "write_run_plots", None), lambda *a, **k: []
        config = make_project(tmp_path_factory.mktemp("reference"), tiny_encoder)
        train(load_config(config))
        if saved:
            plots.write_run_plots = saved
    finally:
        torch.set_num_threads(threads)
    return load_config(config).run_dir


def crash_at(monkeypatch, step: int, error: BaseException | None = None, action=None) -> None:
    """Make history's write for `step` raise `error` (a crash) or call `action` (e.g. send a signal) first."""
    append = runs.append_jsonl

    def faulty(path, record):
        if record.get("step") == step and "loss" in record:
            if action:
                action()
            if error:
                raise error
        append(path, record)

    monkeypatch.setattr(runs, "append_jsonl", faulty)


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out = {}
    for f in sorted((run_dir / runs.CHECKPOINT).glob("*.safetensors")):
        out.update({f"{f.name}:{k}": v for k, v in load_file(str(f)).items()})
    return out


def history(run_dir: Path) -> list[tuple]:
    rows = [json.loads(line) for line in (run_dir / runs.HISTORY).read_text().splitlines()]
    return [(r.get("step"), r.get("epoch"), r.get("loss"), r.get("lr"), r.get("val_loss")) for r in rows]


def assert_same_run(run_dir: Path, reference: Path) -> None:
    assert (run_dir / runs.METRICS).read_bytes() == (reference / runs.METRICS).read_bytes()
    assert history(run_dir) == history(reference)
    mine, theirs = weights(run_dir), weights(reference)
    assert mine.keys() == theirs.keys() and mine
    for name in mine:
        assert torch.equal(mine[name], theirs[name]), name
    assert runs.RunInfo.load(run_dir).status == "complete"


def cli(*args: str) -> int:
    """The console entry in-process; returns the exit code."""
    from promptft_cli.cli.commands import main

    argv, sys.argv = sys.argv, ["promptft", *args]
    try:
        main()
        return 0
    except SystemExit as exc:
        return exc.code or 0
    finally:
        sys.argv = argv


def steps_saved(run_dir: Path) -> list[int]:
    return [int(p.name.removeprefix(checkpoints.PREFIX)) for p in sorted((run_dir / runs.CHECKPOINTS).glob("step-*"))]


# --- determinism and resume ---------------------------------------------------------------------------------


def test_same_seed_gives_identical_metrics_json(reference, tiny_encoder, tmp_path):
    config = make_project(tmp_path, tiny_encoder)
    train(load_config(config))
    run_dir = load_config(config).run_dir
    assert (run_dir / runs.METRICS).read_bytes() == (reference / runs.METRICS).read_bytes()
    assert "train_seconds" not in runs.read_json(run_dir / runs.METRICS)
    assert runs.RunInfo.load(run_dir).train_seconds > 0  # timings live in run.json
    assert steps_saved(run_dir) == [9, 10]  # keep_checkpoints: 2


@pytest.mark.parametrize("crash_step, damaged, resumed_from", [
    (6, False, 5),  # crash early in epoch 2: resume at the epoch boundary
    (8, False, 6),  # crash mid-epoch: resume after batch 1 of epoch 2
    (8, True, 3),   # the newest checkpoint is corrupted and the one before lost its manifest: both skipped
])
def test_crash_then_resume_equals_uninterrupted(reference, tiny_encoder, tmp_path, monkeypatch, crash_step, damaged, resumed_from):
    cfg = load_config(make_project(tmp_path, tiny_encoder, keep_checkpoints=3))
    crash_at(monkeypatch, crash_step, RuntimeError("power cut"))
    with pytest.raises(RuntimeError):
        train(cfg)
    monkeypatch.undo()
    run_dir = cfg.run_dir
    assert runs.RunInfo.load(run_dir).status == "failed"
    if damaged:
        previous, newest = sorted((run_dir / runs.CHECKPOINTS).glob("step-*"))[-2:]
        target = newest / "optimizer.pt"
        target.write_bytes(target.read_bytes()[:-10])
        assert checkpoints.verify(newest) == "optimizer.pt was changed or truncated"
        (previous / checkpoints.MANIFEST).unlink()
        assert checkpoints.verify(previous) == "incomplete: no manifest (the save was interrupted)"
    assert checkpoints.latest(run_dir / runs.CHECKPOINTS).name == f"step-{resumed_from:08d}"
    torch.set_num_threads(1)
    train(cfg, resume=True)
    assert_same_run(run_dir, reference)


def test_sigterm_stops_after_a_checkpoint_and_resume_refuses_changes(reference, tiny_encoder, tmp_path, monkeypatch, capsys):
    config = make_project(tmp_path, tiny_encoder)
    cfg = load_config(config)
    crash_at(monkeypatch, 4, action=lambda: os.kill(os.getpid(), signal.SIGTERM))
    with pytest.raises(Interrupted, match="stopped by SIGTERM at step 4") as info:
        train(cfg)
    monkeypatch.undo()
    assert info.value.exit_code == 128 + signal.SIGTERM
    run_dir = cfg.run_dir
    assert checkpoints.latest(run_dir / runs.CHECKPOINTS).name == "step-00000004"
    assert runs.RunInfo.load(run_dir).status == "interrupted"

    # Every way of reading or restarting the unfinished run is refused with a clear message.
    assert cli("evaluate", str(run_dir)) == 2
    assert "run is interrupted, not complete" in capsys.readouterr().err
    assert cli("train", str(config)) == 2
    assert "unfinished run with checkpoints" in capsys.readouterr().err
    assert cli("train", str(config), "--resume", "--set", "train.lr=0.5") == 2
    assert "config differs from the interrupted run's (train.lr: None then, 0.5 now)" in capsys.readouterr().err
    original = (tmp_path / "train.csv").read_bytes()
    (tmp_path / "train.csv").write_bytes(original + b"one more row,positive\n")
    assert cli("train", str(config), "--resume") == 2
    assert "the data files changed since the run was interrupted" in capsys.readouterr().err
    (tmp_path / "train.csv").write_bytes(original)

    # A saved checkpoint can still be evaluated explicitly.
    assert cli("evaluate", str(run_dir), "--checkpoint", "checkpoints/step-00000004", "--json", "--quiet") == 0
    assert json.loads(capsys.readouterr().out)["n"] == 10

    torch.set_num_threads(1)
    train(cfg, resume=True)
    assert_same_run(run_dir, reference)
    assert cli("train", str(config), "--resume") == 2
    assert "already complete; nothing to resume" in capsys.readouterr().err


def test_second_sigint_aborts_at_once(tiny_encoder, tmp_path, monkeypatch):
    cfg = load_config(make_project(tmp_path, tiny_encoder))
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN when started in the background

    def twice():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)

    crash_at(monkeypatch, 4, action=twice)
    with pytest.raises(KeyboardInterrupt) as info:
        train(cfg)
    assert not isinstance(info.value, Interrupted)  # no checkpoint was waited for
    assert steps_saved(cfg.run_dir) == [3]
    assert runs.RunInfo.load(cfg.run_dir).status == "interrupted"
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored


def test_sigint_saves_a_checkpoint_and_exits_130(tiny_encoder, tmp_path, monkeypatch, capsys):
    config = make_project(tmp_path, tiny_encoder)
    run_dir = load_config(config).run_dir
    before = signal.getsignal(signal.SIGINT)
    crash_at(monkeypatch, 7, action=lambda: os.kill(os.getpid(), signal.SIGINT))  # a real signal, the real handler
    assert cli("train", str(config), "--quiet") == 130
    err = " ".join(capsys.readouterr().err.split())
    assert f"interrupted: stopped by SIGINT at step 7; checkpoint saved in {run_dir / runs.CHECKPOINTS}/step-00000007" in err
    assert "continue with `promptft train CONFIG --resume`" in err
    assert checkpoints.latest(run_dir / runs.CHECKPOINTS).name == "step-00000007"
    info = runs.RunInfo.load(run_dir)
    assert info.status == "interrupted" and "step 7" in info.error
    assert signal.getsignal(signal.SIGINT) is before


def test_nan_loss_names_the_step_and_keeps_the_last_good_checkpoint(tiny_encoder, tmp_path, capsys):
    config = make_project(tmp_path, tiny_encoder)
    assert cli("train", str(config), "--quiet", "--set", "train.lr=1e30", "--set", "train.checkpoint_every=1") == 2
    err = capsys.readouterr().err
    assert "training loss became" in err and "field 'train.lr'" in err
    step = int(err.split(" at step ")[1].split(";")[0])
    run_dir = load_config(config).run_dir
    assert f"the last good checkpoint is {run_dir / runs.CHECKPOINTS}/step-{step - 1:08d}" in err
    assert checkpoints.verify(run_dir / runs.CHECKPOINTS / f"step-{step - 1:08d}") is None
    assert runs.RunInfo.load(run_dir).status == "failed"


# --- the real process, killed -------------------------------------------------------------------------------


def start_slow_training(config: Path, *extra: str, delay: float = 0.3) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-c", SLOW_CLI, str(delay), "train", str(config), "--quiet", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_for_checkpoint(proc: subprocess.Popen, run_dir: Path, timeout: float = 240) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"training ended before a checkpoint was seen: {proc.communicate()}"
        found = checkpoints.latest(run_dir / runs.CHECKPOINTS) if (run_dir / runs.CHECKPOINTS).exists() else None
        if found:
            return found
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("no checkpoint appeared")


@pytest.mark.parametrize("method", ["full", "lora", "prompt_tuning", "p_tuning", "prefix_tuning", "head"])
def test_sigkill_after_a_checkpoint_then_resume_equals_uninterrupted(reference, tiny_encoder, tmp_path, capsys, method):
    if method != "full":  # `reference` is the full fine-tuning run; the others get their own uninterrupted run
        reference_config = make_project(tmp_path / "reference", tiny_encoder, method)
        train(load_config(reference_config))
        reference = load_config(reference_config).run_dir
    config = make_project(tmp_path, tiny_encoder, method)
    run_dir = load_config(config).run_dir
    proc = start_slow_training(config)
    wait_for_checkpoint(proc, run_dir)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert runs.RunInfo.load(run_dir).status == "running"  # it had no chance to say anything
    assert cli("predict", str(run_dir), str(tmp_path / "test.csv"), "-o", str(tmp_path / "p.csv")) == 2
    assert "run is running, not complete" in capsys.readouterr().err

    torch.set_num_threads(1)
    assert cli("train", str(config), "--resume", "--quiet") == 0
    assert_same_run(run_dir, reference)
    assert not list((run_dir / runs.CHECKPOINTS).glob(".tmp-*"))


# --- the checkpoint folder itself ---------------------------------------------------------------------------


def test_verify_and_weights_for_reject_damage(tmp_path):
    folder = tmp_path / "checkpoints" / "step-00000001"
    (folder / checkpoints.MODEL).mkdir(parents=True)
    (folder / checkpoints.MODEL / "head.safetensors").write_bytes(b"weights")
    runs.write_json_atomic(folder / checkpoints.STATE, {"step": 1, "labels": ["a", "b"]})
    runs.write_json_atomic(folder / checkpoints.MANIFEST, {"files": checkpoints._digest(folder)})
    assert checkpoints.verify(folder) is None
    assert checkpoints.weights_for(tmp_path, Path("checkpoints/step-00000001")) == (folder / checkpoints.MODEL, ["a", "b"])
    (folder / checkpoints.MODEL / "head.safetensors").write_bytes(b"weightz")
    assert checkpoints.verify(folder) == "model/head.safetensors was changed or truncated"
    with pytest.raises(PromptftError, match="checkpoint cannot be used: model/head.safetensors was changed"):
        checkpoints.weights_for(tmp_path, folder)
    (folder / checkpoints.MANIFEST).write_text("{not json")
    assert checkpoints.verify(folder) == "damaged manifest"
    with pytest.raises(PromptftError, match="checkpoint folder not found"):
        checkpoints.weights_for(tmp_path, Path("checkpoints/step-00000002"))
    shutil.rmtree(folder)
    assert checkpoints.latest(tmp_path / "checkpoints") is None


def test_loop_state_epochs_left():
    st = checkpoints.LoopState(epoch=3)
    assert list(st.epochs_left(4)) == [3, 4]
    st.waited = 2
    st.next_epoch(3, patience=2)
    assert st.stopped_early and list(st.epochs_left(4)) == []
