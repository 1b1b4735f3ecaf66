"""Calibration of label scores: contextual and batch calibration, temperature scaling, and the ECE.

- Contextual calibration (Zhao et al. 2021, "Calibrate before use"): the scores of content-free inputs
  ("N/A", "", the mask token) through the same template estimate the prompt's prior p_cf over labels;
  probabilities are corrected with W = diag(p_cf)^-1 and renormalised, so a template that leans to one
  label no longer drags every prediction there.
- Batch calibration (Zhou et al. 2024): the per-class mean log-probability over the batch being predicted
  is subtracted, which needs no content-free input but a batch of more than a few examples.
- Temperature scaling (Guo et al. 2017): one scalar T fitted on the validation split (LBFGS on the NLL)
  after training, so `confidence` means what it says; argmax, and so accuracy, is unchanged.

All three act on the probabilities a head's softmax gives: log p differs from the head's scores by a
per-row constant, so subtracting a per-class mean of log p equals subtracting it from the raw scores.
The fitted values are saved with a run (`calibration.json`) and applied by `predict` and `evaluate`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

MODES = ("none", "contextual", "batch")
FILE = "calibration.json"
CONTENT_FREE = ("N/A", "")  # plus the tokenizer's mask token, when it has one
ECE_BINS = 15


@dataclass
class Calibration:
    mode: str = "none"
    """`none`, `contextual` or `batch` (prompt.calibration)."""
    content_free: list[float] | None = None
    """p_cf: the mean probabilities of the content-free inputs (contextual calibration)."""
    temperature: float = 1.0
    """Divides the log-probabilities after calibration (1 = unchanged)."""

    def apply(self, probs: Any) -> np.ndarray:
        """Calibrated probabilities for a batch of rows (n, labels)."""
        p = np.asarray(probs, dtype=np.float64)
        if len(p) == 0:
            return p.astype(np.float32)
        if self.mode == "contextual" and self.content_free is not None:
            p = p / np.asarray(self.content_free, dtype=np.float64)
            p = p / p.sum(axis=1, keepdims=True)
        elif self.mode == "batch":
            logp = np.log(np.clip(p, 1e-12, None))
            p = softmax(logp - logp.mean(axis=0, keepdims=True))
        if self.temperature != 1.0:
            p = softmax(np.log(np.clip(p, 1e-12, None)) / self.temperature)
        return p.astype(np.float32)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def load(cls, run_dir: Path) -> "Calibration | None":
        import json

        path = run_dir / FILE
        if not path.is_file():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def content_free_rows(columns: Sequence[str], tokenizer) -> list[dict[str, str]]:
    """Content-free inputs for every text column: "N/A", the empty text and the mask token."""
    texts = list(CONTENT_FREE) + ([tokenizer.mask_token] if getattr(tokenizer, "mask_token", None) else [])
    return [{c: t for c in columns} for t in texts]


def content_free_prior(predict: Callable[[Any], Any], encode: Callable[[list], Any], columns: Sequence[str],
                       tokenizer) -> list[float]:
    """p_cf: mean probabilities of the content-free inputs filled into the template."""
    probs = np.asarray(predict(encode(content_free_rows(columns, tokenizer))), dtype=np.float64)
    return probs.mean(axis=0).tolist()


def fit_temperature(probs: Any, labels: Sequence[int]) -> float:
    """The temperature minimising the NLL of `labels` under softmax(log p / T) (LBFGS on log T)."""
    import torch

    if len(labels) == 0:
        return 1.0
    logp = torch.log(torch.as_tensor(np.asarray(probs), dtype=torch.float64).clamp_min(1e-12))
    target = torch.as_tensor(list(labels), dtype=torch.long)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logp / log_t.exp(), target)
        loss.backward()
        return loss

    optimizer.step(closure)
    # Bounded: a validation split of 32 examples that the model gets all right would push T towards 0.
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def expected_calibration_error(probs: Any, labels: Sequence[int], bins: int = ECE_BINS) -> float:
    """ECE: the share-weighted mean |accuracy - confidence| over equal-width confidence bins."""
    p = np.asarray(probs, dtype=np.float64)
    if len(labels) == 0:
        return 0.0
    confidence, correct = p.max(axis=1), (p.argmax(axis=1) == np.asarray(labels)).astype(np.float64)
    # Bin b holds confidences in (b/bins, (b+1)/bins]; confidence 0 can only occur with no labels.
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(ece)


def calibrate(mode: str, predict: Callable[[Any], Any], encode: Callable[[list], Any], columns: Sequence[str],
              tokenizer, validation=None) -> Calibration:
    """Fit the run's calibration: p_cf for `contextual`, then a temperature on `validation` when given.

    `predict` maps an encoded split to probabilities, `encode` rows to an encoded split (the run's template).
    """
    cal = Calibration(mode)
    if mode == "contextual":
        cal.content_free = content_free_prior(predict, encode, columns, tokenizer)
    if validation is not None and len(validation):
        cal.temperature = fit_temperature(cal.apply(predict(validation)), validation.labels)
    return cal
