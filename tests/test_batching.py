"""Length-grouped batching: each example once per epoch, order restored at inference, less padding."""

from __future__ import annotations

import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from promptft_cli.modeling.batching import (
    EpochBatches,
    collate,
    inference_batches,
    train_batches,
)
from promptft_cli.prompting.encoding import EncodedSplit
from promptft_cli.tasks.classification import ClassificationTask

lengths_st = st.lists(st.integers(min_value=1, max_value=128), min_size=1, max_size=600)


@settings(max_examples=60, deadline=None)
@given(lengths=lengths_st, batch_size=st.integers(1, 40), seed=st.integers(0, 10_000))
def test_train_batches_cover_every_example_exactly_once(lengths, batch_size, seed):
    batches = train_batches(lengths, batch_size, seed)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert all(1 <= len(b) <= batch_size for b in batches)


@settings(max_examples=60, deadline=None)
@given(lengths=lengths_st, batch_size=st.integers(1, 40))
def test_inference_batches_cover_every_example_exactly_once(lengths, batch_size):
    batches = inference_batches(lengths, batch_size)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    widths = [max(lengths[i] for i in b) for b in batches]
    assert widths == sorted(widths, reverse=True)  # longest first


@settings(max_examples=60, deadline=None)
@given(lengths=lengths_st, batch_size=st.integers(1, 200), max_tokens=st.integers(1, 4096))
def test_inference_batches_keep_to_the_token_budget(lengths, batch_size, max_tokens):
    batches = inference_batches(lengths, batch_size, max_tokens)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= batch_size
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= max_tokens


def test_tokens_the_model_adds_count_against_the_budget():
    assert [len(b) for b in inference_batches([10] * 40, 64, max_tokens=400)] == [40]
    assert [len(b) for b in inference_batches([10] * 40, 64, max_tokens=400, extra_tokens=10)] == [20, 20]


def test_short_texts_share_a_batch_long_ones_do_not():
    batches = inference_batches([100] * 4 + [10] * 40, batch_size=64, max_tokens=400)
    assert [len(b) for b in batches] == [4, 40]


def test_epoch_batches_change_per_epoch_and_repeat_per_seed():
    lengths = [random.Random(i).randint(3, 60) for i in range(500)]
    sampler = EpochBatches(lengths, 16, seed=7)
    sampler.set_epoch(1)
    first = list(sampler)
    sampler.set_epoch(2)
    second = list(sampler)
    assert first != second
    assert sorted(i for b in second for i in b) == list(range(500))
    again = EpochBatches(lengths, 16, seed=7)
    again.set_epoch(1)
    assert list(again) == first
    assert len(sampler) == len(first) == 32


def _padded_tokens(batches, lengths):
    return sum(max(lengths[i] for i in b) * len(b) for b in batches)


def test_length_grouping_reduces_padding_versus_random_batches():
    rng = random.Random(0)
    lengths = [max(2, int(rng.lognormvariate(2.5, 0.6))) for _ in range(2000)]  # short texts, a long tail
    order = list(range(len(lengths)))
    rng.shuffle(order)
    random_batches = [order[i : i + 16] for i in range(0, len(order), 16)]
    real = sum(lengths)
    random_cost = _padded_tokens(random_batches, lengths)
    grouped_cost = _padded_tokens(train_batches(lengths, 16, seed=1), lengths)
    sorted_cost = _padded_tokens(inference_batches(lengths, 64), lengths)
    assert grouped_cost < 0.75 * random_cost
    assert sorted_cost < 1.15 * real  # sorted inference batches are nearly padding-free


def _split(lengths, labels=None):
    ids = [[100 + (7 * i + j) % 50 for j in range(n)] for i, n in enumerate(lengths)]
    return EncodedSplit(input_ids=ids, mask_positions=[None] * len(ids), soft_positions=[[] for _ in ids], labels=labels)


def test_collate_pads_to_the_longest_in_the_batch():
    split = _split([3, 5, 2], labels=[0, 1, 0])
    batch = collate(split, [0, 2], pad_id=0)
    assert batch["input_ids"].shape == (2, 3)  # not 5: only the chosen rows count
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["input_ids"][1, 2].item() == 0
    assert batch["labels"].tolist() == [0, 0]
    assert "mask_positions" not in batch and "soft_positions" not in batch


class _LengthAwareClassifier(torch.nn.Module):
    """Logits computed from each row's own tokens: any mix-up of rows shows in the output."""

    num_labels, pad_token_id = 3, 0

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor([1.0, 0.5, -0.25]))

    def forward(self, input_ids, attention_mask, **_):
        per_row = (input_ids * attention_mask).sum(1, keepdim=True).float() / 100.0
        return per_row * self.scale + attention_mask.sum(1, keepdim=True).float() * 0.1


@pytest.mark.parametrize("batch_size", [1, 4, 64])
def test_predict_proba_restores_the_input_order(batch_size):
    lengths = [random.Random(i).randint(1, 30) for i in range(57)]
    split = _split(lengths)
    model = _LengthAwareClassifier()
    got = ClassificationTask().infer(model, split, batch_size)
    with torch.no_grad():
        want = [torch.softmax(model(**collate(split, [i], 0)), -1)[0].numpy() for i in range(len(split))]
    assert got.shape == (57, 3)
    for row, expected in zip(got, want):
        assert row == pytest.approx(expected, abs=1e-6)
