"""The task seam: the loop, evaluate and predict reach the task only through tasks/base.py's interface."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from promptft_cli import runs
from promptft_cli.config import load_config
from promptft_cli.tasks import base
from promptft_cli.tasks.classification import ClassificationTask, compute_metrics

CALLS: Counter = Counter()


class RecordingTask(ClassificationTask):
    """Classification that counts what the loop asks of it and doubles every loss."""

    def loss(self, model, batch):
        CALLS["loss"] += 1
        loss, n = super().loss(model, batch)
        return loss * 2, n

    def validation_metrics(self, outputs, split, labels):
        CALLS["validation_metrics"] += 1
        return super().validation_metrics(outputs, split, labels)

    def test_metrics(self, outputs, split, labels):
        CALLS["test_metrics"] += 1
        return super().test_metrics(outputs, split, labels)


def test_the_loop_trains_and_tests_through_the_registered_task(toy_project, monkeypatch):
    monkeypatch.setitem(base.TASKS, "recording", base.TaskSpec(("accuracy", "loss"), "test_tasks:RecordingTask"))
    CALLS.clear()
    from promptft_cli.training.loop import train

    plain = train(load_config(toy_project, ["output_dir=plain"]))
    recorded = train(load_config(toy_project, ["task=recording", "output_dir=recorded"]))
    assert CALLS["validation_metrics"] == 2 and CALLS["test_metrics"] == 1  # 2 epochs, one test
    assert json.loads((recorded.run_dir / runs.METRICS).read_text()) == recorded.metrics.to_dict()
    history = [json.loads(line) for line in (recorded.run_dir / runs.HISTORY).read_text().splitlines()]
    plain_history = [json.loads(line) for line in (plain.run_dir / runs.HISTORY).read_text().splitlines()]
    steps = [h for h in history if "loss" in h]
    assert CALLS["loss"] == len(steps)
    # The logged loss is the task's: the first step (same initialisation, same batch) logs twice the plain loss.
    assert steps[0]["loss"] == pytest.approx(2 * next(h["loss"] for h in plain_history if "loss" in h))


def test_an_unknown_task_name_is_a_config_error():
    with pytest.raises(Exception, match="unknown task 'nope'"):
        base.get_task("nope")


def test_metrics_read_like_the_dict_they_write():
    m = compute_metrics([0, 1, 1], [0, 1, 0], ["neg", "pos"])
    assert dict(m) == m.to_dict() and list(m)[:2] == ["accuracy", "macro_f1"]
    assert "best_epoch" not in m and "zero_shot" not in m  # only set when they apply, as metrics.json had them
    assert m.scalars() == {"accuracy": m.accuracy, "macro_f1": m.macro_f1}
