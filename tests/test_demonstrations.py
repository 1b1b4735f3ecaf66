"""Demonstrations (LM-BFF): selection, no self-demonstration, determinism, truncation order, run round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from promptft_cli.prompting.demonstrations import (
    Demonstrations,
    demonstration_template,
    label_words,
)
from promptft_cli.prompting.encoding import encode_rows
from promptft_cli.prompting.templates import encode, parse_template

POOL = [
    {"text": "great movie", "label": "positive"},
    {"text": "great film", "label": "positive"},
    {"text": "fantastic", "label": "positive"},
    {"text": "bad movie", "label": "negative"},
    {"text": "terrible film", "label": "negative"},
    {"text": "not good", "label": "negative"},
]
WORDS = {"positive": "great", "negative": "terrible"}
TEMPLATE = parse_template("{text} it was {mask} .")


def demos(select: str = "random", per_class: int = 1, seed: int = 7, pool=POOL, **kw) -> Demonstrations:
    return Demonstrations(pool, ["negative", "positive"], ["text"], WORDS, per_class, select, seed, **kw)


def bag_of_words(texts: list[str]) -> np.ndarray:
    """A stand-in for the backbone: word counts over a fixed vocabulary, unit length."""
    vocab = "great good fantastic bad terrible not movie film".split()
    vectors = np.array([[t.split().count(w) for w in vocab] for t in texts], dtype=float) + 1e-3
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_random_gives_each_label_and_never_the_row_itself():
    chosen = demos(per_class=2).choose(POOL)
    for row, picks in zip(POOL, chosen):
        labels = [POOL[j]["label"] for j in picks]
        assert labels == ["negative", "negative", "positive", "positive"]  # label order, per_class each
        assert all(POOL[j]["text"] != row["text"] for j in picks)


def test_random_is_fixed_per_row_wherever_it_sits_and_follows_the_seed():
    d = demos()
    forward, backward = d.choose(POOL), d.choose(POOL[::-1])[::-1]
    assert forward == backward == demos().choose(POOL)
    many = [{"text": f"row {i}"} for i in range(40)]
    assert demos(seed=1).choose(many) != demos(seed=2).choose(many)


def test_similar_takes_the_nearest_example_of_each_label_but_not_itself():
    d = demos("similar", embed=bag_of_words)
    chosen = d.choose([POOL[0], {"text": "bad film bad"}])
    assert [POOL[j]["text"] for j in chosen[0]] == ["bad movie", "great film"]  # "great movie" itself is skipped
    assert [POOL[j]["text"] for j in chosen[1]] == ["bad movie", "great film"]


def test_similar_needs_an_embedder():
    with pytest.raises(ValueError, match="embed"):
        demos("similar")


def test_demonstrations_follow_the_input_as_filled_templates(bert_tokenizer):
    d = demos()
    row = {"text": "the movie"}
    split = d.encode_rows([row], TEMPLATE, bert_tokenizer, 64)
    plain = encode(TEMPLATE, row, bert_tokenizer, 64)
    ids = split.input_ids[0]
    assert ids[: len(plain.input_ids)] == plain.input_ids and split.mask_positions[0] == plain.mask_position
    text = bert_tokenizer.decode(ids)
    expected = d.texts(row, TEMPLATE)
    assert expected[0].endswith("it was terrible .") and expected[1].endswith("it was great .")
    assert text == f"[CLS] the movie it was [MASK]. [SEP] {expected[0][:-2]}. [SEP] {expected[1][:-2]}. [SEP]"


def test_truncation_cuts_demonstrations_before_the_input(bert_tokenizer):
    d = demos(pool=[{"text": "good " * 20, "label": "positive"}, {"text": "bad " * 20, "label": "negative"}])
    row = {"text": "the movie was not good"}
    plain = encode(TEMPLATE, row, bert_tokenizer, 30)  # 11 tokens: 19 left for two demonstrations of 26
    ids = d.encode_rows([row], TEMPLATE, bert_tokenizer, 30).input_ids[0]
    assert len(ids) == 30
    assert ids[: len(plain.input_ids)] == plain.input_ids  # the input is whole
    demo_text = bert_tokenizer.decode(ids[len(plain.input_ids):])
    assert demo_text.count("it was") == 2  # both demonstrations kept their template and label word, text cut
    # No room at all: the input keeps everything and no demonstration is squeezed in.
    long = {"text": "good movie " * 30}
    ids = d.encode_rows([long], TEMPLATE, bert_tokenizer, 24).input_ids[0]
    assert ids == encode(TEMPLATE, long, bert_tokenizer, 24).input_ids


def test_a_share_too_small_drops_the_last_demonstration(bert_tokenizer):
    pool = [{"text": "good " * 20, "label": "positive"}, {"text": "bad " * 20, "label": "negative"}]
    row = {"text": "the movie"}
    plain = encode(TEMPLATE, row, bert_tokenizer, 18)  # 8 tokens; 10 left: a demo needs 5 (template, [SEP]) + text
    ids = demos(pool=pool).encode_rows([row], TEMPLATE, bert_tokenizer, 18).input_ids[0]
    rest = bert_tokenizer.decode(ids[len(plain.input_ids):])
    assert rest == "bad bad bad bad bad it was terrible. [SEP]" and len(ids) == 18


def test_causal_models_read_demonstrations_before_the_input(gpt2_tokenizer):
    template = parse_template("Review: {text} Sentiment:")
    words = {"positive": "positive", "negative": "negative"}
    d = Demonstrations(POOL, ["negative", "positive"], ["text"], words, before=True)
    row = {"text": "a good movie"}
    split = d.encode_rows([row], template, gpt2_tokenizer, 128)
    text = gpt2_tokenizer.decode(split.input_ids[0])
    assert text.endswith("Review: a good movie Sentiment:")
    assert text.count("Sentiment: negative") == 1 and text.count("Sentiment: positive") == 1
    assert demonstration_template(template).has_mask


def test_encode_rows_keeps_labels_and_soft_positions(bert_tokenizer):
    template = parse_template("{soft:2} {text} it was {mask} .")
    index = {"negative": 0, "positive": 1}
    with_demos = demos().encode_rows(POOL, template, bert_tokenizer, 64, index)
    plain = encode_rows(POOL, template, bert_tokenizer, 64, index)
    assert with_demos.labels == plain.labels
    assert with_demos.soft_positions == plain.soft_positions and with_demos.mask_positions == plain.mask_positions
    assert all(a > b for a, b in zip(with_demos.lengths, plain.lengths))


def test_label_words_use_the_first_verbalizer_word_or_the_label(toy_project):
    from promptft_cli.config import load_config
    from promptft_cli.errors import PromptftError

    cfg = load_config(toy_project)
    assert label_words(cfg, ["negative", "positive"]) == {"negative": "negative", "positive": "positive"}
    cfg = load_config(toy_project, ["prompt.verbalizer={positive: [great, good], negative: bad}"])
    assert label_words(cfg, ["negative", "positive"]) == {"negative": "bad", "positive": "great"}
    with pytest.raises(PromptftError, match="neutral"):
        label_words(cfg, ["negative", "neutral", "positive"])


def test_a_trained_run_predicts_with_the_training_demonstrations(toy_project):
    """Training and prediction must see the same inputs: evaluating the run reproduces its test metrics."""
    from promptft_cli.config import load_config
    from promptft_cli.inference.evaluate import evaluate_target
    from promptft_cli.inference.predict import Predictor
    from promptft_cli.training.loop import train

    cfg = load_config(toy_project, ["train.epochs=1", "prompt.template={text} it was .", "model.max_length=48",
                                    "prompt.demonstrations={per_class: 1, select: similar}"])
    result = train(cfg)
    metrics, _ = evaluate_target(result.run_dir)
    assert metrics["accuracy"] == result.metrics["accuracy"]
    assert metrics["confusion_matrix"] == result.metrics["confusion_matrix"]
    predictor = Predictor.from_run(result.run_dir)
    train_rows = [json.loads(line) for line in (result.run_dir / "data" / "train.jsonl").read_text().splitlines()]
    assert predictor.demonstrations.pool == train_rows
    split = predictor.demonstrations.encode_rows(train_rows[:3], predictor.template, predictor.tokenizer, 48)
    assert all(len(ids) <= 48 for ids in split.input_ids)


@pytest.mark.parametrize("kind", ["mlm", "causal"])
def test_lm_heads_train_and_predict_with_demonstrations(tmp_path, kind, request):
    """Masked LMs read demonstrations after the input and causal LMs before it; both heads keep working."""
    from factories import toy_sentiment_rows, write_config, write_csv

    from promptft_cli.config import load_config
    from promptft_cli.inference.evaluate import evaluate_target
    from promptft_cli.inference.predict import Predictor
    from promptft_cli.training.loop import train

    model = request.getfixturevalue("tiny_mlm" if kind == "mlm" else "tiny_gpt2")
    write_csv(tmp_path / "train.csv", toy_sentiment_rows(40))
    template = "{text} it was {mask} ." if kind == "mlm" else "Review: {text} Sentiment:"
    path = write_config(tmp_path, model, method={"name": "bitfit"}, train={"epochs": 1, "batch_size": 8},
                        model={"name": str(model), "max_length": 64},
                        prompt={"template": template, "verbalizer": {"positive": "good", "negative": "bad"},
                                "demonstrations": {"per_class": 1, "select": "random"}})
    result = train(load_config(path))
    metrics, _ = evaluate_target(result.run_dir)
    assert metrics["confusion_matrix"] == result.metrics["confusion_matrix"]
    assert Predictor.from_run(result.run_dir).demonstrations.before == (kind == "causal")
