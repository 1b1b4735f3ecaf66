"""The run's README.md: Hugging Face model-card front matter, the facts of the run, and code that works."""

from __future__ import annotations

import os
import re

import pytest
import yaml

from promptft_cli import runs
from promptft_cli.config import validate_config
from promptft_cli.runs import model_card


def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_card_states_the_facts_of_the_run(trained_run):
    text = (trained_run / model_card.README).read_text()
    meta = front_matter(text)
    metrics = runs.read_json(trained_run / runs.METRICS)
    report = runs.read_json(trained_run / runs.REPORT)
    assert meta["library_name"] == "peft" and meta["pipeline_tag"] == "text-classification"
    assert "base_model" not in meta  # a local folder is not a Hub id
    results = meta["model-index"][0]["results"][0]["metrics"]
    assert results[0] == {"type": "accuracy", "value": round(metrics["accuracy"], 4), "name": "test accuracy"}
    assert results[1]["value"] == round(metrics["macro_f1"], 4)
    for split, s in report["splits"].items():
        assert re.search(rf"\| {split} \| {s['rows']} \|", text), split
    info = runs.RunInfo.load(trained_run)
    assert f"| trainable parameters | {info.trainable_parameters:,} |" in text
    assert "| template | `{text}` |" in text and "`lora`" in text
    assert "PeftModel.from_pretrained" in text and "Predictor.from_run" in text and "promptft predict lora" in text
    assert "![curves](curves.png)" in text


def test_peft_snippet_reproduces_promptft_predictions(trained_run, monkeypatch):
    """Run the card's own transformers + peft code and compare it with promptft's predictor."""
    import torch

    from promptft_cli.inference.predict import Predictor

    text = (trained_run / model_card.README).read_text()
    code = re.search(r"### With peft / transformers.*?```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(trained_run.parent)  # the snippet names the run folder relative to where it sits
    namespace: dict = {}
    exec(compile(code, "model-card", "exec"), namespace)
    rows = [{"text": "the movie was great !"}, {"text": "it was terrible , a dull and boring film"}, {"text": "fine"}]
    expected = Predictor.from_run(trained_run).proba(rows)
    torch.testing.assert_close(namespace["classify"](rows), torch.as_tensor(expected), rtol=1e-4, atol=1e-5)
    assert namespace["labels"] == runs.RunInfo.load(trained_run).labels


def _card(tmp_path, model="default", prompt=None, method="prompt_tuning"):
    cfg = {"task": "classification", "model": {"name": model, "max_length": 64, "pooling": "auto"},
           "data": {"train": "t.csv", "text_column": "text"}, "prompt": prompt or {}, "method": {"name": method},
           "train": {"epochs": 3, "batch_size": 8, "lr": None, "seed": 1, "warmup_ratio": 0.06,
                     "early_stopping": {"metric": "accuracy", "patience": 2}}}
    info = runs.RunInfo("complete", ["neg", "pos"], method, "verbalizer" if prompt else "linear", model, 2, 3.2, 100)
    return model_card.render("demo", validate_config(cfg), info, {}, {}, tmp_path)


def test_default_model_is_named_by_its_hub_id(tmp_path):
    text = _card(tmp_path)
    assert front_matter(text)["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert 'AutoModel.from_pretrained("sentence-transformers/all-MiniLM-L6-v2")' in text
    assert "learning rate 0.03 (the method's default)" in text
    assert "## Results" not in text  # no metrics, no invented numbers


def test_verbalizer_runs_point_to_promptft_for_the_head(tmp_path):
    text = _card(tmp_path, prompt={"template": "{text} It was {mask}.", "verbalizer": {"pos": ["great", "good"], "neg": "bad"}})
    assert "| verbalizer | pos → great, good; neg → bad |" in text
    assert "load the run with promptft" in text and "def classify" not in text


def test_card_is_written_atomically_next_to_the_run(tmp_path, trained_run):
    import shutil

    run = shutil.copytree(trained_run, tmp_path / "copy")
    (run / model_card.README).unlink()
    path = model_card.write_model_card(run)
    assert path == run / model_card.README and "# copy" in path.read_text()
    assert not [p for p in os.listdir(run) if p.endswith(".tmp")]


@pytest.mark.parametrize("name,hub", [("default", True), ("roberta-base", True), ("/models/local", False), ("./m", False)])
def test_base_model_hub_or_local(name, hub):
    assert model_card.base_model(name)[1] is hub
