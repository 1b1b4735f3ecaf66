"""Scoring heads: how the backbone's output becomes one score per label.

Four heads, picked by `build_head` from `prompt.head` and the backbone's kind (see models.model_kind):
- `LinearHead`: a classification layer on the pooled representation;
- `LMVerbalizerHead` on a masked LM: log-probability of the label words at {mask} (PET, LM-BFF);
- `LMVerbalizerHead` on a causal LM: log-probability of the label words as the template's continuation;
- `SimilarityHead` on an encoder without LM head: scaled cosine between the input and the label phrases.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from promptft_cli.prompting.templates import Verbalizer

# CLIP and sentence-transformers' ranking loss start cosine logits at a scale of ~20: a cosine gap of
# 0.05 (typical between a sentence and two label phrases) is then one logit, neither flat nor saturated.
SIMILARITY_SCALE = 20.0


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """One vector per example from token states; `attention_mask` must cover every position of `hidden`."""
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
    if mode == "mean":
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    if mode == "cls":
        first = attention_mask.to(torch.long).argmax(dim=1)  # first real token, after any left padding
        return hidden[torch.arange(hidden.size(0), device=hidden.device), first]
    # "last": the last real token. Not `mask.sum() - 1`: positions masked out ahead of the text (peft's virtual
    # tokens, see PromptClassifier.features) would shift it.
    last = hidden.size(1) - 1 - attention_mask.to(torch.long).flip(1).argmax(dim=1)
    return hidden[torch.arange(hidden.size(0), device=hidden.device), last]


class Head(nn.Module):
    """Base of every head: `features` reads the backbone output, `classify` turns features into logits.

    Splitting the two lets a frozen backbone's features be computed once and cached (see batching).
    `expand` and `reading` let a head reshape the backbone's input and choose which positions it scores.
    """

    cacheable_features = False
    """True when `features` is a pure function of the backbone's output (see feature_cache.applies)."""

    def expand(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, mask_positions: torch.Tensor | None):
        """The rows the backbone sees and the positions the head reads; most heads change nothing."""
        return input_ids, attention_mask, mask_positions

    def reading(self, backbone: nn.Module, positions: torch.Tensor | None) -> contextlib.AbstractContextManager:
        """A context around the backbone call (LM heads restrict the vocabulary projection to `positions`)."""
        return contextlib.nullcontext()

    def features(self, outputs, attention_mask: torch.Tensor, mask_positions: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, outputs, attention_mask, mask_positions=None) -> torch.Tensor:
        return self.classify(self.features(outputs, attention_mask, mask_positions))


class LinearHead(Head):
    """A classification layer on the pooled representation (the standard fine-tuning head)."""

    cacheable_features = True

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


class LabelCombiner(nn.Module):
    """Per-label score from per-word scores: the mean or the max over each label's words."""

    def __init__(self, word_labels: Sequence[int], num_labels: int, combine: str) -> None:
        super().__init__()
        member = torch.zeros(num_labels, len(word_labels))
        member[list(word_labels), torch.arange(len(word_labels))] = 1.0
        self.combine = combine
        self.register_buffer("member", member, persistent=False)

    def forward(self, word_scores: torch.Tensor) -> torch.Tensor:
        if self.combine == "max":
            hidden = word_scores.new_tensor(float("-inf"))
            return torch.where(self.member.bool(), word_scores.unsqueeze(1), hidden).amax(dim=-1)
        return word_scores @ (self.member / self.member.sum(1, keepdim=True)).T.to(word_scores.dtype)


class LMVerbalizerHead(Head):
    """Label words scored by the pretrained LM head: mean log-probability of each word's tokens.

    Masked LM: every token of a word is scored at the single {mask} (log-softmax of the MLM logits
    there, averaged over the word's tokens, like OpenPrompt's `mean` multi-token handler); one
    forward pass serves every word, and single-token words (the usual case) are exactly PET/LM-BFF.
    Causal LM: teacher forcing. Each word's tokens t1..tn are appended to the filled template and
    log p(ti | template, t<i) is read one position before ti; words sharing a prefix share a row, so
    with single-token words there is one row per example. The vocabulary projection runs only at the
    positions read (a hook on the output embeddings), not at every position of every row.
    """

    cacheable_features = True

    def __init__(self, verbalizer: Verbalizer, combine: str, causal: bool) -> None:
        super().__init__()
        self.causal = causal
        words = [(i, ids) for i, label in enumerate(verbalizer.labels) for ids in verbalizer.token_ids[label]]
        # A causal row holds a word minus its last token; with a mask there is one row, read once.
        self.continuations = list(dict.fromkeys(ids[:-1] for _, ids in words)) if causal else [()]
        self.steps = 1 + max(len(c) for c in self.continuations)
        row, step, token, owner = [], [], [], []
        for w, (_, ids) in enumerate(words):
            for i, tok in enumerate(ids):
                row.append(self.continuations.index(ids[:-1]) if causal else 0)
                step.append(i if causal else 0)
                token.append(tok)
                owner.append(w)
        for name, values in (("row", row), ("step", step), ("token", token)):
            self.register_buffer(f"token_{name}", torch.tensor(values, dtype=torch.long), persistent=False)
        per_word = torch.zeros(len(words), len(token))
        per_word[owner, torch.arange(len(token))] = 1.0
        self.register_buffer("token_to_word", per_word / per_word.sum(1, keepdim=True), persistent=False)
        self.labels = LabelCombiner([label for label, _ in words], len(verbalizer.labels), combine)

    def expand(self, input_ids, attention_mask, mask_positions):
        if not self.causal:
            return input_ids, attention_mask, mask_positions.unsqueeze(1)
        lengths = attention_mask.sum(1)
        batch, width = input_ids.shape
        extra = self.steps - 1
        rows = len(self.continuations)
        ids = input_ids.new_zeros((batch, rows, width + extra))  # unfilled positions are masked out
        mask = attention_mask.new_zeros((batch, rows, width + extra))
        ids[:, :, :width], mask[:, :, :width] = input_ids.unsqueeze(1), attention_mask.unsqueeze(1)
        index = torch.arange(batch, device=input_ids.device)
        for r, continuation in enumerate(self.continuations):
            for j, tok in enumerate(continuation):
                ids[index, r, lengths + j] = tok
                mask[index, r, lengths + j] = 1
        steps = torch.arange(self.steps, device=input_ids.device)
        read = (lengths - 1).unsqueeze(1) + steps  # position before each token: it predicts that token
        return ids.view(batch * rows, -1), mask.view(batch * rows, -1), read.repeat_interleave(rows, dim=0)

    def reading(self, backbone, positions):
        return project_only_at(backbone.get_output_embeddings(), positions)

    def features(self, outputs, attention_mask, mask_positions=None) -> torch.Tensor:
        """Log-probability of every label-word token, (batch, tokens): depends on the backbone alone."""
        log_probs = torch.log_softmax(outputs.logits.float(), dim=-1)
        log_probs = log_probs.view(-1, len(self.continuations), self.steps, log_probs.size(-1))
        return log_probs[:, self.token_row, self.token_step, self.token_token]

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.labels(features @ self.token_to_word.T)


