"""Batching: encode each split once, group similar lengths, pad each batch only to its longest row."""

from __future__ import annotations

import random
from typing import Callable, Iterator, Sequence

import torch

from promptft_cli.prompting.encoding import EncodedSplit

# Training batches are drawn from pools this many batches wide, sorted by length inside the pool:
# padding drops sharply while the order stays random enough for SGD (as in fairseq / HF group_by_length).
POOL_BATCHES = 50


# Padded tokens per inference batch. Activation memory grows with the batch's tokens, while CPU throughput
# stops improving well before: on MiniLM (2 cores), 2048-token batches ran as fast as 128 x 55-token ones with
# ~100 MB less peak memory, about the activations of a 16-example training-style batch.
INFERENCE_TOKENS = 2048


def pad_token_id(classifier) -> int:
    """The pad id build_classifier recorded; a wrapper (FSDP, DDP) keeps the classifier as `.module`."""
    while not hasattr(classifier, "pad_token_id") and hasattr(classifier, "module"):
        classifier = classifier.module
    if getattr(classifier, "pad_token_id", None) is None:  # not 0: that is a real token in most vocabularies
        raise ValueError("classifier has no pad_token_id; build it with build_classifier")
    return classifier.pad_token_id


def collate(split: EncodedSplit, indices: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad the chosen examples to the longest among them."""
    width = max(split.lengths[i] for i in indices)
    ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(indices), width), dtype=torch.long)
    for row, i in enumerate(indices):
        n = split.lengths[i]
        ids[row, :n] = torch.tensor(split.input_ids[i], dtype=torch.long)
        mask[row, :n] = 1
    batch = {"input_ids": ids, "attention_mask": mask}
    if any(split.mask_positions[i] is not None for i in indices):
        batch["mask_positions"] = torch.tensor([split.mask_positions[i] or 0 for i in indices], dtype=torch.long)
    if split.soft_positions[indices[0]]:
        batch["soft_positions"] = torch.tensor([split.soft_positions[i] for i in indices], dtype=torch.long)
    if split.labels is not None:
        batch["labels"] = torch.tensor([split.labels[i] for i in indices], dtype=torch.long)
    return batch


def train_batches(lengths: Sequence[int], batch_size: int, seed: int) -> list[list[int]]:
    """Shuffled, length-grouped batches covering every example exactly once (one epoch)."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = batch_size * POOL_BATCHES
    batches: list[list[int]] = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: lengths[i])
        batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def inference_batches(lengths: Sequence[int], batch_size: int, max_tokens: int | None = None,
                      extra_tokens: int = 0) -> list[list[int]]:
    """Batches of similar length, longest first (a memory problem shows at once, not at the end).

    A batch holds at most `batch_size` examples and, past its first, at most `max_tokens` padded tokens
    (default INFERENCE_TOKENS), counting `extra_tokens` per example that the model adds (a soft prompt):
    short texts go in large batches, long ones in small batches.
    """
    budget = INFERENCE_TOKENS if max_tokens is None else max_tokens
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        # Sorted longest first, so a batch's first example sets its padded width.
        width = lengths[batches[-1][0]] + extra_tokens if batches else 0
        if batches and len(batches[-1]) < batch_size and (len(batches[-1]) + 1) * width <= budget:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


class EpochBatches(torch.utils.data.Sampler):
    """A batch sampler whose order changes each epoch but is fixed by (seed, epoch)."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int) -> None:
        self.lengths, self.batch_size, self.seed, self.epoch = list(lengths), batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        return iter(train_batches(self.lengths, self.batch_size, self.seed * 1000 + self.epoch))

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)


def loader(n: int, batch_sampler, collate_fn: Callable[[list[int]], dict[str, torch.Tensor]]) -> torch.utils.data.DataLoader:
    """A DataLoader over the indices of `n` examples whose `collate_fn` builds a batch's tensors (so accelerate can shard it)."""
    return torch.utils.data.DataLoader(
        range(n),
        batch_sampler=batch_sampler,
        collate_fn=collate_fn,
        # Its own generator: each new iterator draws a seed, and drawing from the global RNG would make a
        # resumed run's dropout differ from an uninterrupted one.
        generator=torch.Generator(),
    )
