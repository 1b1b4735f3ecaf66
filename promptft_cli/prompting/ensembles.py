"""Prompt ensembles (PET, Schick & Schütze 2021): several template/verbalizer pairs, combined.

Each pair becomes a config of its own (`member_configs`); zero-shot, their label scores are averaged,
plainly or weighted by each pair's accuracy on the labelled train split (PET's weighting, which trusts
the patterns that read the task best). Trained, each pair trains its own model, their combined soft labels
on the unlabelled data train one final model (training/distillation.py), so prediction costs one model.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

from promptft_cli.errors import PromptftError

if TYPE_CHECKING:
    from promptft_cli.config import Config


def member_configs(cfg: "Config") -> list["Config"]:
    """One config per ensemble pair: the parent's with that pair's template and verbalizer (and no ensemble)."""
    from promptft_cli.prompting.templates import template_for

    members = []
    for i, member in enumerate(cfg.prompt.ensemble or []):
        prompt = cfg.prompt.model_copy(update={"template": member.template or cfg.prompt.template,
                                               "verbalizer": member.verbalizer or cfg.prompt.verbalizer,
                                               "ensemble": None})
        member_cfg = cfg.model_copy(update={"prompt": prompt})
        with member_errors(i):
            template_for(member_cfg)
        members.append(member_cfg)
    return members


@contextlib.contextmanager
def member_errors(index: int) -> Iterator[None]:
    """Re-raise a pair's template/verbalizer error naming the entry: `prompt.ensemble[1].template`."""
    try:
        yield
    except PromptftError as exc:
        field = exc.field or "prompt"
        if field.startswith("prompt."):
            field = f"prompt.ensemble[{index}].{field.removeprefix('prompt.')}"
        raise PromptftError(f"prompt.ensemble[{index}]: {exc.message}", file=exc.file, row=exc.row, field=field) from None


def accuracy_weights(member_probs: Sequence[np.ndarray], labels: Sequence[int]) -> list[float]:
    """PET's weights: each pair's accuracy on the labelled examples (a pair at 0 keeps no say)."""
    y = np.asarray(labels)
    return [float((np.asarray(p).argmax(1) == y).mean()) if len(y) else 1.0 for p in member_probs]


def combine(member_probs: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """Weighted mean of the members' log-probabilities (their label scores up to a per-row constant), softmaxed.

    PET averages the patterns' logits with weights; log-probabilities are those logits shifted per row,
    which the softmax ignores. All-zero weights (no pair better than 0 on train) fall back to the plain mean.
    """
    w = np.ones(len(member_probs)) if weights is None or not np.sum(weights) else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    scores = sum(wi * np.log(np.clip(np.asarray(p, dtype=np.float64), 1e-12, None)) for wi, p in zip(w, member_probs))
    z = np.exp(scores - scores.max(axis=1, keepdims=True))
    return (z / z.sum(axis=1, keepdims=True)).astype(np.float32)