@contextlib.contextmanager
def project_only_at(output_embeddings: nn.Module, positions: torch.Tensor) -> Iterator[None]:
    """Within the block, the LM's vocabulary projection sees only the hidden states at `positions` (B, K).

    Full logits are batch x length x vocabulary (GBs for a 50k vocabulary); the head reads K of them.
    """

    def gather(module, args):
        hidden = args[0]
        index = positions.to(hidden.device).unsqueeze(-1).expand(-1, -1, hidden.size(-1))
        return (hidden.gather(1, index), *args[1:])

    handle = output_embeddings.register_forward_pre_hook(gather)
    try:
        yield
    finally:
        handle.remove()


class SimilarityHead(Head):
    """Scaled cosine between the pooled input and trainable label vectors (SetFit-style, zero-shot ready).

    The vectors start at the encoded label phrases: with `combine: mean` one prototype per label (the
    mean of its normalised phrase embeddings), with `max` one vector per phrase, best match wins.
    The scale (inverse temperature) is learnt too.
    """

    cacheable_features = True

    def __init__(self, vectors: torch.Tensor, vector_labels: Sequence[int], num_labels: int, pooling: str,
                 combine: str) -> None:
        super().__init__()
        self.pooling = pooling
        self.vectors = nn.Parameter(nn.functional.normalize(vectors.detach().float(), dim=-1).clone())
        self.log_scale = nn.Parameter(torch.tensor(math.log(SIMILARITY_SCALE)))
        self.labels = LabelCombiner(vector_labels, num_labels, combine)

    def features(self, outputs, attention_mask, mask_positions=None) -> torch.Tensor:
        return pool(outputs.last_hidden_state, attention_mask, self.pooling)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        inputs = nn.functional.normalize(features.float(), dim=-1)
        vectors = nn.functional.normalize(self.vectors, dim=-1)
        return self.labels(self.log_scale.exp().clamp(max=100.0) * inputs @ vectors.T)


@torch.no_grad()
def encode_phrases(backbone: nn.Module, tokenizer, phrases: Sequence[str], pooling: str) -> torch.Tensor:
    """Pooled, L2-normalised embeddings of short texts with a plain encoder (as sentence-transformers does)."""
    was_training = backbone.training
    backbone.eval()
    device = next(backbone.parameters()).device
    vectors = []
    for phrase in phrases:  # one at a time: no padding, so `last` pooling is right whatever the padding side
        ids = tokenizer(phrase, return_tensors="pt")["input_ids"].to(device)
        mask = torch.ones_like(ids)
        vectors.append(pool(backbone(input_ids=ids, attention_mask=mask).last_hidden_state, mask, pooling)[0])
    backbone.train(was_training)
    return nn.functional.normalize(torch.stack(vectors).float(), dim=-1)


def label_phrase_vectors(backbone, tokenizer, verbalizer: Verbalizer, pooling: str, combine: str):
    """(vectors, label index of each vector): per phrase for `max`, one prototype per label for `mean`."""
    phrases = [(i, w) for i, label in enumerate(verbalizer.labels) for w in verbalizer.words[label]]
    embedded = encode_phrases(backbone, tokenizer, [w for _, w in phrases], pooling)
    owners = [i for i, _ in phrases]
    if combine == "max":
        return embedded, owners
    labels = range(len(verbalizer.labels))
    prototypes = torch.stack([embedded[[j for j, o in enumerate(owners) if o == i]].mean(0) for i in labels])
    return nn.functional.normalize(prototypes, dim=-1), list(labels)
