"""Batching: encode each split once, group similar lengths, pad each batch only to its longest row."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from promptft_cli.prompting.templates import Template, encode


@dataclass
class EncodedSplit:
    """Token ids of every example of a split, computed once and reused across epochs."""

    input_ids: list[list[int]]
    mask_positions: list[int | None]
    soft_positions: list[list[int]]
    labels: list[int] | None = None
    truncated: int = 0
    lengths: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.lengths = [len(ids) for ids in self.input_ids]

    def __len__(self) -> int:
        return len(self.input_ids)


def encode_rows(
    rows: Sequence[Mapping[str, str]],
    template: Template,
    tokenizer,
    max_length: int,
    label_index: Mapping[str, int] | None = None,
) -> EncodedSplit:
    """Fill the template for every row; labels become class indices when `label_index` is given."""
    encoded = [encode(template, row, tokenizer, max_length) for row in rows]
    labels = [label_index[r["label"]] for r in rows] if label_index is not None else None
    return EncodedSplit(
        input_ids=[e.input_ids for e in encoded],
        mask_positions=[e.mask_position for e in encoded],
        soft_positions=[e.soft_positions for e in encoded],
        labels=labels,
        truncated=sum(e.truncated for e in encoded),
    )
