"""Trainable prompt vectors at the template's {soft} places (mixed templates, as in P-tuning)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class SoftPrompt(nn.Module):
    """One trainable input vector per {soft} position, swapped in for the placeholder token's embedding.

    It lives outside the backbone, so every method (even a frozen backbone) trains it, and it is saved
    with the head. Vectors start at their init words' embeddings, or at randomly drawn vocabulary
    embeddings (Lester et al. found those train better than Gaussian noise).
    """

    def __init__(self, input_embeddings: nn.Embedding, init_ids: Sequence[int | None]) -> None:
        super().__init__()
        table = input_embeddings.weight.detach()
        drawn = torch.randint(0, table.size(0), (len(init_ids),)).tolist()
        ids = [i if i is not None else d for i, d in zip(init_ids, drawn)]
        self.vectors = nn.Parameter(table[ids].float().clone())

    def embed(self, input_embeddings: nn.Module, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Token embeddings of `input_ids` with row b's `positions[b, j]` replaced by vector j."""
        embeds = input_embeddings(input_ids)
        rows = torch.arange(input_ids.size(0), device=input_ids.device).unsqueeze(1).expand_as(positions)
        values = self.vectors.to(embeds.dtype).unsqueeze(0).expand(input_ids.size(0), -1, -1)
        return embeds.index_put((rows, positions), values)
