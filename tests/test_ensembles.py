"""Prompt ensembles: scores combined as specified, entry errors name the entry, PET distillation on soft labels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from factories import toy_sentiment_rows, write_config, write_csv

from promptft_cli.config import load_config
from promptft_cli.errors import PromptftError
from promptft_cli.prompting.ensembles import accuracy_weights, combine

PAIRS = [{"template": "{text}", "verbalizer": {"positive": "good", "negative": "bad"}},
         {"template": "a review : {text}", "verbalizer": {"positive": ["great", "fine"], "negative": ["terrible", "poor"]}}]


def test_mean_combination_is_the_normalised_geometric_mean():
    out = combine([np.array([[0.8, 0.2]]), np.array([[0.5, 0.5]])])
    np.testing.assert_allclose(out, [[2 / 3, 1 / 3]], rtol=1e-6)  # sqrt(.4) : sqrt(.1) = 2 : 1


def test_weighted_combination_follows_the_weights():
    out = combine([np.array([[0.8, 0.2]]), np.array([[0.5, 0.5]])], [3.0, 1.0])
    ratio = 4 ** 0.75  # (0.8 / 0.2) ** (3/4) * 1 ** (1/4)
    np.testing.assert_allclose(out, [[ratio / (1 + ratio), 1 / (1 + ratio)]], rtol=1e-6)
    # All-zero weights (no pair right on train) fall back to the plain mean.
    np.testing.assert_allclose(combine([np.array([[0.8, 0.2]])] * 2, [0.0, 0.0]), [[0.8, 0.2]], rtol=1e-6)


def test_accuracy_weights_are_train_accuracies():
    probs = [np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([[0.4, 0.6], [0.3, 0.7]])]
    assert accuracy_weights(probs, [0, 1]) == [1.0, 0.5]


def ensemble_project(folder, model_dir, **prompt):
    write_csv(folder / "train.csv", toy_sentiment_rows(40))
    write_csv(folder / "test.csv", toy_sentiment_rows(12, seed=1))
    return write_config(folder, model_dir, data={"train": "train.csv", "test": "test.csv"}, method={"name": "bitfit"},
                        prompt={"ensemble": PAIRS, **prompt}, train={"epochs": 1, "lr": 1e-3})


def test_zero_shot_ensemble_combines_its_pairs(tmp_path, tiny_encoder):
    from promptft_cli.data.prepare import prepare
    from promptft_cli.inference.predict import Predictor

    cfg = load_config(ensemble_project(tmp_path, tiny_encoder, ensemble_weighting="accuracy"))
    predictor = Predictor.from_config(cfg)
    assert len(predictor.members) == 2 and predictor.labels == ["positive", "negative"]
    rows = [{"text": "it was good"}, {"text": "the movie was awful"}]
    member_probs = [m.proba(rows) for m in predictor.members]
    train_rows = prepare(cfg, predictor.tokenizer)["train"].rows
    index = {label: i for i, label in enumerate(predictor.labels)}
    expected_weights = accuracy_weights([m.proba(train_rows) for m in predictor.members],
                                        [index[r["label"]] for r in train_rows])
    assert predictor.weights == pytest.approx(expected_weights)
    np.testing.assert_allclose(predictor.proba(rows), combine(member_probs, expected_weights), rtol=1e-5)


def test_bad_ensemble_entry_names_index_and_field(tmp_path, tiny_encoder):
    from promptft_cli.inference.predict import Predictor

    bad = [PAIRS[0], {"template": "{text} {review}"}]
    cfg = load_config(write_config(tmp_path, tiny_encoder, prompt={"ensemble": bad, "verbalizer": PAIRS[0]["verbalizer"]}))
    with pytest.raises(PromptftError, match=r"prompt.ensemble\[1\]") as exc:
        Predictor.from_config(cfg)
    assert exc.value.field == "prompt.ensemble[1].template"


def test_entry_without_label_words_is_a_config_error(tmp_path, tiny_encoder):
    config = write_config(tmp_path, tiny_encoder, prompt={"ensemble": [PAIRS[0], {"template": "{text} !"}]})
    with pytest.raises(PromptftError, match=r"prompt.ensemble\[1\].verbalizer"):
        load_config(config)


def test_soft_labels_reach_the_loss_as_distributions():
    from promptft_cli.modeling.batching import collate
    from promptft_cli.prompting.encoding import EncodedSplit
    from promptft_cli.tasks.imbalance import weighted_loss
    from promptft_cli.training.self_training import with_soft_labels

    labelled = EncodedSplit([[1, 2]], [None], [[]], labels=[1])
    pool = EncodedSplit([[3, 4, 5]], [None], [[]])
    split = with_soft_labels(labelled, pool, np.array([[0.7, 0.3]]))
    batch = collate(split, [0, 1], pad_id=0)
    torch.testing.assert_close(batch["labels"], torch.tensor([[0.0, 1.0], [0.7, 0.3]]))
    # Distillation's fixed point: fitting free logits to a soft target reproduces the target distribution.
    logits = torch.zeros(1, 2, requires_grad=True)
    optimizer = torch.optim.SGD([logits], lr=1.0)
    for _ in range(300):
        optimizer.zero_grad()
        weighted_loss(logits, torch.tensor([[0.7, 0.3]]), None).backward()
        optimizer.step()
    torch.testing.assert_close(torch.softmax(logits, -1).detach(), torch.tensor([[0.7, 0.3]]), atol=1e-3, rtol=0)


def test_trained_ensemble_distils_into_one_model(tmp_path, tiny_encoder, monkeypatch):
    from promptft_cli.training.loop import train

    monkeypatch.setattr("promptft_cli.training.loop.plots.write_run_plots", lambda *a, **k: [])
    write_csv(tmp_path / "unlabeled.csv", [{"text": r["text"]} for r in toy_sentiment_rows(30, seed=5)])
    config = ensemble_project(tmp_path, tiny_encoder)
    raw = load_config(config, ["data.unlabeled=unlabeled.csv"])
    result = train(raw)
    run_dir = result.run_dir
    summary = json.loads((run_dir / "ensemble.json").read_text())
    assert len(summary["pairs"]) == 2 and summary["unlabeled"] == 30
    assert all((run_dir / f"pattern-{i}" / "checkpoint").is_dir() for i in range(2))
    soft = [json.loads(line) for line in (run_dir / "data" / "soft_labeled.jsonl").read_text().splitlines()]
    assert len(soft) == 30 and all(sum(r["soft_label"].values()) == pytest.approx(1.0, abs=1e-4) for r in soft)
    # The final model is an ordinary run: predict loads it alone.
    from promptft_cli.inference.predict import Predictor

    predictor = Predictor.from_run(run_dir)
    assert predictor.members is None and predictor.proba([{"text": "good"}]).shape == (1, 2)


def test_trained_ensemble_without_unlabelled_data_is_an_error(tmp_path, tiny_encoder, monkeypatch):
    from promptft_cli.training.loop import train

    with pytest.raises(PromptftError, match="unlabelled data"):
        train(load_config(ensemble_project(tmp_path, tiny_encoder)))
