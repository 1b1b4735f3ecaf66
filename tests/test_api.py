"""The Python API (`import promptft_cli as pf`), used as a script would use it: no CLI anywhere."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import promptft_cli as pf
from promptft_cli import runs
from promptft_cli.tasks.classification import ClassificationMetrics, Prediction


def _test_rows(run_dir):
    lines = (run_dir / runs.DATA / "test.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_load_config_applies_overrides_and_train_returns_a_run(toy_project):
    cfg = pf.load_config(toy_project, overrides=["train.epochs=1", "output_dir=api-run", "train.early_stopping.metric=loss"])
    assert cfg.train.epochs == 1 and cfg.train.early_stopping.metric == "loss"
    assert cfg.run_dir == toy_project.parent / "api-run"
    run = pf.train(cfg)
    assert run.run_dir == cfg.run_dir and run.best_epoch == 1
    assert isinstance(run.metrics, ClassificationMetrics) and run.metrics.best_epoch == 1
    # The returned metrics are what metrics.json holds, key for key.
    assert json.loads((run.run_dir / runs.METRICS).read_text()) == run.metrics.to_dict()
    assert set(run.best_validation) == {"accuracy", "macro_f1", "loss"}
    assert "val_loss" in json.loads((run.run_dir / runs.HISTORY).read_text().splitlines()[-1])


def test_evaluate_reproduces_the_runs_test_metrics(trained_run):
    metrics = pf.evaluate(trained_run)
    saved = json.loads((trained_run / runs.METRICS).read_text())
    assert isinstance(metrics, ClassificationMetrics)
    assert metrics.to_dict() == {k: saved[k] for k in metrics.to_dict()}
    # What only training knows: the best epoch, the metric that chose it, the temperature fitted on validation.
    assert set(saved) - set(metrics.to_dict()) <= {"best_epoch", "early_stopping_metric", "temperature"}
    assert metrics["accuracy"] == metrics.accuracy  # reads like the dict it writes


def test_predictions_agree_with_evaluate_on_the_same_rows(trained_run):
    rows = _test_rows(trained_run)
    predictor = pf.Predictor(trained_run)
    predictions = predictor.predict([r["text"] for r in rows])
    metrics = pf.evaluate(trained_run)
    assert len(predictions) == len(rows) and all(isinstance(p, Prediction) for p in predictions)
    labels = predictor.labels
    confusion = [[0] * len(labels) for _ in labels]
    for row, p in zip(rows, predictions):
        confusion[labels.index(row["label"])][labels.index(p.label)] += 1
        assert p.label == max(p.probabilities, key=p.probabilities.get)
        assert p.confidence == p.probabilities[p.label]
        assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert confusion == metrics.confusion_matrix
    # A row given as {column: text} is the same input as its bare text.
    assert predictor.predict([{"text": rows[0]["text"]}]) == predictions[:1]


def test_bad_input_raises_promptft_error(tmp_path, trained_run, toy_project):
    with pytest.raises(pf.PromptftError, match="config file not found"):
        pf.load_config(tmp_path / "missing.yaml")
    with pytest.raises(pf.PromptftError) as err:
        pf.load_config(toy_project, overrides=["train.epochs=many"])
    assert err.value.field == "train.epochs"
    with pytest.raises(pf.PromptftError, match="no run directory or config file here"):
        pf.evaluate(tmp_path / "no-run")
    with pytest.raises(pf.PromptftError, match="a text or a dict of columns"):
        pf.Predictor(trained_run).predict([42])
    with pytest.raises(pf.PromptftError, match="missing column 'text'") as err:
        pf.Predictor(trained_run).predict([{"review": "great"}])
    assert err.value.row == 1
    seeds = pf.load_config(toy_project, overrides=["data.few_shot.k=2", "data.few_shot.seeds=[1,2]"])
    with pytest.raises(pf.PromptftError, match="train_seeds"):
        pf.train(seeds)


def test_importing_the_package_stays_light():
    code = ("import sys, promptft_cli as pf; cfg = pf.Config; "
            "print([m for m in ('torch', 'transformers', 'peft', 'accelerate') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        pf.nothing  # noqa: B018
