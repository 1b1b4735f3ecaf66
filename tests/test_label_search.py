"""Label-word search: the ranking finds planted words; the command prints a table and writes a usable block."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import yaml
from factories import write_config, write_csv

from promptft_cli.config import load_config
from promptft_cli.errors import PromptftError
from promptft_cli.inference.label_search import ngram_candidates, rank, search

FILLERS = ["it was", "the movie", "this film is", "a review", "the film was", "and this is"]


def planted_rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    """Each label's rows carry its planted word ("yes" / "no") among fillers shared by both labels."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label, word = ("positive", "yes") if i % 2 == 0 else ("negative", "no")
        a, b = rng.sample(FILLERS, 2)
        rows.append({"text": f"{a} {word} {b}", "label": label})
    return rows


def test_rank_puts_the_planted_column_first():
    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 20)
    scores = rng.normal(size=(40, 6))
    scores[:, 2] += 3.0 * (y == 0)  # the planted word of label 0
    scores[:, 4] += 3.0 * (y == 1)  # ... and of label 1
    ranked = rank(scores, [0, 0, 0, 1, 1, 1], ["a", "b", "good", "c", "bad", "d"], y, ["pos", "neg"], keep=3)
    assert [c.word for c in ranked if c.label == "pos"][0] == "good"
    assert [c.word for c in ranked if c.label == "neg"][0] == "bad"
    assert ranked[0].train_accuracy == 1.0


def test_ngrams_prefer_words_specific_to_a_label():
    rows = planted_rows(20)
    found = ngram_candidates([r["text"] for r in rows], [int(r["label"] == "negative") for r in rows], 2, 3)
    assert (0, "yes") in found and (1, "no") in found


def test_similarity_search_returns_the_planted_words(tmp_path, tiny_encoder):
    write_csv(tmp_path / "train.csv", planted_rows(40))
    cfg = load_config(write_config(tmp_path, tiny_encoder, prompt={"template": "{text}", "head": None}))
    found = search(cfg, words_per_label=3)
    assert found["kind"] == "encoder"
    # Every proposed phrase carries the planted word, and no filler shared by both labels is proposed.
    assert all("yes" in w.split() for w in found["verbalizer"]["positive"])
    assert all("no" in w.split() for w in found["verbalizer"]["negative"])


def test_cli_writes_a_ready_verbalizer_block(tmp_path, tiny_mlm, capsys, monkeypatch):
    from test_cli import run_main

    write_csv(tmp_path / "train.csv", planted_rows(20))
    config = write_config(tmp_path, tiny_mlm, prompt={"template": "{text} it was {mask} ."})
    out = tmp_path / "verbalizer.yaml"
    code, stdout, _ = run_main(monkeypatch, capsys, "search-verbalizer", config, "--json", "-o", out, "--words", "2")
    assert code == 0
    found = json.loads(stdout)
    assert found["kind"] == "mlm" and set(found["verbalizer"]) == {"negative", "positive"}
    block = yaml.safe_load(out.read_text())
    assert all(len(words) == 2 for words in block["prompt"]["verbalizer"].values())
    # The block drops into the config as written.
    written = yaml.safe_load(config.read_text())
    written["prompt"]["verbalizer"] = block["prompt"]["verbalizer"]
    config.write_text(yaml.safe_dump(written))
    assert load_config(config).prompt.resolved_head == "verbalizer"


def test_linear_head_has_no_label_words(tmp_path, tiny_encoder):
    write_csv(tmp_path / "train.csv", planted_rows(10))
    cfg = load_config(write_config(tmp_path, tiny_encoder, prompt={"head": "linear"}))
    with pytest.raises(PromptftError, match="linear head has none"):
        search(cfg)
