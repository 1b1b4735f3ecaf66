"""`promptft init`: every starter validates as written, is commented, and its data is real or marked."""

from __future__ import annotations

import pytest
import yaml

from promptft_cli.cli import starters
from promptft_cli.config import load_config
from promptft_cli.errors import PromptftError

GENERATION = ("translation", "data-to-text")
ALL = starters.names()


@pytest.mark.parametrize("name", ALL)
def test_starter_validates_and_points_at_sample_data(tmp_path, name):
    path = starters.write(name, tmp_path / "sub" / f"{name}.yaml")
    cfg = load_config(path)
    assert cfg.path(cfg.data.train).resolve().is_file()
    assert cfg.run_dir == (tmp_path / "sub" / "runs" / name).resolve()
    text = path.read_text()
    assert text.splitlines()[0] in (f"# promptft train {name}.yaml", f"# promptft evaluate {name}.yaml")
    assert sum("  # " in line or line.startswith("#") for line in text.splitlines()) >= 5, "a starter explains itself"
    assert "PLACEHOLDER" not in text


def test_kinds_of_starter():
    cfgs = {n: yaml.safe_load(starters.render(n, starters.SAMPLE_DATA.parent / f"{n}.yaml")) for n in starters.names()}
    assert cfgs["sentiment"]["data"]["train"] == "sample_data/sentiment.csv"
    assert cfgs["pair"]["data"]["text_columns"] == ["premise", "hypothesis"]
    assert "{premise}" in cfgs["pair"]["prompt"]["template"]
    zero = cfgs["zero-shot"]
    assert zero["prompt"]["head"] == "verbalizer" and set(zero["prompt"]["verbalizer"]) == {"positive", "negative"}
    topic = cfgs["topic"]  # the recipe, as for sentiment: label descriptions, similarity head, full
    assert topic["method"]["name"] == "full" and topic["prompt"]["head"] == "verbalizer"
    assert set(topic["prompt"]["verbalizer"]) == {"business", "politics", "science", "sports"}
    for name in GENERATION:
        gen = cfgs[name]
        assert gen["task"] == "generation" and gen["model"]["name"] == "default-lm" and gen["prompt"]["chat"] is True
        assert (gen["data"]["text_column"], gen["data"]["target_column"]) == ("source", "target")
        assert "{source}" in gen["prompt"]["template"] and gen["generate"]["max_new_tokens"] > 0
    assert cfgs["translation"]["data"]["test"] == "sample_data/translation_test.csv"
    assert cfgs["data-to-text"]["method"]["name"] == "prompt_tuning"


@pytest.mark.parametrize("name", GENERATION)
def test_generation_starter_data_has_the_columns_it_names(name):
    import csv

    cfg = yaml.safe_load(starters.render(name, starters.SAMPLE_DATA.parent / f"{name}.yaml"))
    for split in ("train", "test"):
        if split in cfg["data"]:
            with open(starters.SAMPLE_DATA.parent / cfg["data"][split], encoding="utf-8", newline="") as fh:
                rows = list(csv.DictReader(fh))
            assert rows and all(row["source"].strip() and row["target"].strip() for row in rows)
            if "references" in rows[0]:
                assert all(row["references"].split(" ||| ")[0] == row["target"] for row in rows)
                assert any(" ||| " in row["references"] for row in rows)


def test_generation_starters_fill_the_generation_sections(tmp_path):
    cfg = load_config(starters.write("translation", tmp_path / "translation.yaml"))
    assert cfg.task == "generation" and cfg.generate.max_new_tokens == 48 and cfg.prompt.chat
    assert cfg.path(cfg.data.test).resolve() == (starters.SAMPLE_DATA / "translation_test.csv").resolve()
    assert cfg.train.early_stopping.metric == "chrf" and cfg.model.max_target_length == 64


@pytest.mark.parametrize("name", ALL)
def test_placeholders_when_no_sample_data(tmp_path, monkeypatch, name):
    monkeypatch.setattr(starters, "SAMPLE_DATA", tmp_path / "absent")
    path = starters.write(name, tmp_path / f"{name}.yaml")
    cfg = load_config(path)  # still a valid config, so `config show` works before editing
    train_line = next(line for line in path.read_text().splitlines() if line.strip().startswith("train:"))
    assert "PLACEHOLDER" in train_line and cfg.data.train.startswith("data/train.")


def test_existing_file_is_kept_unless_forced(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("mine")
    with pytest.raises(PromptftError, match="--force"):
        starters.write("topic", path)
    assert path.read_text() == "mine"
    starters.write("topic", path, force=True)
    assert load_config(path).method.name == "full"


def test_unknown_starter_suggests_the_closest():
    with pytest.raises(PromptftError, match="did you mean 'zero-shot'"):
        starters.render("zeroshot", starters.SAMPLE_DATA / "x.yaml")


def test_sentiment_starter_prepares_as_written(tmp_path, tiny_encoder):
    """The starter runs: prepare reads its sample data (with the tiny model swapped in for speed)."""
    from promptft_cli.data.prepare import prepare
    from promptft_cli.modeling.loading import load_tokenizer

    path = starters.write("sentiment", tmp_path / "sentiment.yaml")
    cfg = load_config(path, [f"model.name={tiny_encoder}", "model.max_length=64"])
    data = prepare(cfg, load_tokenizer(cfg.model, cfg.base_dir), force=True)
    assert data.labels == ["negative", "positive"]
    assert sum(s["rows"] for s in data.report["splits"].values()) > 300
