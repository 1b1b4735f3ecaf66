"""Builders for tiny random-init models saved as local model folders (no network, a few hundred KB)."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import yaml

POSITIVE = ["great", "good", "wonderful", "fine", "lovely", "superb"]
NEGATIVE = ["bad", "terrible", "awful", "poor", "boring", "dull"]
FILLER = ["the movie was", "this film is", "it was", "a review :", "the story is"]


def save_tiny_model(tokenizer, directory: Path, kind: str) -> Path:
    """Save a 2-layer random model of `kind` (encoder, mlm, causal) with its tokenizer to `directory`."""
    import torch
    from transformers import (
        BertConfig,
        BertForMaskedLM,
        BertModel,
        GPT2Config,
        GPT2LMHeadModel,
    )

    torch.manual_seed(0)
    vocab = len(tokenizer)
    if kind == "causal":
        model = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=128, n_embd=32, n_layer=2, n_head=2,
                                           bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id))
    else:
        cfg = BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id)
        model = BertForMaskedLM(cfg) if kind == "mlm" else BertModel(cfg)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def toy_sentiment_rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    """A learnable toy set: the label is carried by one sentiment word."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "positive" if i % 2 == 0 else "negative"
        word = rng.choice(POSITIVE if label == "positive" else NEGATIVE)
        rows.append({"text": f"{rng.choice(FILLER)} {word} {rng.choice(['!', '.', ''])} {i}".strip(), "label": label})
    return rows


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_config(directory: Path, model_dir: Path, **sections) -> Path:
    """A config for the toy data in `directory` (train.csv, optional test.csv) and a tiny model."""
    cfg = {
        "model": {"name": str(model_dir), "max_length": 32},
        "data": {"train": "train.csv"},
        "method": {"name": "head"},
        "train": {"epochs": 2, "batch_size": 8, "seed": 1},
        "output_dir": "run",
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
