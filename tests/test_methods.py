"""Methods: each registered method trains exactly its parameter subset (plus the head) and checks its options."""

from __future__ import annotations

import pytest
import torch

from promptft_cli.config import validate_config
from promptft_cli.errors import PromptftError
from promptft_cli.methods import METHODS
from promptft_cli.modeling.classifier import build_classifier, trainable_parameters

LABELS = ["negative", "positive"]


def classifier_for(model_dir, bert_tokenizer, method: dict):
    cfg = validate_config({"model": {"name": str(model_dir), "max_length": 32}, "data": {"train": "t.csv"},
                           "method": method})
    return build_classifier(cfg, LABELS, bert_tokenizer)


def trainable(classifier) -> tuple[set[str], set[str]]:
    """Names of trainable parameters inside the backbone, and outside it (the head)."""
    names = {n for n, p in classifier.named_parameters() if p.requires_grad}
    backbone = {n.removeprefix("backbone.") for n in names if n.startswith("backbone.")}
    return backbone, names - {f"backbone.{n}" for n in backbone}


def all_head(classifier) -> set[str]:
    return {n for n, _ in classifier.named_parameters() if not n.startswith("backbone.")}


def test_registry_holds_every_method():
    assert set(METHODS) == {"full", "head", "bitfit", "prompt_tuning", "p_tuning", "prefix_tuning", "lora"}
    for method in METHODS.values():
        assert method.default_lr > 0 and method.summary
    assert METHODS["head"].frozen_backbone and not METHODS["full"].frozen_backbone


def test_head_trains_only_the_head(tiny_encoder, bert_tokenizer):
    clf = classifier_for(tiny_encoder, bert_tokenizer, {"name": "head"})
    backbone, head = trainable(clf)
    assert backbone == set() and head == all_head(clf) == {"head.linear.weight", "head.linear.bias"}
    assert trainable_parameters(clf) == 32 * 2 + 2


def test_full_trains_everything(tiny_encoder, bert_tokenizer):
    clf = classifier_for(tiny_encoder, bert_tokenizer, {"name": "full"})
    assert all(p.requires_grad for p in clf.parameters())


def test_bitfit_trains_biases_and_head(tiny_encoder, bert_tokenizer):
    clf = classifier_for(tiny_encoder, bert_tokenizer, {"name": "bitfit"})
    backbone, head = trainable(clf)
    biases = {n for n, _ in clf.backbone.named_parameters() if n.endswith(".bias")}
    assert backbone == biases and len(biases) > 10 and head == all_head(clf)


def test_lora_trains_adapters_and_head(tiny_encoder, bert_tokenizer):
    clf = classifier_for(tiny_encoder, bert_tokenizer, {"name": "lora", "r": 2})
    backbone, head = trainable(clf)
    assert backbone and all("lora_" in n for n in backbone) and head == all_head(clf)
    assert any("lora_A" in n for n in backbone) and any("lora_B" in n for n in backbone)
    assert all(p.shape[0] == 2 for n, p in clf.backbone.named_parameters() if "lora_A" in n)
    assert clf.is_peft


def test_lora_target_modules_option(tiny_encoder, bert_tokenizer):
    clf = classifier_for(tiny_encoder, bert_tokenizer, {"name": "lora", "target_modules": ["value"]})
    backbone, _ = trainable(clf)
    assert backbone and all(".value.lora_" in n for n in backbone)


@pytest.mark.parametrize("name", ["prompt_tuning", "p_tuning", "prefix_tuning"])
def test_prompt_methods_train_prompt_encoder_and_head(tiny_encoder, bert_tokenizer, name):
    clf = classifier_for(tiny_encoder, bert_tokenizer, {"name": name, "num_virtual_tokens": 4})
    backbone, head = trainable(clf)
    assert backbone and all(n.startswith("prompt_encoder.") for n in backbone) and head == all_head(clf)
    assert clf.is_peft and clf.virtual_tokens == (0 if name == "prefix_tuning" else 4)


