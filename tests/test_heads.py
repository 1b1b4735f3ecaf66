"""Scoring heads on tiny random models: shapes, multi-token words, soft prompts, training, rejected combos."""

from __future__ import annotations

import json
import logging
import re

import pytest
import torch
from factories import toy_sentiment_rows, write_config, write_csv

from promptft_cli.config import load_config
from promptft_cli.errors import PromptftError
from promptft_cli.methods import METHODS
from promptft_cli.modeling.batching import collate
from promptft_cli.modeling.classifier import build_classifier
from promptft_cli.modeling.heads import LMVerbalizerHead, SimilarityHead
from promptft_cli.modeling.loading import load_tokenizer
from promptft_cli.modeling.weights import load_weights, save_weights
from promptft_cli.prompting.encoding import encode_rows
from promptft_cli.prompting.templates import template_for

LABELS = ["negative", "positive"]
WORDS = {"positive": ["great", "fantastic"], "negative": "terrible"}  # "fantastic" is several tokens everywhere
TEMPLATES = {"mlm": "{text} It was {mask}.", "causal": "{text} It was", "encoder": "{text}"}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny models gain nothing from threads, and on a busy machine OpenMP's spin-waiting makes two
    # threads 10-100x slower than one (measured on the shared 2-core CI box).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def models(tiny_mlm, tiny_gpt2, tiny_encoder):
    return {"mlm": tiny_mlm, "causal": tiny_gpt2, "encoder": tiny_encoder}


def build(tmp_path, model_dir, *, template, verbalizer=WORDS, method="lora", **prompt):
    path = write_config(tmp_path, model_dir, prompt={"template": template, "verbalizer": verbalizer, **prompt},
                        method={"name": method})
    cfg = load_config(path)
    tokenizer = load_tokenizer(cfg.model, cfg.base_dir)
    return build_classifier(cfg, LABELS, tokenizer), cfg, tokenizer


def batch_of(cfg, tokenizer, rows):
    split = encode_rows(rows, template_for(cfg), tokenizer, cfg.model.max_length, {l: i for i, l in enumerate(LABELS)})
    return collate(split, list(range(len(rows))), tokenizer.pad_token_id)


def logits(classifier, batch):
    return classifier(**{k: v for k, v in batch.items() if k != "labels"})


@pytest.mark.parametrize("kind,head_type", [("mlm", LMVerbalizerHead), ("causal", LMVerbalizerHead),
                                            ("encoder", SimilarityHead)])
def test_each_head_scores_every_label(tmp_path, models, kind, head_type):
    classifier, cfg, tok = build(tmp_path, models[kind], template=TEMPLATES[kind])
    out = logits(classifier, batch_of(cfg, tok, toy_sentiment_rows(5)))
    assert isinstance(classifier.head, head_type)
    assert out.shape == (5, 2) and torch.isfinite(out).all()


def test_masked_lm_multi_token_word_is_mean_log_prob_at_the_mask(tmp_path, tiny_mlm):
    classifier, cfg, tok = build(tmp_path, tiny_mlm, template=TEMPLATES["mlm"], method="full")
    batch = batch_of(cfg, tok, toy_sentiment_rows(3))
    classifier.eval()
    with torch.no_grad():
        out = logits(classifier, batch)
        full = classifier.backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    at_mask = torch.log_softmax(full[torch.arange(3), batch["mask_positions"]], dim=-1)
    fantastic = tok(" fantastic", add_special_tokens=False)["input_ids"]
    assert len(fantastic) > 1
    word_scores = [at_mask[:, tok("great", add_special_tokens=False)["input_ids"][0]], at_mask[:, fantastic].mean(1)]
    expected_pos = torch.stack(word_scores).mean(0)  # combine: mean over the label's words
    expected_neg = at_mask[:, tok("terrible", add_special_tokens=False)["input_ids"]].mean(1)
    torch.testing.assert_close(out, torch.stack([expected_neg, expected_pos], dim=1), rtol=1e-4, atol=1e-4)


