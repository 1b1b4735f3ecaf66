"""Scoring heads: how the backbone's output becomes one score per label."""

from __future__ import annotations

import torch
from torch import nn


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """One vector per example from token states; `attention_mask` must cover every position of `hidden`."""
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
    if mode == "mean":
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    if mode == "cls":
        first = attention_mask.to(torch.long).argmax(dim=1)  # first real token, after any left padding
        return hidden[torch.arange(hidden.size(0), device=hidden.device), first]
    # "last": the last real token; right padding is what our collator produces.
    last = attention_mask.to(torch.long).sum(1) - 1
    return hidden[torch.arange(hidden.size(0), device=hidden.device), last]


class Head(nn.Module):
    """Base of every head: `features` reads the backbone output, `classify` turns features into logits.

    Splitting the two lets a frozen backbone's features be computed once and cached (see batching).
    """

    def features(self, outputs, attention_mask: torch.Tensor, mask_positions: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, outputs, attention_mask, mask_positions=None) -> torch.Tensor:
        return self.classify(self.features(outputs, attention_mask, mask_positions))


class LinearHead(Head):
    """A classification layer on the pooled representation (the standard fine-tuning head)."""

    def __init__(self, hidden_size: int, num_labels: int, pooling: str, dropout: float = 0.1) -> None:
        super().__init__()
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(hidden_size, num_labels)

    def features(self, outputs, attention_mask, mask_positions=None) -> torch.Tensor:
        return pool(outputs.last_hidden_state, attention_mask, self.pooling)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(features))

    @torch.no_grad()
    def init_from_embeddings(self, label_embeddings: torch.Tensor) -> None:
        """Start each class's weight vector at its label words' embedding (scaled like the default init)."""
        weights = nn.functional.normalize(label_embeddings.to(self.linear.weight.dtype), dim=-1)
        self.linear.weight.copy_(weights * self.linear.weight.norm(dim=-1, keepdim=True).mean())
        self.linear.bias.zero_()
