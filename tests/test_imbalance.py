"""Class imbalance: label weights change the loss as specified; macro-F1 picks checkpoints on imbalanced data."""

from __future__ import annotations

import json
import math

import pytest
import torch
from factories import toy_sentiment_rows, write_config, write_csv

from promptft_cli.config import load_config
from promptft_cli.errors import PromptftError
from promptft_cli.tasks.imbalance import class_weights, early_stopping_metric, weighted_loss


def test_balanced_weights_follow_inverse_frequency():
    # 6 of label 0, 2 of label 1: n / (labels * n_label) = 8/12, 8/4.
    assert class_weights("balanced", ["a", "b"], [0] * 6 + [1] * 2) == pytest.approx([2 / 3, 2.0])
    assert class_weights("none", ["a", "b"], [0, 1]) is None
    assert class_weights({"b": 3}, ["a", "b"], [0, 1]) == [1.0, 3.0]


def test_unknown_label_in_weights_is_an_error():
    with pytest.raises(PromptftError, match="unknown label 'c'") as exc:
        class_weights({"c": 2}, ["a", "b"], [0, 1])
    assert exc.value.field == "train.class_weights.c"


def test_weights_change_the_loss_as_expected():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    nll = -torch.log_softmax(logits, -1)[torch.arange(3), labels]
    plain = weighted_loss(logits, labels, None)
    torch.testing.assert_close(plain, nll.mean())
    weighted = weighted_loss(logits, labels, torch.tensor([1.0, 4.0]))
    torch.testing.assert_close(weighted, (nll[0] + 4 * nll[1] + 4 * nll[2]) / 9)
    assert not math.isclose(plain.item(), weighted.item())


def test_soft_targets_give_the_soft_cross_entropy():
    logits = torch.tensor([[1.0, 0.0, -1.0]])
    target = torch.tensor([[0.5, 0.25, 0.25]])
    expected = -(target * torch.log_softmax(logits, -1)).sum()
    torch.testing.assert_close(weighted_loss(logits, target, None), expected)


def test_metric_defaults_to_macro_f1_on_imbalanced_labels():
    assert early_stopping_metric(None, [0] * 30 + [1] * 10, 2) == "macro_f1"
    assert early_stopping_metric(None, [0] * 16 + [1] * 16, 2) == "accuracy"
    assert early_stopping_metric("loss", [0] * 30 + [1] * 10, 2) == "loss"


def test_training_on_imbalanced_data_uses_macro_f1_and_weights(tmp_path, tiny_encoder, monkeypatch):
    from promptft_cli.training.loop import train

    monkeypatch.setattr("promptft_cli.training.loop.plots.write_run_plots", lambda *a, **k: [])
    rows = toy_sentiment_rows(80)
    rows = [r for r in rows if r["label"] == "positive"] + [r for r in rows if r["label"] == "negative"][:10]
    write_csv(tmp_path / "train.csv", rows)
    config = write_config(tmp_path, tiny_encoder, train={"epochs": 1, "class_weights": "balanced", "lr": 0.01})
    result = train(load_config(config))
    assert json.loads((result.run_dir / "metrics.json").read_text())["early_stopping_metric"] == "macro_f1"
    log = (result.run_dir / "train.log").read_text()
    assert "early stopping on macro_f1" in log and "class weights:" in log


def test_weights_for_an_unknown_label_stop_training(tmp_path, tiny_encoder):
    from promptft_cli.training.loop import train

    write_csv(tmp_path / "train.csv", toy_sentiment_rows(40))
    config = write_config(tmp_path, tiny_encoder, train={"epochs": 1, "class_weights": {"neutral": 2.0}})
    with pytest.raises(PromptftError, match="unknown label 'neutral'"):
        train(load_config(config))