@pytest.mark.parametrize(
    "method",
    [{"name": "head"}, {"name": "full"}, {"name": "bitfit"}, {"name": "lora", "r": 2},
     {"name": "prompt_tuning", "num_virtual_tokens": 3, "init": "random"},
     {"name": "prompt_tuning", "num_virtual_tokens": 3, "init": "text", "init_text": "great or bad"},
     {"name": "p_tuning", "num_virtual_tokens": 3, "encoder_type": "LSTM", "encoder_hidden_size": 8},
     {"name": "prefix_tuning", "num_virtual_tokens": 3, "prefix_projection": True}],
    ids=lambda m: "-".join(str(v) for v in m.values()),
)
def test_every_method_gives_one_logit_per_label_and_gradients(tiny_encoder, bert_tokenizer, method):
    clf = classifier_for(tiny_encoder, bert_tokenizer, method)
    batch = bert_tokenizer(["it was great", "a bad film , not good"], padding=True, return_tensors="pt")
    logits = clf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    assert logits.shape == (2, len(LABELS)) and torch.isfinite(logits).all()
    torch.nn.functional.cross_entropy(logits, torch.tensor([1, 0])).backward()
    # BERT's pooler is not used (the head pools token states itself), so it alone gets no gradient.
    grads = [p.grad for n, p in clf.named_parameters() if p.requires_grad and ".pooler." not in n]
    assert grads and all(g is not None for g in grads)
    assert all(p.grad is None for p in clf.parameters() if not p.requires_grad)


def test_prompt_tuning_text_init_starts_from_the_words(tiny_encoder, bert_tokenizer):
    clf = classifier_for(tiny_encoder, bert_tokenizer,
                         {"name": "prompt_tuning", "num_virtual_tokens": 4, "init_text": "great bad"})
    ids = bert_tokenizer("great bad")["input_ids"]  # peft tokenizes the init text with [CLS] ... [SEP]
    assert len(ids) == 4
    words = clf.backbone.get_input_embeddings().weight[ids]
    prompt = next(p for n, p in clf.backbone.named_parameters() if n.startswith("prompt_encoder."))
    torch.testing.assert_close(prompt.detach(), words.detach())


@pytest.mark.parametrize(
    ("method", "field"),
    [
        ({"name": "lora", "r": 0}, "method.r"),
        ({"name": "lora", "dropout": 1.5}, "method.dropout"),
        ({"name": "lora", "target_modules": "query"}, "method.target_modules"),
        ({"name": "prompt_tuning", "num_virtual_tokens": 0}, "method.num_virtual_tokens"),
        ({"name": "prompt_tuning", "init": "vocab"}, "method.init"),
        ({"name": "p_tuning", "encoder_type": "GRU"}, "method.encoder_type"),
        ({"name": "prefix_tuning", "prefix_projection": "sometimes"}, "method.prefix_projection"),
        ({"name": "bitfit", "r": 4}, "method.r"),
        ({"name": "head", "lr": 0.1}, "method.lr"),
    ],
)
def test_method_options_are_validated(method, field):
    with pytest.raises(PromptftError) as info:
        validate_config({"data": {"train": "t.csv"}, "method": method})
    assert info.value.field == field


@pytest.mark.parametrize("method, moves", [
    ({"name": "head"}, set()), ({"name": "full"}, {"encoder.layer.0.attention.self.query.weight"}),
    ({"name": "bitfit"}, {"encoder.layer.0.attention.self.query.bias"}),
    ({"name": "lora", "r": 2}, {"base_model.model.encoder.layer.0.attention.self.query.lora_B.default.weight"}),
    ({"name": "prompt_tuning", "num_virtual_tokens": 3}, {"prompt_encoder.default.embedding.weight"}),
    ({"name": "prefix_tuning", "num_virtual_tokens": 3}, {"prompt_encoder.default.embedding.weight"}),
], ids=lambda m: m["name"] if isinstance(m, dict) else "")
def test_one_step_moves_the_methods_weights_and_nothing_frozen(tiny_encoder, bert_tokenizer, method, moves):
    clf = classifier_for(tiny_encoder, bert_tokenizer, method)
    before = {n: p.detach().clone() for n, p in clf.named_parameters()}
    optimizer = torch.optim.SGD([p for p in clf.parameters() if p.requires_grad], lr=0.5)
    batch = bert_tokenizer(["it was great", "a bad film , not good"], padding=True, return_tensors="pt")
    torch.nn.functional.cross_entropy(clf(**batch), torch.tensor([1, 0])).backward()
    optimizer.step()
    changed = {n for n, p in clf.named_parameters() if not torch.equal(p, before[n])}
    frozen = {n for n, p in clf.named_parameters() if not p.requires_grad}
    assert not changed & frozen and all_head(clf) <= changed
    assert {n.removeprefix("backbone.") for n in changed - all_head(clf)} >= moves
    assert (changed - all_head(clf)) if moves else not (changed - all_head(clf))
