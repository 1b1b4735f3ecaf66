"""Experiment tracking: TensorBoard events from a real run are readable and match history.jsonl."""

from __future__ import annotations

import json

import pytest

from promptft_cli import runs
from promptft_cli.config import validate_config
from promptft_cli.errors import PromptftError
from promptft_cli.training import tracking


def _scalars(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_events_match_the_history(trained_run):
    log_dir = trained_run / tracking.TENSORBOARD_DIR
    assert list(log_dir.glob("events.out.tfevents.*")), "no event file in <run_dir>/tensorboard"
    scalars = _scalars(log_dir)
    history = [json.loads(line) for line in (trained_run / runs.HISTORY).read_text().splitlines()]
    steps = [r for r in history if "loss" in r and "val_loss" not in r]
    epochs = [r for r in history if "val_accuracy" in r]
    assert [s for s, _ in scalars["train/loss"]] == [r["step"] for r in steps]
    assert [v for _, v in scalars["train/loss"]] == pytest.approx([r["loss"] for r in steps], rel=1e-5)
    assert [v for _, v in scalars["val/accuracy"]] == pytest.approx([r["val_accuracy"] for r in epochs])
    metrics = runs.read_json(trained_run / runs.METRICS)
    assert scalars["test/accuracy"][-1][1] == pytest.approx(metrics["accuracy"])
    assert {"train/lr", "val/macro_f1", "val/loss", "test/macro_f1"} <= set(scalars)


def test_config_is_logged_as_hyperparameters(trained_run):
    import yaml

    saved = yaml.safe_load(next((trained_run / tracking.TENSORBOARD_DIR).rglob("hparams.yml")).read_text())
    assert saved["method.name"] == "lora" and saved["method.r"] == 4 and saved["train.report_to"] == "['tensorboard']"


def test_missing_tracker_package_is_a_clear_error(monkeypatch, tmp_path):
    real = tracking.importlib.util.find_spec
    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda name: None if name == "wandb" else real(name))
    with pytest.raises(PromptftError, match=r"wandb package is not installed: pip install 'promptft\[wandb\]'") as err:
        tracking.accelerator_kwargs(["tensorboard", "wandb"], tmp_path)
    assert err.value.field == "train.report_to"


def test_unknown_tracker_is_rejected_by_the_config():
    with pytest.raises(PromptftError, match="report_to"):
        validate_config({"data": {"train": "t.csv"}, "train": {"report_to": ["comet"]}})


def test_nothing_tracked_adds_nothing(tmp_path):
    assert tracking.accelerator_kwargs([], tmp_path) == {}


def test_hyperparameters_are_flat_scalars():
    flat = tracking.hyperparameters({"model": {"name": "m", "max_length": 8}, "train": {"lr": None, "report_to": []},
                                     "data": {"text_columns": ["a", "b"], "few_shot": {"k": 4}}})
    assert flat == {"model.name": "m", "model.max_length": 8, "train.lr": "null", "train.report_to": "[]",
                    "data.text_columns": "['a', 'b']", "data.few_shot.k": 4}
