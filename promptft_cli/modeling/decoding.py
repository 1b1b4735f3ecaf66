"""Batches for generation tasks: training rows (prompt + target, loss mask) and prompts to generate from."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from promptft_cli.prompting.generation import EncodedGeneration

IGNORE = -100
"""Label of a position outside the loss (cross_entropy's ignore_index)."""


def collate_train(split: EncodedGeneration, indices: Sequence[int], pad_id: int, kind: str,
                  train_on_prompt: bool = False) -> dict[str, torch.Tensor]:
    """Right-padded training rows; labels hold the target ids (and the prompt's with `train_on_prompt`), -100 elsewhere."""
    assert split.targets is not None
    if kind == "seq2seq":
        batch = _pad([split.input_ids[i] for i in indices], pad_id, left=False)
        batch["labels"] = _pad([split.targets[i] for i in indices], IGNORE, left=False)["input_ids"]
    else:
        rows = [split.input_ids[i] + split.targets[i] for i in indices]
        batch = _pad(rows, pad_id, left=False)
        labels = batch["input_ids"].clone()
        labels[batch["attention_mask"] == 0] = IGNORE
        if not train_on_prompt:
            for row, i in enumerate(indices):
                labels[row, : split.lengths[i]] = IGNORE
        batch["labels"] = labels
    _add_soft(batch, split, indices, left_pad=None)
    return batch


def collate_prompts(split: EncodedGeneration, indices: Sequence[int], pad_id: int, kind: str) -> dict[str, torch.Tensor]:
    """Prompts to generate from: left-padded for a causal LM (it continues the last position), right for seq2seq."""
    left = kind == "causal"
    batch = _pad([split.input_ids[i] for i in indices], pad_id, left=left)
    _add_soft(batch, split, indices, left_pad=batch["attention_mask"] if left else None)
    return batch


def _pad(rows: list[list[int]], pad_id: int, left: bool) -> dict[str, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for b, r in enumerate(rows):
        span = slice(width - len(r), width) if left else slice(0, len(r))
        ids[b, span] = torch.tensor(r, dtype=torch.long)
        mask[b, span] = 1
    return {"input_ids": ids, "attention_mask": mask}


def _add_soft(batch: dict[str, Any], split: EncodedGeneration, indices: Sequence[int], left_pad) -> None:
    if not split.soft_positions[indices[0]]:
        return
    positions = torch.tensor([split.soft_positions[i] for i in indices], dtype=torch.long)
    if left_pad is not None:  # positions move right by the row's padding
        positions = positions + (left_pad == 0).sum(dim=1, keepdim=True)
    batch["soft_positions"] = positions


def generate_texts(generator, split: EncodedGeneration, tokenizer, settings: dict[str, Any], batch_size: int,
                   stop: Sequence[str] = (), progress=None) -> list[list[str]]:
    """Generated texts per example (num_return_sequences each), in the split's order.

    Batches are sorted by prompt length (little padding) with the KV cache on; each text is decoded
    without special tokens and cut at the first stop string.
    """
    from promptft_cli.modeling.batching import inference_batches

    out: list[list[str]] = [[] for _ in range(len(split))]
    generator.eval()
    for indices in inference_batches(split.lengths, batch_size, max_tokens=1 << 62):
        for i, texts in zip(indices, generate_batch(generator, split, indices, tokenizer, settings, stop)):
            out[i] = texts
        if progress is not None:
            progress(len(indices))
    return out


def generate_batch(generator, split: EncodedGeneration, indices: Sequence[int], tokenizer, settings: dict[str, Any],
                   stop: Sequence[str] = ()) -> list[list[str]]:
    """The texts generated for one batch of examples (num_return_sequences each), in `indices` order."""
    device = next(generator.parameters()).device
    per_example = settings.get("num_return_sequences", 1)
    batch = {k: v.to(device) for k, v in collate_prompts(split, indices, generator.pad_token_id, generator.kind).items()}
    ids = generator.generate_ids(batch["input_ids"], batch["attention_mask"], {**settings, "use_cache": True},
                                 batch.get("soft_positions"))
    texts = [cut_at_stop(t.strip(), stop) for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
    return [texts[j * per_example:(j + 1) * per_example] for j in range(len(indices))]


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """The text up to the first stop string (the stop string itself dropped)."""
    ends = [text.find(s) for s in stop if s in text]
    return text[: min(ends)].strip() if ends else text
