"""Training recipe on the tiny encoder: it learns, writes a complete run directory, stops early, reproduces."""

from __future__ import annotations

import json
import random

import pytest
import torch
from factories import write_config, write_csv

from promptft_cli import runs
from promptft_cli.config import load_config
from promptft_cli.data.prepare import prepare
from promptft_cli.errors import PromptftError
from promptft_cli.training.loop import train


def easy_rows(n: int, seed: int) -> list[dict[str, str]]:
    """Sentiment carried by whole in-vocabulary words, so even a random 2-layer encoder separates it."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "positive" if i % 2 == 0 else "negative"
        word = rng.choice(["great", "good"] if label == "positive" else ["terrible", "bad"])
        filler = rng.choice(["the movie was", "this film is", "it was", "a review :", "the film was"])
        rows.append({"text": f"{filler} {word} {rng.choice('!.?')} {word} {'abcdefghij'[i % 10] * (i % 4 + 1)}",
                     "label": label})
    return rows


@pytest.fixture(autouse=True)
def no_plots(monkeypatch):
    """Figures cost seconds per run and are tested in test_plots.py."""
    monkeypatch.setattr("promptft_cli.training.loop.plots.write_run_plots", lambda *a, **k: [])


def project(folder, model_dir, **sections):
    write_csv(folder / "train.csv", easy_rows(80, 0))
    write_csv(folder / "test.csv", easy_rows(40, 1))
    sections["data"] = {"train": "train.csv", "test": "test.csv", **sections.get("data", {})}
    return write_config(folder, model_dir, **sections)


@pytest.fixture(scope="module")
def head_run(tmp_path_factory, tiny_encoder):
    folder = tmp_path_factory.mktemp("head")
    write_csv(folder / "train.csv", easy_rows(80, 0))
    write_csv(folder / "test.csv", easy_rows(40, 1))
    config = write_config(folder, tiny_encoder, data={"train": "train.csv", "test": "test.csv"},
                          train={"epochs": 4, "lr": 0.1, "seed": 1})
    with pytest.MonkeyPatch.context() as m:
        m.setattr("promptft_cli.training.loop.plots.write_run_plots", lambda *a, **k: [])
        return train(load_config(config))


def test_head_learns_the_toy_task(head_run):
    assert head_run.metrics["accuracy"] >= 0.75  # chance is 0.5
    assert head_run.trainable_parameters == 32 * 2 + 2


def test_lora_learns_the_toy_task(tmp_path, tiny_encoder):
    config = project(tmp_path, tiny_encoder, method={"name": "lora", "r": 4}, train={"epochs": 4, "lr": 0.01, "seed": 1})
    result = train(load_config(config))
    assert result.metrics["accuracy"] >= 0.75


def test_run_directory_is_complete(head_run):
    run_dir = head_run.run_dir
    for name in ("config.yaml", "data_report.json", "metrics.json", "history.jsonl", "train.log", "run.json"):
        assert (run_dir / name).is_file(), name
    for split in ("train", "validation", "test"):
        rows = [json.loads(line) for line in (run_dir / "data" / f"{split}.jsonl").read_text().splitlines()]
        assert rows and set(rows[0]) == {"text", "label"}
    assert {p.name for p in (run_dir / "checkpoint").iterdir()} >= {"head.safetensors"}
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "complete" and info["labels"] == ["negative", "positive"] and info["method"] == "head"
    assert info["best_epoch"] == head_run.best_epoch and info["trainable_parameters"] == 66
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["accuracy"] == head_run.metrics["accuracy"] and metrics["n"] == 38  # 2 duplicates dropped
    assert load_config(run_dir / "config.yaml").dump() == load_config(run_dir.parent / "config.yaml").dump()
    assert "trainable parameters: 66" in (run_dir / "train.log").read_text()


def test_history_has_steps_and_epochs(head_run):
    history = [json.loads(line) for line in (head_run.run_dir / "history.jsonl").read_text().splitlines()]
    steps = [h for h in history if "loss" in h]
    epochs = [h for h in history if "val_accuracy" in h]
    assert [h["epoch"] for h in epochs] == [1, 2, 3, 4]
    assert len(steps) == 4 * 9 and [h["step"] for h in steps] == list(range(1, 37))  # 72 rows / batch 8
    assert all(set(h) >= {"val_accuracy", "val_macro_f1", "val_loss"} for h in epochs)
    assert max(h["val_accuracy"] for h in epochs) == head_run.best_validation["accuracy"]


def test_early_stopping_stops_after_patience(tmp_path, tiny_encoder):
    # A learning rate too small to change anything: validation never improves after the first epoch.
    config = project(tmp_path, tiny_encoder, train={"epochs": 8, "lr": 1e-9, "early_stopping": {"patience": 2}})
    result = train(load_config(config))
    history = [json.loads(line) for line in (result.run_dir / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history if "val_accuracy" in h] == [1, 2, 3]
    assert result.best_epoch == 1


def test_same_seed_gives_identical_losses(tmp_path, tiny_encoder):
    def losses(folder):
        config = project(folder, tiny_encoder, method={"name": "lora", "r": 2, "dropout": 0.2},
                         train={"epochs": 1, "seed": 5})
        result = train(load_config(config))
        history = (result.run_dir / "history.jsonl").read_text().splitlines()
        return torch.tensor([json.loads(line)["loss"] for line in history if '"loss"' in line]), result.metrics

    first, metrics_a = losses(tmp_path / "a")
    second, metrics_b = losses(tmp_path / "b")
    assert len(first) == 9
    torch.testing.assert_close(second, first, rtol=0, atol=0)
    assert metrics_a == metrics_b


def test_finished_run_is_not_overwritten(head_run):
    config = load_config(head_run.run_dir.parent / "config.yaml")
    with pytest.raises(PromptftError, match="--overwrite") as info:
        train(config)
    assert info.value.file == str(head_run.run_dir)
    assert json.loads((head_run.run_dir / "run.json").read_text())["status"] == "complete"


def test_failed_run_is_marked(tmp_path, tiny_encoder):
    config = project(tmp_path, tiny_encoder, data={"train": "train.csv", "test": "other.csv"})
    write_csv(tmp_path / "other.csv", [{"text": "it was good", "label": "neutral"}])
    with pytest.raises(PromptftError, match="neutral"):
        train(load_config(config))
    assert runs.RunInfo.load(tmp_path / "run").status == "failed"
    train(load_config(config.parent / "config.yaml", ["data.test=test.csv", "train.epochs=1"]))  # a failed run may be redone


def test_prepared_data_is_reused_until_the_data_changes(tmp_path, tiny_encoder, bert_tokenizer, monkeypatch):
    import promptft_cli.data.prepare as prepare_module

    cfg = load_config(project(tmp_path, tiny_encoder))
    first = prepare(cfg, bert_tokenizer)
    report = (cfg.run_dir / runs.REPORT).read_text()

    def no_reading(*args, **kwargs):
        raise AssertionError("prepared data should have been reused")

    with monkeypatch.context() as m:
        m.setattr(prepare_module, "load_splits", no_reading)
        again = prepare(cfg, bert_tokenizer)
    assert again.labels == first.labels and again["test"].rows == first["test"].rows
    assert (cfg.run_dir / runs.REPORT).read_text() == report

    write_csv(tmp_path / "test.csv", easy_rows(10, 7))  # the data changed: prepared files are stale
    fresh = prepare(cfg, bert_tokenizer)
    assert len(fresh["test"].rows) == 10 and json.loads((cfg.run_dir / runs.REPORT).read_text())["fingerprint"] != \
        json.loads(report)["fingerprint"]
    changed = load_config(tmp_path / "config.yaml", ["data.validation_size=0.5"])  # so did the settings
    assert len(prepare(changed, bert_tokenizer)["validation"].rows) > len(fresh["validation"].rows)


@pytest.mark.parametrize("metric, worse, same, better", [("loss", 0.6, 0.5, 0.4), ("accuracy", 0.7, 0.8, 0.9),
                                                        ("macro_f1", 0.7, 0.8, 0.9)])
def test_only_a_strict_improvement_replaces_the_best_epoch(metric, worse, same, better):
    from promptft_cli.training.loop import _better

    best = {metric: same}
    assert [_better({metric: v}, best, metric) for v in (worse, same, better)] == [False, False, True]
