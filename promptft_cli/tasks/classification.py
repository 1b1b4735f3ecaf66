"""Evaluate: metrics of a trained run (or a zero-shot config) on its test split or any labelled file."""

from __future__ import annotations

from typing import Any, Sequence


def compute_metrics(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix."""
    # numpy, not sklearn: importing sklearn.metrics (with scipy) costs seconds and ~50 MB on every
    # training run, which validates each epoch. Same definitions as sklearn with zero_division=0.
    import numpy as np

    k = len(labels)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    tp, support, predicted = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
    p, r, f = (_ratio(tp, predicted), _ratio(tp, support), _ratio(2 * tp, predicted + support))
    return {
        "accuracy": float(tp.sum() / len(y_true)) if len(y_true) else 0.0,
        "macro_f1": float(f.mean()) if k else 0.0,
        "n": len(y_true),
        "labels": list(labels),
        "per_class": {
            label: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(support[i])}
            for i, label in enumerate(labels)
        },
        "confusion_matrix": cm.tolist(),
    }


def _ratio(num, den):
    import numpy as np

    return np.divide(num, den, out=np.zeros(len(num), dtype=np.float64), where=den > 0)


def metrics_from_proba(probs, y_true: Sequence[int], labels: Sequence[str]) -> dict[str, Any]:
    import numpy as np

    from promptft_cli.tasks.calibration import expected_calibration_error

    y_pred = np.asarray(probs).argmax(axis=1).tolist() if len(y_true) else []
    return {**compute_metrics(list(y_true), y_pred, labels), "ece": expected_calibration_error(probs, list(y_true))}


def predict_proba(classifier, split, batch_size: int):
    """Class probabilities for every encoded example, in the split's original order."""
    import torch

    from promptft_cli.modeling.batching import inference_batches

    batches = inference_batches(split.lengths, batch_size, extra_tokens=getattr(classifier, "virtual_tokens", 0))
    idx, probs = score(classifier, split, batches)
    out = torch.empty(len(split), classifier.num_labels)
    out[idx] = probs
    return out.numpy()


def score(classifier, split, batches: Sequence[Sequence[int]]):
    """Probabilities (on CPU) for the examples of `batches`, one forward pass per batch on the classifier's device;
    returns (example indices, probabilities) row by row."""
    import torch

    from promptft_cli.modeling.batching import collate

    device = next(classifier.parameters()).device
    pad_id = getattr(classifier, "pad_token_id", 0)
    idx: list[int] = [i for b in batches for i in b]
    out = torch.empty(len(idx), classifier.num_labels)
    classifier.eval()
    with torch.inference_mode():
        row = 0
        for b in batches:
            batch = {k: v.to(device) for k, v in collate(split, b, pad_id).items() if k != "labels"}
            out[row : row + len(b)] = torch.softmax(classifier(**batch).float(), dim=-1).cpu()
            row += len(b)
    return idx, out


def inference_device() -> str:
    """Where predict and evaluate run: this process's GPU when there is one, else the CPU."""
    import os

    import torch

    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"  # one GPU per process when launched
    return "cpu"
