"""Evaluate: metrics on a hand-checked example, from a run directory or its config, on other data, as a CI gate."""

from __future__ import annotations

import json
import shutil

import pytest
from factories import toy_sentiment_rows, write_csv
from test_cli import error_line, run_main

from promptft_cli.errors import PromptftError
from promptft_cli.inference.evaluate import evaluate_target
from promptft_cli.tasks.classification import compute_metrics, metrics_from_proba


def test_compute_metrics_by_hand():
    # true a a b b c ; predicted a b b b a
    m = compute_metrics([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], ["a", "b", "c"])
    assert set(m) >= {"accuracy", "macro_f1", "per_class", "confusion_matrix", "n", "labels"}
    assert m["n"] == 5 and m["labels"] == ["a", "b", "c"] and m["accuracy"] == pytest.approx(0.6)
    assert m.per_class["a"].support == 2 and m.to_dict()["per_class"]["a"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert m["per_class"]["b"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}  # never predicted
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]  # rows true, columns predicted


def test_metrics_from_probabilities_take_the_argmax():
    m = metrics_from_proba([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3]], [0, 1, 1], ["neg", "pos"])
    assert m["accuracy"] == pytest.approx(2 / 3) and m["confusion_matrix"] == [[1, 0], [1, 1]]
    assert compute_metrics([], [], ["neg", "pos"])["accuracy"] == 0.0


def test_evaluate_run_dir_reproduces_the_test_metrics(trained_run):
    metrics, run_dir = evaluate_target(trained_run)
    saved = json.loads((trained_run / "metrics.json").read_text())
    assert run_dir == trained_run and metrics["n"] == saved["n"] == 20
    assert metrics["accuracy"] == saved["accuracy"] and metrics["confusion_matrix"] == saved["confusion_matrix"]


def test_evaluate_through_the_config_file(trained_run):
    config = trained_run.parent.parent / "config.yaml"
    by_config, run_dir = evaluate_target(config)
    assert run_dir.resolve() == trained_run.resolve()
    assert by_config == evaluate_target(trained_run)[0]


def test_evaluate_other_data(trained_run, tmp_path):
    data = write_csv(tmp_path / "more.csv", toy_sentiment_rows(12, seed=5))
    metrics, _ = evaluate_target(trained_run, data)
    assert metrics["n"] == 12 and sum(s["support"] for s in metrics["per_class"].values()) == 12


def test_evaluate_data_with_an_unknown_label(trained_run, tmp_path):
    data = write_csv(tmp_path / "more.csv", [{"text": "good", "label": "positive"}, {"text": "meh", "label": "neutral"}])
    with pytest.raises(PromptftError) as info:
        evaluate_target(trained_run, data)
    assert info.value.file == str(data) and info.value.row == 3 and info.value.field == "label"
    assert "'neutral'" in info.value.message


@pytest.fixture
def run_copy(trained_run, tmp_path):
    """evaluate writes evaluation.json into the run directory: work on a copy."""
    return shutil.copytree(trained_run, tmp_path / "run")


def test_cli_json_and_min_accuracy_gate(monkeypatch, capsys, run_copy):
    monkeypatch.setattr("promptft_cli.runs.plots.plot_confusion", lambda *a, **k: run_copy / "figure.png")
    code, out, _ = run_main(monkeypatch, capsys, "evaluate", run_copy, "--json", "--min-accuracy", "0")
    metrics = json.loads(out)
    assert code == 0 and set(metrics) >= {"accuracy", "macro_f1", "per_class", "confusion_matrix", "n"}
    assert json.loads((run_copy / "evaluation.json").read_text())["accuracy"] == metrics["accuracy"]

    code, out, err = run_main(monkeypatch, capsys, "evaluate", run_copy, "--json", "--min-accuracy", "1.01")
    assert code == 1 and json.loads(out)["accuracy"] == metrics["accuracy"]  # the numbers still print
    assert "below --min-accuracy 1.01" in err and "Traceback" not in err


def test_cli_data_option(monkeypatch, capsys, run_copy, tmp_path):
    monkeypatch.setattr("promptft_cli.runs.plots.plot_confusion", lambda *a, **k: run_copy / "figure.png")
    data = write_csv(tmp_path / "extra.csv", toy_sentiment_rows(6, seed=9))
    code, out, _ = run_main(monkeypatch, capsys, "evaluate", run_copy, "--data", data, "--json")
    assert code == 0 and json.loads(out)["n"] == 6 and (run_copy / "evaluation-extra.json").is_file()
    code, _, err = run_main(monkeypatch, capsys, "evaluate", run_copy, "--data", tmp_path / "none.csv")
    assert code == 2 and "none.csv" in error_line(err)
