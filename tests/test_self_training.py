"""Self-training: confident, balanced pseudo-labels; rounds that retrain and leave a complete run directory."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from promptft_cli import runs
from promptft_cli.cli.commands import app
from promptft_cli.config import load_config
from promptft_cli.errors import PromptftError
from promptft_cli.training import self_training


def test_select_confident_takes_the_most_confident_in_equal_numbers_per_label():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.45, 0.55], [0.99, 0.01], [0.3, 0.7], [0.1, 0.9], [0.51, 0.49]])
    picks = self_training.select_confident(probs, 0.5)  # 4 rows: 2 per predicted label
    assert picks == [(0, 0), (2, 1), (4, 0), (6, 1)]
    assert len(self_training.select_confident(probs, 1.0)) == 8


def test_select_confident_keeps_quotas_balanced_when_the_model_leans_to_one_label():
    probs = np.array([[0.1, 0.9]] * 9 + [[0.8, 0.2]])
    picks = self_training.select_confident(probs, 1.0)
    # The quota is 5 per label: all 5 'positive' slots are used, 'negative' has only one candidate.
    assert sum(label == 1 for _, label in picks) == 5 and sum(label == 0 for _, label in picks) == 1


def _unlabeled_project(toy_project, tiny_encoder, **train):
    from factories import toy_sentiment_rows, write_config, write_csv

    folder = toy_project.parent
    write_csv(folder / "unlabeled.csv", [{"text": r["text"]} for r in toy_sentiment_rows(40, seed=7)])
    return write_config(folder, tiny_encoder, data={"train": "train.csv", "test": "test.csv", "unlabeled": "unlabeled.csv"},
                        train={"epochs": 1, "batch_size": 8, "seed": 1, "self_training": {"rounds": 2, "share": 0.5, "epochs": 1, **train}})


def test_rounds_retrain_on_pseudo_labels_and_leave_a_complete_run(toy_project, tiny_encoder):
    config = _unlabeled_project(toy_project, tiny_encoder)
    # prepare first: train then reads the prepared splits back, the unlabelled one included
    assert CliRunner().invoke(app, ["prepare", str(config), "--quiet"]).exit_code == 0
    run_dir = load_config(config).run_dir
    prepared = [json.loads(line) for line in (run_dir / "data" / "unlabeled.jsonl").read_text().splitlines()]
    assert len(prepared) == 40 and all(set(row) == {"text"} for row in prepared)
    result = CliRunner().invoke(app, ["train", str(config), "--quiet", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads((run_dir / self_training.SUMMARY).read_text())
    assert summary["unlabeled"] == 40 and [r["round"] for r in summary["rounds"]] == [0, 1, 2]
    for r in (1, 2):
        counts = summary["rounds"][r]["pseudo_labeled"]
        assert counts and all(0 < n <= 10 for n in counts.values())  # share 0.5 of 40: at most 10 per label
        rows = [json.loads(line) for line in (run_dir / "data" / f"pseudo_labeled-round-{r}.jsonl").read_text().splitlines()]
        assert len(rows) == sum(counts.values()) and all(set(row) == {"text", "label", "confidence"} for row in rows)
    # Each finished round's history is kept; the selected round's test metrics are the run's.
    assert (run_dir / "history-round-0.jsonl").exists() and (run_dir / "history-round-1.jsonl").exists()
    metrics = json.loads((run_dir / runs.METRICS).read_text())
    assert metrics["accuracy"] == summary["rounds"][summary["selected_round"]]["test_accuracy"]
    assert json.loads(result.output)["accuracy"] == metrics["accuracy"]
    info = runs.RunInfo.load(run_dir)
    assert info.status == "complete"
    assert info.train_seconds == pytest.approx(sum(r["train_seconds"] for r in summary["rounds"]), abs=0.01)
    # evaluate reads a self-trained run like any other.
    evaluated = CliRunner().invoke(app, ["evaluate", str(run_dir), "--json"])
    assert evaluated.exit_code == 0 and json.loads(evaluated.output)["confusion_matrix"] == metrics["confusion_matrix"]


def test_few_shot_unlabeled_draws_train_rows_outside_the_sample_without_labels(toy_project):
    from promptft_cli.data.reading import UNLABELED, load_splits

    cfg = load_config(toy_project, ["data.few_shot={k: 4, seed: 3, unlabeled: 30}", "train.self_training={rounds: 1}"])
    data = load_splits(cfg.data, cfg.path, cfg.train.seed)
    pool = data[UNLABELED].rows
    assert len(pool) == 30 and all(set(r) == {"text"} for r in pool)
    assert not {r["text"] for r in pool} & {r["text"] for r in data["train"].rows}


@pytest.mark.parametrize("overrides, message", [
    (["train.self_training={rounds: 1}"], "train.self_training needs unlabelled data"),
    (["data.few_shot={k: 4, unlabeled: 10}"], "only used by self-training"),
    (["train.self_training={share: 0}"], "greater than 0"),
])
def test_config_errors(toy_project, overrides, message):
    with pytest.raises(PromptftError, match=message):
        load_config(toy_project, overrides)


def test_missing_unlabeled_file_and_resume_are_clear_errors(monkeypatch, capsys, toy_project, tiny_encoder):
    from test_cli import error_line, run_main

    config = _unlabeled_project(toy_project, tiny_encoder)
    code, _, err = run_main(monkeypatch, capsys, "train", config, "--set", "data.unlabeled=nowhere.csv")
    line = error_line(err)
    assert code == 2 and "nowhere.csv" in line and "data.unlabeled" in line
    code, _, err = run_main(monkeypatch, capsys, "train", config, "--resume")
    assert code == 2 and "--resume does not continue self-training" in error_line(err)


def test_unlabeled_texts_seen_in_validation_or_test_are_dropped(toy_project, tiny_encoder, monkeypatch):
    from factories import toy_sentiment_rows, write_csv

    from promptft_cli.training.loop import train

    monkeypatch.setattr("promptft_cli.training.loop.plots.write_run_plots", lambda *a, **k: [])
    config = _unlabeled_project(toy_project, tiny_encoder, rounds=1)
    folder = toy_project.parent
    test_texts = [r["text"] for r in toy_sentiment_rows(20, seed=1)][:3]  # test.csv's first rows
    pool = [{"text": r["text"]} for r in toy_sentiment_rows(40, seed=7)]
    pool += [{"text": test_texts[0]}, {"text": "  " + test_texts[1].upper()}, {"text": test_texts[2]}]
    write_csv(folder / "unlabeled.csv", pool)
    run_dir = train(load_config(config)).run_dir
    summary = json.loads((run_dir / self_training.SUMMARY).read_text())
    assert summary["unlabeled"] == 40 and summary["dropped_as_in_validation_or_test"] == 3
    pseudo = (run_dir / "data" / "pseudo_labeled-round-1.jsonl").read_text()
    assert not any(json.dumps(t) in pseudo for t in test_texts)
    assert "dropped 3 unlabelled example(s) that repeat a validation or test text" in (run_dir / runs.LOG).read_text()


def test_the_round_with_the_best_validation_score_is_kept(toy_project, tiny_encoder, monkeypatch):
    import shutil

    from promptft_cli.training import loop

    monkeypatch.setattr("promptft_cli.training.loop.plots.write_run_plots", lambda *a, **k: [])
    config = _unlabeled_project(toy_project, tiny_encoder, rounds=1)
    run_dir, real, results = load_config(config).run_dir, loop._run, []
    snapshot = toy_project.parent / "round-0"

    def run_round(s, directory, resume=False):
        result = real(s, directory, resume)
        if not results:
            shutil.copytree(directory / runs.CHECKPOINT, snapshot / runs.CHECKPOINT)
            shutil.copy2(directory / runs.METRICS, snapshot / runs.METRICS)
        else:  # validation says the pseudo-labelled round got worse, on every metric
            result.best_validation = {k: 1e9 if k == "loss" else -1.0 for k in result.best_validation}
        results.append(result)
        return result

    monkeypatch.setattr(loop, "_run", run_round)
    returned = loop.train(load_config(config))
    summary = json.loads((run_dir / self_training.SUMMARY).read_text())
    assert summary["selected_round"] == 0 and len(results) == 2
    assert (run_dir / runs.METRICS).read_bytes() == (snapshot / runs.METRICS).read_bytes()
    assert returned.metrics == results[0].metrics
    for saved in (snapshot / runs.CHECKPOINT).iterdir():
        assert (run_dir / runs.CHECKPOINT / saved.name).read_bytes() == saved.read_bytes(), saved.name
    assert (run_dir / runs.HISTORY).read_bytes() == (run_dir / "history-round-0.jsonl").read_bytes()
    assert not (run_dir / self_training.BEST_ROUND).exists()


@pytest.mark.parametrize("worse, selected", [(True, 0), (False, 1)])
def test_a_round_that_ties_the_best_validation_is_kept(toy_project, tiny_encoder, monkeypatch, worse, selected):
    """On a tie the later, self-trained round wins; one that validation shows to be worse does not."""
    from promptft_cli.training import loop

    monkeypatch.setattr("promptft_cli.training.loop.plots.write_run_plots", lambda *a, **k: [])
    config = _unlabeled_project(toy_project, tiny_encoder, rounds=1)
    real, results = loop._run, []

    def run_round(s, directory, resume=False):
        result = real(s, directory, resume)
        if results:  # round 1: the supervised round's validation scores exactly, or a hair worse
            tied = dict(results[0].best_validation)
            result.best_validation = {**tied, "accuracy": tied["accuracy"] - 1e-6} if worse else tied
        results.append(result)
        return result

    monkeypatch.setattr(loop, "_run", run_round)
    returned = loop.train(load_config(config))
    summary = json.loads((load_config(config).run_dir / self_training.SUMMARY).read_text())
    assert summary["selected_round"] == selected
    assert returned.metrics == results[selected].metrics
