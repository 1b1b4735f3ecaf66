"""`promptft runs` / `promptft compare`: rows read from run directories, finished or not."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from promptft_cli import runs
from promptft_cli.errors import PromptftError
from promptft_cli.runs import table as run_table

# The keys `promptft runs --json` documents for each run (README: Daily use).
RUN_KEYS = {"name", "path", "status", "task", "model", "method", "head", "shots", "best_metric", "best_validation",
            "best_epoch", "test_accuracy", "test_macro_f1", "test_accuracy_std", "test_macro_f1_std", "test_scores", "train_seconds",
            "trainable_parameters", "checkpoint_bytes"}


def fake_run(run_dir, *, status="complete", lr=0.01, method="head", accuracy=0.8, seeds=None, history=True, info=True):
    """A run directory as training leaves it, written by hand (no model needed)."""
    cfg = {"task": "classification", "model": {"name": "default", "max_length": 64},
           "data": {"train": "t.csv", "few_shot": {"k": 4, "seeds": seeds} if seeds else None},
           "method": {"name": method}, "train": {"lr": lr, "epochs": 3, "early_stopping": {"metric": "accuracy"}},
           "output_dir": str(run_dir)}
    run_dir.mkdir(parents=True)
    (run_dir / runs.CONFIG).write_text(yaml.safe_dump(cfg))
    (run_dir / runs.REPORT).write_text("{}")
    if history:
        lines = [{"step": 1, "epoch": 1, "loss": 0.7, "lr": lr}, {"epoch": 1, "step": 1, "val_accuracy": 0.6},
                 {"step": 2, "epoch": 2, "loss": 0.5, "lr": lr}, {"epoch": 2, "step": 2, "val_accuracy": 0.9},
                 {"step": 3, "epoch": 3, "loss": 0.4, "lr": lr}, {"epoch": 3, "step": 3, "val_accuracy": 0.7}]
        (run_dir / runs.HISTORY).write_text("".join(json.dumps(line) + "\n" for line in lines))
    if info:
        runs.RunInfo(status, ["neg", "pos"], method, "linear", "default", 2 if status == "complete" else None,
                     12.5, 770).save(run_dir)
    if status == "complete":
        (run_dir / runs.METRICS).write_text(json.dumps({"accuracy": accuracy, "macro_f1": accuracy - 0.05, "n": 20}))
        (run_dir / runs.CHECKPOINT).mkdir()
        (run_dir / runs.CHECKPOINT / "head.safetensors").write_bytes(b"x" * 3000)
    return run_dir


def test_rows_from_a_real_run(trained_run):
    (row,) = run_table.list_runs(trained_run.parent)
    info = runs.RunInfo.load(trained_run)
    metrics = runs.read_json(trained_run / runs.METRICS)
    history = [json.loads(line) for line in (trained_run / runs.HISTORY).read_text().splitlines()]
    best_val = next(r["val_accuracy"] for r in history if r.get("epoch") == info.best_epoch and "val_accuracy" in r)
    assert (row.name, row.status, row.method, row.head, row.task) == ("lora", "complete", "lora", "linear", "classification")
    assert row.test_accuracy == metrics["accuracy"] and row.test_macro_f1 == metrics["macro_f1"]
    assert row.best_validation == best_val and row.best_epoch == info.best_epoch
    assert row.trainable_parameters == info.trainable_parameters > 0
    ckpt = trained_run / runs.CHECKPOINT
    assert row.checkpoint_bytes == sum(f.stat().st_size for f in ckpt.rglob("*") if f.is_file()) > 1000
    assert set(row.to_json()) == RUN_KEYS


def test_statuses_and_nesting(tmp_path):
    fake_run(tmp_path / "a-done")
    fake_run(tmp_path / "group" / "b-failed", status="failed")
    fake_run(tmp_path / "c-unfinished", status="running", info=False)
    fake_run(tmp_path / "d-prepared", status="running", info=False, history=False)
    (tmp_path / "not-a-run").mkdir()
    rows = {r.name: r for r in run_table.list_runs(tmp_path)}
    assert list(rows) == ["a-done", "c-unfinished", "d-prepared", "group/b-failed"]
    assert [rows[n].status for n in rows] == ["complete", "unfinished", "prepared", "failed"]
    done = rows["a-done"]
    assert (done.best_validation, done.best_epoch, done.test_accuracy, done.checkpoint_bytes) == (0.9, 2, 0.8, 3000)
    # Without run.json the best epoch is the best validation score seen so far.
    assert (rows["c-unfinished"].best_validation, rows["c-unfinished"].best_epoch) == (0.9, 2)
    assert rows["d-prepared"].test_accuracy is None and rows["d-prepared"].checkpoint_bytes is None


def test_multi_seed_parent_shows_mean_and_spread(tmp_path):
    parent = tmp_path / "fewshot"
    fake_run(parent, seeds=[13, 21], history=False, status="running")
    shutil.rmtree(parent / runs.CHECKPOINT, ignore_errors=True)
    for seed, acc in ((13, 0.7), (21, 0.9)):
        fake_run(parent / f"seed-{seed}", accuracy=acc)
    (parent / runs.SUMMARY).write_text(json.dumps({
        "accuracy": {"mean": 0.8, "std": 0.1, "per_seed": [0.7, 0.9]}, "macro_f1": {"mean": 0.75, "std": 0.1, "per_seed": [0.65, 0.85]},
        "seeds": [13, 21]}))
    runs.RunInfo("complete", ["neg", "pos"], "head", "linear", "default").save(parent)
    rows = {r.name: r for r in run_table.list_runs(tmp_path)}
    assert set(rows) == {"fewshot", "fewshot/seed-13", "fewshot/seed-21"}
    top = rows["fewshot"]
    assert (top.shots, top.test_accuracy, top.test_accuracy_std, top.train_seconds) == ("k=4 x 2 seeds", 0.8, 0.1, 25.0)


def test_compare_reports_only_differing_keys(tmp_path):
    a = fake_run(tmp_path / "a", lr=0.01, accuracy=0.8)
    b = fake_run(tmp_path / "b", lr=0.001, method="lora", accuracy=0.9)
    config = yaml.safe_load((a / runs.CONFIG).read_text())
    config["train"]["report_to"] = []  # the default, written out by a newer version: no difference
    (a / runs.CONFIG).write_text(yaml.safe_dump(config))
    cmp = run_table.compare_runs([a, b])
    assert cmp.differences["method.name"] == ["head", "lora"] and cmp.differences["train.lr"] == [0.01, 0.001]
    assert cmp.differences["method.r"] == [None, 8]  # lora's own options, filled with their defaults
    assert "train.report_to" not in cmp.differences and cmp.same["train.report_to"] == []
    assert "output_dir" not in cmp.differences and cmp.same["train.epochs"] == 3
    data = cmp.to_json()
    assert set(data) == {"runs", "differences", "same"} and [r["name"] for r in data["runs"]] == [str(a), str(b)]


@pytest.mark.parametrize("bad", ["one", "missing", "plain-folder"])
def test_compare_refuses_what_it_cannot_compare(tmp_path, bad):
    run = fake_run(tmp_path / "run")
    (tmp_path / "plain-folder").mkdir()
    paths = {"one": [run], "missing": [run, tmp_path / "nope"], "plain-folder": [run, tmp_path / "plain-folder"]}[bad]
    with pytest.raises(PromptftError):
        run_table.compare_runs(paths)


def test_missing_folder_is_an_error(tmp_path):
    with pytest.raises(PromptftError, match="folder not found"):
        run_table.list_runs(tmp_path / "nope")


def test_human_bytes():
    assert [run_table.human_bytes(n) for n in (None, 512, 2048, 5 * 1024 ** 3)] == ["-", "512 B", "2.0 KB", "5.0 GB"]
