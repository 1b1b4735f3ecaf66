"""Models: model-name resolution, and checkpoints that reproduce the in-memory model exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from promptft_cli.config import validate_config
from promptft_cli.errors import PromptftError
from promptft_cli.modeling.classifier import build_classifier
from promptft_cli.modeling.loading import resolve_model_path
from promptft_cli.modeling.weights import load_weights, save_weights

LABELS = ["negative", "neutral", "positive"]
METHOD_CASES = [
    {"name": "head"},
    {"name": "full"},
    {"name": "bitfit"},
    {"name": "lora", "r": 2},
    {"name": "prompt_tuning", "num_virtual_tokens": 3},
    {"name": "p_tuning", "num_virtual_tokens": 3, "encoder_hidden_size": 8},
    {"name": "prefix_tuning", "num_virtual_tokens": 3},
    {"name": "prefix_tuning", "num_virtual_tokens": 3, "prefix_projection": True},
]
PEFT_METHODS = [m for m in METHOD_CASES if m["name"] in ("lora", "prompt_tuning", "p_tuning", "prefix_tuning")]


# --- resolve_model_path ---


def test_default_is_the_embedded_minilm():
    path = Path(resolve_model_path("default"))
    assert path.is_dir() and (path / "config.json").is_file()
    assert any(path.glob("*.safetensors")) or any(path.glob("*.bin"))


@pytest.mark.parametrize("name", ["./no/such/model", "/no/such/model", "~/no-such-model", "a/b/c", "bad name!"])
def test_missing_local_model_path_is_an_error(name):
    with pytest.raises(PromptftError) as info:
        resolve_model_path(name)
    assert info.value.field == "model.name" and name in str(info.value)


@pytest.mark.parametrize("name", ["bert-base-uncased", "sentence-transformers/all-MiniLM-L6-v2", "gpt2"])
def test_hub_ids_pass_through(name):
    assert resolve_model_path(name) == name


def test_local_folder_relative_to_the_config(tmp_path, tiny_encoder):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny").symlink_to(tiny_encoder)
    assert Path(resolve_model_path("models/tiny", tmp_path)) == tmp_path / "models" / "tiny"
    (tmp_path / "empty").mkdir()
    with pytest.raises(PromptftError, match="no config.json"):
        resolve_model_path("empty", tmp_path)


# --- save_weights / load_weights ---


def build(model_dir, tokenizer, method):
    cfg = validate_config({"model": {"name": str(model_dir), "max_length": 32}, "data": {"train": "t.csv"},
                           "method": method})
    return build_classifier(cfg, LABELS, tokenizer)


def perturb(classifier) -> None:
    """Move every trainable weight away from its initial value, as training would (LoRA's B starts at 0)."""
    with torch.no_grad():
        for p in classifier.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)


def logits(classifier, tokenizer):
    batch = tokenizer(["it was great", "a bad film , not good at all", "the movie"], padding=True, return_tensors="pt")
    classifier.eval()
    with torch.no_grad():
        return classifier(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])


@pytest.mark.parametrize("method", METHOD_CASES, ids=lambda m: "-".join(map(str, m.values())))
def test_reloaded_checkpoint_reproduces_the_model(tmp_path, tiny_encoder, bert_tokenizer, method):
    torch.manual_seed(0)
    trained = build(tiny_encoder, bert_tokenizer, method)
    perturb(trained)
    expected = logits(trained, bert_tokenizer)
    save_weights(trained, tmp_path / "ckpt")

    torch.manual_seed(1)  # a different random head: only the checkpoint can make the outputs agree
    fresh = build(tiny_encoder, bert_tokenizer, method)
    assert not torch.equal(logits(fresh, bert_tokenizer), expected)
    load_weights(fresh, tmp_path / "ckpt")
    torch.testing.assert_close(logits(fresh, bert_tokenizer), expected, rtol=0, atol=0)


@pytest.mark.parametrize("method", METHOD_CASES, ids=lambda m: "-".join(map(str, m.values())))
def test_checkpoint_holds_only_what_training_changed(tmp_path, tiny_encoder, bert_tokenizer, method):
    clf = build(tiny_encoder, bert_tokenizer, method)
    save_weights(clf, tmp_path)
    files = {p.name for p in tmp_path.iterdir()}
    assert "head.safetensors" in files
    label_map = json.loads((tmp_path / "label_map.json").read_text())
    assert label_map == {"labels": LABELS, "model": str(tiny_encoder), "tokenizer": str(tiny_encoder)}
    if method in PEFT_METHODS:
        assert {"adapter_model.safetensors", "adapter_config.json"} <= files and "backbone.safetensors" not in files
    elif method["name"] == "head":
        assert "backbone.safetensors" not in files
    else:
        from safetensors.torch import load_file

        saved = load_file(str(tmp_path / "backbone.safetensors"))
        if method["name"] == "bitfit":
            assert saved and all(k.endswith(".bias") for k in saved)
        else:
            assert len(saved) == len(list(clf.backbone.parameters()))


@pytest.mark.parametrize("method", PEFT_METHODS, ids=lambda m: "-".join(map(str, m.values())))
def test_peft_checkpoint_loads_with_peft(tmp_path, tiny_encoder, bert_tokenizer, method):
    from peft import PeftModel
    from transformers import AutoModel

    clf = build(tiny_encoder, bert_tokenizer, method)
    perturb(clf)
    save_weights(clf, tmp_path)
    reloaded = PeftModel.from_pretrained(AutoModel.from_pretrained(str(tiny_encoder)), str(tmp_path)).eval()
    if method["name"] == "prefix_tuning":  # plain peft numbers BERT positions after the prefix; we do not
        from promptft_cli.methods.prefix_tuning import _positions_from_zero

        assert _positions_from_zero(reloaded)
    batch = bert_tokenizer(["it was great", "bad"], padding=True, return_tensors="pt")
    clf.eval()
    with torch.no_grad():
        ours = clf.backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        theirs = reloaded(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    torch.testing.assert_close(theirs, ours)


def test_checkpoint_of_another_config_is_refused(tmp_path, tiny_encoder, bert_tokenizer):
    save_weights(build(tiny_encoder, bert_tokenizer, {"name": "head"}), tmp_path)
    cfg = validate_config({"model": {"name": str(tiny_encoder)}, "data": {"train": "t.csv"}, "method": "head"})
    two_labels = build_classifier(cfg, ["a", "b"], bert_tokenizer)
    with pytest.raises(PromptftError, match="does not match"):
        load_weights(two_labels, tmp_path)
    with pytest.raises(PromptftError, match="adapter_model"):
        load_weights(build(tiny_encoder, bert_tokenizer, {"name": "lora"}), tmp_path)
