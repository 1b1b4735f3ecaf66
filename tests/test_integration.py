"""The embedded MiniLM end to end: a few prompt-tuning steps on sample data, then predictions."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from factories import write_config, write_csv
from test_cli import run_main

from promptft_cli import runs
from promptft_cli.config import load_config
from promptft_cli.training.loop import train

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data" / "sentiment.csv"
FALLBACK = [("The food was wonderful and the staff were kind.", "positive"), ("Cold food, rude staff, never again.", "negative"),
            ("Great battery life and a bright screen.", "positive"), ("It broke after two days.", "negative")]


def sample_rows(n: int) -> list[dict[str, str]]:
    """The first n/2 rows of each label from sample_data/sentiment.csv (or written here if it is missing)."""
    if SAMPLE.exists():
        with SAMPLE.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    else:
        rows = [{"text": f"{text} ({i})", "label": label} for i in range(n) for text, label in FALLBACK]
    by_label = {label: [r for r in rows if r["label"] == label][: n // 2] for label in ("positive", "negative")}
    return [r for pair in zip(*by_label.values()) for r in pair]


@pytest.mark.integration
def test_prompt_tuning_on_the_embedded_minilm(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr("promptft_cli.training.loop.plots.write_run_plots", lambda *a, **k: [])
    write_csv(tmp_path / "train.csv", sample_rows(40))
    config = write_config(tmp_path, "default", model={"name": "default", "max_length": 48},
                          method={"name": "prompt_tuning", "num_virtual_tokens": 8},
                          train={"epochs": 1, "batch_size": 8, "lr": 0.03, "seed": 0})
    result = train(load_config(config))
    history = [json.loads(line) for line in (result.run_dir / runs.HISTORY).read_text().splitlines()]
    assert [h["step"] for h in history if "loss" in h] == [1, 2, 3, 4]  # 28 train rows / batch 8
    assert runs.RunInfo.load(result.run_dir).status == "complete"
    assert (result.run_dir / runs.CHECKPOINT / "adapter_model.safetensors").is_file()
    assert result.trainable_parameters == 8 * 384 + 384 * 2 + 2  # soft prompt + linear head

    (tmp_path / "new.jsonl").write_text('{"text": "Absolutely loved it, five stars."}\n{"text": "Broken on arrival."}\n')
    code, out, err = run_main(monkeypatch, capsys, "predict", result.run_dir, tmp_path / "new.jsonl")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(rows) == 2 and "Traceback" not in err
    for r in rows:  # confidence is the predicted label's probability, and the probabilities sum to 1
        probs = {"negative": float(r["prob_negative"]), "positive": float(r["prob_positive"])}
        assert r["prediction"] == max(probs, key=probs.get) and float(r["confidence"]) == max(probs.values())
        assert sum(probs.values()) == pytest.approx(1, abs=1e-3)
