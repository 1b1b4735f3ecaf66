"""Class imbalance: label weights in the loss and the early-stopping metric an imbalanced train split needs.

With 90 % of one label, accuracy rewards a model that always predicts it; macro-F1 does not, so it picks
the checkpoint when the labels are imbalanced and the user named no metric.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

from promptft_cli.errors import PromptftError

# Largest / smallest label count above which a train split counts as imbalanced: a 16/16 few-shot sample is
# balanced, a 60/40 split still is (macro-F1 and accuracy pick the same checkpoints there), 2:1 is not.
IMBALANCE_RATIO = 1.5
FIELD = "train.class_weights"


def label_counts(label_ids: Sequence[int], num_labels: int) -> list[int]:
    counts = Counter(int(i) for i in label_ids)
    return [counts.get(i, 0) for i in range(num_labels)]


def is_imbalanced(label_ids: Sequence[int], num_labels: int) -> bool:
    counts = [c for c in label_counts(label_ids, num_labels) if c]
    return bool(counts) and max(counts) > IMBALANCE_RATIO * min(counts)


def class_weights(setting: str | dict[str, float], labels: Sequence[str], label_ids: Sequence[int]) -> list[float] | None:
    """Per-label loss weights (None: unweighted). `balanced` gives n / (labels × n_label), as scikit-learn."""
    if setting == "none":
        return None
    if setting == "balanced":
        counts = label_counts(label_ids, len(labels))
        n = sum(counts)
        return [n / (len(labels) * c) if c else 0.0 for c in counts]
    unknown = [str(k) for k in setting if str(k) not in labels]
    if unknown:
        raise PromptftError(f"class weight for unknown label '{unknown[0]}'; the labels are {', '.join(labels)}",
                            field=f"{FIELD}.{unknown[0]}")
    negative = [k for k, w in setting.items() if w < 0]
    if negative:
        raise PromptftError(f"class weight of '{negative[0]}' must be >= 0", field=f"{FIELD}.{negative[0]}")
    # Labels not named keep weight 1, so `{rare: 5}` reads as "five times the others".
    return [float(setting.get(label, 1.0)) for label in labels]


def early_stopping_metric(configured: str | None, label_ids: Sequence[int], num_labels: int) -> str:
    """The configured metric, or macro_f1 for an imbalanced train split and accuracy otherwise."""
    if configured is not None:
        return configured
    return "macro_f1" if is_imbalanced(label_ids, num_labels) else "accuracy"


def weighted_loss(logits: Any, targets: Any, weights: Any | None) -> Any:
    """Cross-entropy with optional label weights; `targets` are label indices or soft distributions (rows sum to 1).

    Weighted, the hard-label loss is normalised by the summed weights of the batch's labels (torch's convention),
    and the soft-label loss by the summed expected weights, so both reduce to the plain mean when all weights are 1.
    """
    import torch

    logp = torch.log_softmax(logits.float(), dim=-1)
    if targets.dtype in (torch.long, torch.int64, torch.int32):
        return torch.nn.functional.nll_loss(logp, targets, weight=weights)
    targets = targets.to(logp.dtype)
    if weights is None:
        return -(targets * logp).sum(-1).mean()
    w = weights.to(logp.dtype)
    return -(targets * logp * w).sum() / (targets * w).sum().clamp_min(1e-12)