def test_causal_lm_scores_the_teacher_forced_continuation(tmp_path, tiny_gpt2):
    words = {"positive": ["great", "superb"], "negative": "terrible"}  # "superb" is not in the BPE's corpus
    classifier, cfg, tok = build(tmp_path, tiny_gpt2, template=TEMPLATES["causal"], verbalizer=words, method="full",
                                 combine="max")
    rows = toy_sentiment_rows(2)
    batch = batch_of(cfg, tok, rows)
    classifier.eval()
    with torch.no_grad():
        out = logits(classifier, batch)
        for b in range(2):
            prompt = batch["input_ids"][b, : int(batch["attention_mask"][b].sum())].tolist()

            def mean_log_prob(word):
                ids = tok(" " + word, add_special_tokens=False)["input_ids"]
                seq = torch.tensor([prompt + ids])
                lp = torch.log_softmax(classifier.backbone(input_ids=seq).logits[0], dim=-1)
                return torch.stack([lp[len(prompt) - 1 + i, t] for i, t in enumerate(ids)]).mean()

            assert len(tok(" superb", add_special_tokens=False)["input_ids"]) > 1
            positive = torch.maximum(mean_log_prob("great"), mean_log_prob("superb"))
            torch.testing.assert_close(out[b], torch.stack([mean_log_prob("terrible"), positive]), rtol=1e-4, atol=1e-4)


def test_similarity_head_starts_at_the_label_phrases(tmp_path, tiny_encoder):
    classifier, cfg, tok = build(tmp_path, tiny_encoder, template="{text}", combine="max")
    assert classifier.head.vectors.shape == (3, 32)  # combine max: one vector per phrase
    assert classifier.head.cacheable_features
    classifier_mean, _, _ = build(tmp_path, tiny_encoder, template="{text}", combine="mean")
    assert classifier_mean.head.vectors.shape == (2, 32)  # combine mean: one prototype per label
    # A text identical to a label phrase is most similar to that phrase's label.
    out = logits(classifier, batch_of(cfg, tok, [{"text": "terrible", "label": "negative"},
                                                 {"text": "great", "label": "positive"}]))
    assert out.argmax(1).tolist() == [0, 1]


def test_soft_prompt_vectors_start_at_their_words_and_train(tmp_path, tiny_mlm):
    template = '{soft:2} {text} {soft:"it was"} {mask}.'
    classifier, cfg, tok = build(tmp_path, tiny_mlm, template=template, method="lora")
    soft = classifier.soft_prompt.vectors
    assert soft.shape == (4, 32) and soft.requires_grad
    table = classifier.backbone.get_input_embeddings().weight
    torch.testing.assert_close(soft[2:].detach(), table[tok("it was", add_special_tokens=False)["input_ids"]].detach())
    assert not classifier.head.cacheable_features  # soft vectors feed the backbone
    batch = batch_of(cfg, tok, toy_sentiment_rows(4))
    before = logits(classifier, batch)
    before.sum().backward()
    assert soft.grad is not None and soft.grad.abs().sum() > 0
    with torch.no_grad():
        soft.add_(torch.randn_like(soft))  # not a constant shift: the embedding LayerNorm would undo it
    assert not torch.allclose(before, logits(classifier, batch))


@pytest.mark.parametrize("kind", ["mlm", "causal", "encoder", "linear"])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_trains_every_head_that_makes_sense(tmp_path, models, kind, method):
    extra = {"head": "linear"} if kind == "linear" else {}
    model = models["encoder" if kind == "linear" else kind]
    template = "{text}" if kind == "linear" else TEMPLATES[kind]
    if method == "head" and kind in ("mlm", "causal"):
        with pytest.raises(PromptftError, match="nothing would train") as err:
            build(tmp_path, model, template=template, method=method, **extra)
        assert err.value.field == "method.name"
        return
    classifier, cfg, tok = build(tmp_path, model, template=template, method=method, **extra)
    batch = batch_of(cfg, tok, toy_sentiment_rows(4))
    loss = torch.nn.functional.cross_entropy(logits(classifier, batch), batch["labels"])
    loss.backward()
    params = dict(classifier.named_parameters())
    moved = {n for n, p in params.items() if p.grad is not None and p.grad.abs().sum() > 0}
    assert all(params[n].requires_grad for n in moved)  # frozen weights get no gradient
    in_backbone = {n for n in moved if n.startswith("backbone.")}
    # The method's own weights learn, not only the head: head trains nothing inside the backbone, the rest do.
    assert (not in_backbone) if method == "head" else in_backbone, sorted(moved)
    expected = {"lora": "lora_B", "prompt_tuning": "prompt_encoder", "p_tuning": "prompt_encoder",
                "prefix_tuning": "prompt_encoder", "bitfit": ".bias"}.get(method)
    assert expected is None or any(expected in n for n in in_backbone), sorted(in_backbone)
    head = {n for n in params if n.startswith("head.")}
    assert head <= moved  # the head's own weights (linear layer, label vectors, scale) all learn


