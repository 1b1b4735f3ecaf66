"""Calibration: contextual and batch correction, temperature scaling and ECE against hand-computed values;
the fitted calibration is saved with a run and applied by predict/evaluate."""

from __future__ import annotations

import json

import numpy as np
import pytest
from factories import toy_sentiment_rows, write_config, write_csv

from promptft_cli.config import load_config
from promptft_cli.errors import PromptftError
from promptft_cli.tasks.calibration import (
    Calibration,
    content_free_rows,
    expected_calibration_error,
    fit_temperature,
)


def test_contextual_divides_by_the_content_free_prior_and_renormalises():
    cal = Calibration("contextual", content_free=[0.8, 0.2])
    out = cal.apply([[0.6, 0.4], [0.2, 0.8]])
    # [0.6/0.8, 0.4/0.2] = [0.75, 2] -> [3/11, 8/11]; [0.25, 4] -> [1/17, 16/17]
    np.testing.assert_allclose(out, [[3 / 11, 8 / 11], [1 / 17, 16 / 17]], rtol=1e-6)


def test_batch_subtracts_the_per_class_mean_log_probability():
    out = Calibration("batch").apply([[0.5, 0.5], [0.9, 0.1]])
    # Mean log p per class: [log(.5)+log(.9), log(.5)+log(.1)]/2; the row-0 gap becomes -log 3 -> [1/4, 3/4].
    np.testing.assert_allclose(out, [[0.25, 0.75], [0.75, 0.25]], rtol=1e-6)


def test_temperature_divides_log_probabilities():
    out = Calibration(temperature=2.0).apply([[0.8, 0.2]])
    np.testing.assert_allclose(out, [[2 / 3, 1 / 3]], rtol=1e-6)  # sqrt(.8):sqrt(.2) = 2:1


def test_fitted_temperature_makes_confidence_match_accuracy():
    # Every row says 0.9 for label 0 and 3 of 4 are right: sigmoid(log 9 / T) = 0.75 gives T = 2.
    probs = np.tile([0.9, 0.1], (8, 1))
    assert fit_temperature(probs, [0, 0, 0, 1, 0, 0, 0, 1]) == pytest.approx(2.0, rel=1e-3)


def test_ece_by_hand():
    # Three rows in three different bins: |1 - .9|, |0 - .6|, |1 - .7| weighted 1/3 each.
    probs = [[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]]
    assert expected_calibration_error(probs, [0, 1, 1]) == pytest.approx((0.1 + 0.6 + 0.3) / 3)
    assert expected_calibration_error([[0.75, 0.25]] * 4, [0, 0, 0, 1]) == pytest.approx(0.0)


def test_content_free_inputs_include_the_mask_token(bert_tokenizer):
    assert [r["text"] for r in content_free_rows(["text"], bert_tokenizer)] == ["N/A", "", "[MASK]"]


def test_linear_head_with_calibration_is_a_config_error(tmp_path, tiny_encoder):
    config = write_config(tmp_path, tiny_encoder, prompt={"calibration": "contextual"})
    with pytest.raises(PromptftError, match="linear head has none"):
        load_config(config)


@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory, tiny_encoder):
    from promptft_cli.training.loop import train

    folder = tmp_path_factory.mktemp("calibrated")
    write_csv(folder / "train.csv", toy_sentiment_rows(60))
    write_csv(folder / "test.csv", toy_sentiment_rows(20, seed=1))
    config = write_config(folder, tiny_encoder, data={"train": "train.csv", "test": "test.csv"},
                          prompt={"template": "{text}", "verbalizer": {"positive": "good", "negative": "bad"},
                                  "calibration": "contextual"},
                          method={"name": "bitfit"}, train={"epochs": 1, "lr": 1e-3})
    with pytest.MonkeyPatch.context() as m:
        m.setattr("promptft_cli.training.loop.plots.write_run_plots", lambda *a, **k: [])
        return train(load_config(config))


def test_run_saves_its_calibration_and_predict_applies_it(calibrated_run):
    from promptft_cli.inference.predict import Predictor

    saved = json.loads((calibrated_run.run_dir / "calibration.json").read_text())
    assert saved["mode"] == "contextual" and len(saved["content_free"]) == 2 and saved["temperature"] > 0
    assert 0 <= calibrated_run.metrics["ece"] <= 1
    predictor = Predictor.from_run(calibrated_run.run_dir)
    rows = [{"text": "it was good"}, {"text": "it was bad"}]
    raw = predictor.task.infer(predictor.model, predictor.encode(rows, labelled=False), 8)
    expected = Calibration(**saved).apply(raw)
    np.testing.assert_allclose(predictor.proba(rows), expected, rtol=1e-5)
    assert not np.allclose(expected, raw)  # the correction really changes the scores


def test_evaluate_reports_ece(calibrated_run):
    from promptft_cli.inference.evaluate import evaluate_target

    metrics, _ = evaluate_target(calibrated_run.run_dir)
    assert "ece" in metrics and metrics["accuracy"] == calibrated_run.metrics["accuracy"]


def test_zero_shot_predictor_fits_the_content_free_prior(tmp_path, tiny_mlm):
    from promptft_cli.inference.predict import Predictor

    write_csv(tmp_path / "train.csv", toy_sentiment_rows(20))
    config = write_config(tmp_path, tiny_mlm, method={"name": "bitfit"},
                          prompt={"template": "{text} it was {mask} .", "calibration": "contextual",
                                                      "verbalizer": {"positive": "good", "negative": "bad"}})
    predictor = Predictor.from_config(load_config(config))
    prior = predictor.calibration.content_free
    assert predictor.calibration.mode == "contextual" and sum(prior) == pytest.approx(1.0, rel=1e-5)
    # The content-free inputs themselves come out uniform after the correction (by construction of W).
    mean = predictor.proba(content_free_rows(["text"], predictor.tokenizer)).mean(axis=0)
    assert mean[0] == pytest.approx(0.5, abs=0.05)
