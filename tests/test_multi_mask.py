"""PET's multi-mask decoding on a masked LM: a label word of n tokens scores the product of its token probabilities."""

from __future__ import annotations

import pytest
import torch
from factories import write_config, write_csv

from promptft_cli.config import load_config

WORDS = {"positive": "fantastic", "negative": "bad"}  # "fantastic" is fan ##tas ##tic in the tiny vocabulary


def build(tmp_path, tiny_mlm, bert_tokenizer, multi: bool):
    from promptft_cli.modeling.classifier import build_classifier

    write_csv(tmp_path / "train.csv", [{"text": "good", "label": "positive"}, {"text": "bad", "label": "negative"}])
    cfg = load_config(write_config(tmp_path, tiny_mlm, method={"name": "bitfit"},
                                   prompt={"template": "{text} it was {mask} .", "verbalizer": WORDS, "multi_mask": multi}))
    return build_classifier(cfg, ["negative", "positive"], bert_tokenizer, report=False).eval()


def manual_log_prob(tiny_mlm, tokenizer, text: str, word: str) -> float:
    """log p(word) = sum of log p(token i at mask i), the input holding one [MASK] per token of the word."""
    from transformers import BertForMaskedLM

    model = BertForMaskedLM.from_pretrained(tiny_mlm).eval()
    pieces = tokenizer(word, add_special_tokens=False)["input_ids"]
    ids = tokenizer(f"{text} it was " + " ".join(["[MASK]"] * len(pieces)) + " .", return_tensors="pt")["input_ids"]
    first = (ids[0] == tokenizer.mask_token_id).nonzero()[0].item()
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0], -1)
    return sum(logp[first + i, tok].item() for i, tok in enumerate(pieces))


@pytest.mark.parametrize("text", ["the movie was good", "a bad film"])
def test_multi_mask_score_is_the_product_of_token_probabilities(tmp_path, tiny_mlm, bert_tokenizer, text):
    from promptft_cli.modeling.batching import collate
    from promptft_cli.prompting.encoding import encode_rows
    from promptft_cli.prompting.templates import parse_template

    assert len(bert_tokenizer("fantastic", add_special_tokens=False)["input_ids"]) == 3
    classifier = build(tmp_path, tiny_mlm, bert_tokenizer, multi=True)
    rows = [{"text": text}, {"text": "it"}]  # a shorter second row: padding must not move the masks
    split = encode_rows(rows, parse_template("{text} it was {mask} ."), bert_tokenizer, 32)
    with torch.no_grad():
        scores = classifier(**{k: v for k, v in collate(split, [0, 1], bert_tokenizer.pad_token_id).items()})
    for row, sentence in enumerate([text, "it"]):
        expected = [manual_log_prob(tiny_mlm, bert_tokenizer, sentence, WORDS[label]) for label in ("negative", "positive")]
        torch.testing.assert_close(scores[row], torch.tensor(expected), atol=1e-4, rtol=1e-4)


def test_single_mask_reading_is_unchanged_without_the_option(tmp_path, tiny_mlm, bert_tokenizer):
    from promptft_cli.modeling.heads import LMVerbalizerHead

    head = build(tmp_path, tiny_mlm, bert_tokenizer, multi=False).head
    assert isinstance(head, LMVerbalizerHead) and head.mask_token_id is None and head.steps == 1