@pytest.mark.parametrize("method", sorted(METHODS))
def test_soft_vectors_train_under_every_method(tmp_path, tiny_mlm, method):
    classifier, cfg, tok = build(tmp_path, tiny_mlm, template='{soft:2} {text} {soft:"it was"} {mask}.', method=method)
    batch = batch_of(cfg, tok, toy_sentiment_rows(4))
    torch.nn.functional.cross_entropy(logits(classifier, batch), batch["labels"]).backward()
    assert classifier.soft_prompt.vectors.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["mlm", "causal", "encoder"])
def test_a_few_steps_move_predictions_toward_the_labels(tmp_path, models, kind):
    torch.manual_seed(0)
    classifier, cfg, tok = build(tmp_path, models[kind], template=TEMPLATES[kind], method="full")
    batch = batch_of(cfg, tok, toy_sentiment_rows(16))
    params = [p for p in classifier.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=3e-3)

    def true_label_prob():
        classifier.eval()
        with torch.no_grad():
            return torch.softmax(logits(classifier, batch), -1)[torch.arange(16), batch["labels"]].mean().item()

    before = true_label_prob()
    classifier.train()
    for _ in range(8):
        loss = torch.nn.functional.cross_entropy(logits(classifier, batch), batch["labels"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert true_label_prob() > before + 0.1


def test_checkpoint_round_trip_keeps_label_vectors_and_soft_prompt(tmp_path, tiny_encoder):
    classifier, cfg, tok = build(tmp_path, tiny_encoder, template="{soft:2} {text}", method="lora")
    with torch.no_grad():
        classifier.head.vectors.add_(0.5)
        classifier.soft_prompt.vectors.add_(0.5)
    save_weights(classifier, tmp_path / "ckpt")
    fresh = build_classifier(cfg, LABELS, tok, report=False)
    load_weights(fresh, tmp_path / "ckpt")
    batch = batch_of(cfg, tok, toy_sentiment_rows(3))
    classifier.eval(), fresh.eval()
    torch.testing.assert_close(logits(classifier, batch), logits(fresh, batch))


def test_linear_head_rows_start_at_the_label_words(tmp_path, tiny_encoder):
    classifier, _, _ = build(tmp_path, tiny_encoder, template="{text}", head="linear")
    weight = classifier.head.linear.weight
    cosine = torch.nn.functional.cosine_similarity(weight[0], weight[1], dim=0)
    assert cosine < 0.999 and torch.all(classifier.head.linear.bias == 0)
    plain, _, _ = build(tmp_path, tiny_encoder, template="{text}", head="linear", init_from_verbalizer=False)
    assert not torch.allclose(plain.head.linear.weight, weight)


@pytest.mark.parametrize("kind,template,field,match", [
    ("mlm", "{text} It was great.", "prompt.template", "add it to the template"),
    ("causal", "{text} It was {mask}.", "prompt.template", "remove {mask}"),
])
def test_combinations_that_cannot_work_are_refused(tmp_path, models, kind, template, field, match):
    with pytest.raises(PromptftError, match=match) as err:
        build(tmp_path, models[kind], template=template)
    assert err.value.field == field


def test_frozen_backbone_with_soft_prompt_trains_the_soft_vectors(tmp_path, tiny_mlm):
    classifier, _, _ = build(tmp_path, tiny_mlm, template="{soft:3} {text} It was {mask}.", method="head")
    assert [n for n, p in classifier.named_parameters() if p.requires_grad] == ["soft_prompt.vectors"]


def test_split_and_unknown_words_are_reported_at_start_up(tmp_path, tiny_mlm, caplog):
    with caplog.at_level(logging.WARNING, logger="promptft"):
        build(tmp_path, tiny_mlm, template=TEMPLATES["mlm"], verbalizer={"positive": "fantastic", "negative": "bad"})
    assert any("'fantastic' splits into 3 tokens" in r.getMessage() for r in caplog.records)


def test_evaluate_and_predict_a_config_without_a_run_score_zero_shot(tmp_path, tiny_mlm):
    from promptft_cli.inference.evaluate import evaluate_target
    from promptft_cli.inference.predict import Predictor

    write_csv(tmp_path / "train.csv", toy_sentiment_rows(40))
    path = write_config(tmp_path, tiny_mlm, prompt={"template": TEMPLATES["mlm"], "verbalizer": WORDS},
                        method={"name": "lora"})
    metrics, run_dir = evaluate_target(path)
    assert metrics["zero_shot"] and metrics["n"] == 8
    test_rows = [json.loads(line) for line in (run_dir / "data" / "test.jsonl").read_text().splitlines()]
    predictor = Predictor.for_target(path)
    assert predictor.zero_shot and predictor.labels == ["positive", "negative"]
    # evaluate and predict score with the same untrained model: its accuracy is the predictions' hit rate.
    predicted = [predictor.labels[i] for i in predictor.proba(test_rows).argmax(1)]
    hits = sum(p == row["label"] for p, row in zip(predicted, test_rows))
    assert metrics["accuracy"] == pytest.approx(hits / 8)
    assert metrics["confusion_matrix"] == [[sum(row["label"] == t and p == q for p, row in zip(predicted, test_rows))
                                            for q in predictor.labels] for t in predictor.labels]


def test_zero_shot_needs_a_verbalizer(tmp_path, tiny_encoder):
    from promptft_cli.inference.predict import Predictor

    write_csv(tmp_path / "train.csv", toy_sentiment_rows(20))
    path = write_config(tmp_path, tiny_encoder)
    with pytest.raises(PromptftError, match="zero-shot scoring needs a verbalizer"):
        Predictor.for_target(path)


@pytest.mark.integration
def test_minilm_zero_shot_beats_chance_on_sentiment(tmp_path):
    import csv
    from pathlib import Path

    from promptft_cli.inference.predict import Predictor

    sample = Path(__file__).resolve().parents[1] / "sample_data" / "sentiment.csv"
    with sample.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    rows = [r for r in rows if r["label"] == "positive"][:15] + [r for r in rows if r["label"] == "negative"][:15]
    path = write_config(tmp_path, "default", prompt={
        "template": "{text}",
        "verbalizer": {"positive": ["great, I loved it", "excellent"], "negative": ["terrible, I hated it", "awful"]}})
    predictor = Predictor.for_target(path)
    probs = predictor.proba([{"text": r["text"]} for r in rows])
    accuracy = sum(predictor.labels[p.argmax()] == r["label"] for p, r in zip(probs, rows)) / len(rows)
    assert accuracy >= 0.8


@pytest.mark.parametrize("kind,method", [("mlm", "lora"), ("encoder", "head")])
def test_a_trained_run_reloads_to_the_same_test_metrics(tmp_path, models, kind, method):
    from promptft_cli.inference.evaluate import evaluate_target
    from promptft_cli.training.loop import train

    write_csv(tmp_path / "train.csv", toy_sentiment_rows(40))
    path = write_config(tmp_path, models[kind], prompt={"template": TEMPLATES[kind], "verbalizer": WORDS},
                        method={"name": method}, train={"epochs": 2, "batch_size": 8, "seed": 1})
    result = train(load_config(path))
    metrics, _ = evaluate_target(path)
    assert "zero_shot" not in metrics
    assert metrics["accuracy"] == result.metrics["accuracy"]
    assert metrics["confusion_matrix"] == result.metrics["confusion_matrix"]


# --- pooling with peft virtual tokens (issue 11) -------------------------------------------------------------


def _virtual_classifier(tmp_path, model_dir, method, pooling, head="linear"):
    prompt = {"template": "{text}", "head": head}
    if head == "verbalizer":
        prompt["verbalizer"] = WORDS
    path = write_config(tmp_path, model_dir, prompt=prompt, method={"name": method, "num_virtual_tokens": 5},
                        model={"name": str(model_dir), "max_length": 32, "pooling": pooling})
    cfg = load_config(path)
    tokenizer = load_tokenizer(cfg.model, cfg.base_dir)
    classifier = build_classifier(cfg, LABELS, tokenizer).eval()
    rows = [{"text": "it was great", "label": "positive"}, {"text": "a terrible film , bad", "label": "negative"}]
    return classifier, batch_of(cfg, tokenizer, rows)


@pytest.mark.parametrize("method", ["prompt_tuning", "p_tuning"])
@pytest.mark.parametrize("pooling", ["cls", "last", "mean"])
def test_pooling_reads_real_tokens_not_the_virtual_ones(tmp_path, tiny_encoder, method, pooling):
    classifier, batch = _virtual_classifier(tmp_path, tiny_encoder, method, pooling)
    with torch.no_grad():
        features = classifier.features(batch["input_ids"], batch["attention_mask"])
        hidden = classifier.backbone(input_ids=batch["input_ids"],
                                     attention_mask=batch["attention_mask"]).last_hidden_state
    real = hidden[:, 5:]  # peft prepends the 5 virtual tokens' states
    mask = batch["attention_mask"]
    expected = {"cls": real[:, 0], "last": real[torch.arange(2), mask.sum(1) - 1],
                "mean": (real * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)}[pooling]
    torch.testing.assert_close(features, expected)


def test_similarity_head_pools_inputs_like_the_label_phrases(tmp_path, tiny_encoder):
    # The label phrases are embedded bare; the input must be pooled over its own tokens only, not the virtual ones.
    classifier, batch = _virtual_classifier(tmp_path, tiny_encoder, "prompt_tuning", "mean", head="verbalizer")
    assert isinstance(classifier.head, SimilarityHead)
    with torch.no_grad():
        features = classifier.features(batch["input_ids"], batch["attention_mask"])
        hidden = classifier.backbone(input_ids=batch["input_ids"],
                                     attention_mask=batch["attention_mask"]).last_hidden_state[:, 5:]
    mask = batch["attention_mask"].unsqueeze(-1)
    torch.testing.assert_close(features, (hidden * mask).sum(1) / mask.sum(1))


def test_linear_head_on_a_decoder_pools_its_last_token(tmp_path, tiny_gpt2, tiny_encoder):
    # GPT-2's config leaves is_decoder false: decoder-ness comes from the architecture (GPT2LMHeadModel).
    decoder, _, _ = build(tmp_path, tiny_gpt2, template="{text}", verbalizer=None, method="head", head="linear")
    encoder, _, _ = build(tmp_path, tiny_encoder, template="{text}", verbalizer=None, method="head", head="linear")
    assert (decoder.head.pooling, encoder.head.pooling) == ("last", "mean")


@pytest.mark.parametrize("kind", ["encoder", "mlm"])
def test_prefix_tuning_keeps_encoder_positions_from_zero(tmp_path, models, kind):
    """transformers numbers BERT positions after a key/value prefix; the prefix is not text, so they start at 0."""
    classifier, cfg, tok = build(tmp_path, models[kind], template=TEMPLATES[kind], method="prefix_tuning")
    batch = batch_of(cfg, tok, toy_sentiment_rows(3))
    seen = []
    table = next(m for n, m in classifier.backbone.named_modules() if n.endswith("embeddings.position_embeddings"))
    handle = table.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    with torch.no_grad():
        logits(classifier, batch)
    handle.remove()
    width = batch["input_ids"].size(1)
    assert len(seen) == 1 and seen[0].flatten().tolist() == list(range(width))


@pytest.mark.parametrize("model,method,max_length,message", [
    ("encoder", "prompt_tuning", 128, "model.max_length 128 + method.num_virtual_tokens 20 = 148 positions"),
    ("encoder", "p_tuning", 120, "model.max_length 120 + method.num_virtual_tokens 20 = 140 positions"),
    ("causal", "prefix_tuning", 110, "model.max_length 110 + method.num_virtual_tokens 20 + 5 label-word token(s) "
                                     "after the template = 135 positions"),
    ("causal", "prompt_tuning", 104, "model.max_length 104 + method.num_virtual_tokens 20 + 5 label-word token"),
])
def test_virtual_tokens_count_against_the_position_limit(tmp_path, models, model, method, max_length, message):
    words = {"positive": "great", "negative": "superb"}  # " superb": 6 BPE tokens, 5 after the template
    path = write_config(tmp_path, models[model], method={"name": method},
                        model={"name": str(models[model]), "max_length": max_length},
                        prompt={"template": TEMPLATES[model], "verbalizer": words})
    cfg = load_config(path)
    with pytest.raises(PromptftError, match=re.escape(message) + ".* the model has 128; lower model.max_length "
                       "or method.num_virtual_tokens") as err:
        build_classifier(cfg, LABELS, load_tokenizer(cfg.model, cfg.base_dir))
    assert err.value.field == "model.max_length"


def test_prefix_tuning_on_an_encoder_uses_every_position(tmp_path, tiny_encoder):
    # Its prefix takes no positions (see above): max_length at the model's limit still runs.
    path = write_config(tmp_path, tiny_encoder, method={"name": "prefix_tuning"},
                        model={"name": str(tiny_encoder), "max_length": 128}, prompt={"template": "{text}", "head": "linear"})
    cfg = load_config(path)
    tok = load_tokenizer(cfg.model, cfg.base_dir)
    classifier = build_classifier(cfg, LABELS, tok)
    batch = batch_of(cfg, tok, [{"text": "great " * 200, "label": "positive"}])
    assert batch["input_ids"].size(1) == 128 and logits(classifier, batch).shape == (1, 2)
