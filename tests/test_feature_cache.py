"""The feature cache: a frozen backbone's features computed once give the same predictions and the same
training as running the backbone every time."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from promptft_cli.config import load_config
from promptft_cli.modeling import feature_cache
from promptft_cli.modeling.feature_cache import FeatureCache
from promptft_cli.tasks.classification import ClassificationTask
from promptft_cli.training import loop as train


def _setup(config, *overrides):
    return train.setup(load_config(config, list(overrides)))


def test_cached_features_predict_like_the_full_forward(toy_project):
    s = _setup(toy_project)
    torch.manual_seed(3)
    with torch.no_grad():  # a head with real weights, so the comparison is not between near-uniform outputs
        s.model.head.linear.weight.normal_(0, 2.0)
        s.model.head.linear.bias.normal_(0, 1.0)
    cache = FeatureCache().fill(s.model, {"test": s.encoded["test"]}, batch_size=7)
    assert cache.tables["test"].shape == (len(s.encoded["test"]), s.model.head.linear.in_features)
    cached = cache.infer(s.model, "test")
    full = ClassificationTask().infer(s.model, s.encoded["test"], batch_size=5)
    assert abs(cached - full).max() < 1e-5
    assert cached.argmax(1).tolist() == full.argmax(1).tolist()


def test_the_cache_applies_only_to_a_frozen_backbone_and_a_cacheable_head(toy_project):
    head = _setup(toy_project)
    assert feature_cache.applies("head", head.model)
    head.model.head.cacheable_features = False  # e.g. a head whose features() has weights of its own
    assert not feature_cache.applies("head", head.model)
    lora = _setup(toy_project, "method.name=lora")
    assert not feature_cache.applies("lora", lora.model)


@pytest.fixture
def dropout_free_project(tmp_path, bert_tokenizer):
    """The toy project on a tiny encoder without dropout: then caching changes nothing but the cost."""
    from factories import toy_sentiment_rows, write_config, write_csv
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(bert_tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, pad_token_id=bert_tokenizer.pad_token_id,
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model_dir = tmp_path / "encoder"
    BertModel(cfg).save_pretrained(model_dir)
    bert_tokenizer.save_pretrained(model_dir)
    write_csv(tmp_path / "train.csv", toy_sentiment_rows(80))
    write_csv(tmp_path / "test.csv", toy_sentiment_rows(20, seed=1))
    return write_config(tmp_path, model_dir, data={"train": "train.csv", "test": "test.csv"},
                        train={"epochs": 3, "batch_size": 8, "seed": 1, "lr": 0.05})


def test_training_on_cached_features_matches_training_through_the_backbone(dropout_free_project, monkeypatch):
    fills = []
    original_fill = FeatureCache.fill
    monkeypatch.setattr(FeatureCache, "fill", lambda self, *a, **k: fills.append(1) or original_fill(self, *a, **k))
    cached = train.train(load_config(dropout_free_project, ["output_dir=cached"]))
    assert fills == [1]  # the backbone ran over the splits once, not once per epoch

    monkeypatch.setattr(feature_cache, "applies", lambda *a: False)
    uncached = train.train(load_config(dropout_free_project, ["output_dir=uncached"]))
    assert fills == [1]

    a = load_file(str(cached.run_dir / "checkpoint" / "head.safetensors"))
    b = load_file(str(uncached.run_dir / "checkpoint" / "head.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-5)
    assert cached.best_epoch == uncached.best_epoch
    assert cached.metrics["accuracy"] == uncached.metrics["accuracy"]
    losses = [[json.loads(line).get("loss") for line in (r.run_dir / "history.jsonl").read_text().splitlines()]
              for r in (cached, uncached)]
    assert losses[0] == pytest.approx(losses[1], abs=1e-5)
