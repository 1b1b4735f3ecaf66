"""Classification: a template + head scores each label; metrics are accuracy, macro-F1 and the confusion matrix."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from promptft_cli.tasks.base import Encoder, Metrics, Task

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from promptft_cli.config import Config
    from promptft_cli.data.reading import PreparedData
    from promptft_cli.prompting.demonstrations import Demonstrations
    from promptft_cli.prompting.encoding import EncodedSplit


@dataclass
class ClassScores:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class ClassificationMetrics(Metrics):
    """Test (and evaluation) metrics; `to_dict` gives metrics.json's keys in its order."""

    accuracy: float
    macro_f1: float
    n: int
    labels: list[str]
    per_class: dict[str, ClassScores]
    confusion_matrix: list[list[int]]
    best_epoch: int | None = None
    """The epoch whose checkpoint was tested (set by the training loop)."""
    zero_shot: bool = False
    """Scored by the untrained template + verbalizer."""

    def to_dict(self) -> dict[str, Any]:
        out = {"accuracy": self.accuracy, "macro_f1": self.macro_f1, "n": self.n, "labels": list(self.labels),
               "per_class": {label: asdict(s) for label, s in self.per_class.items()},
               "confusion_matrix": self.confusion_matrix}
        if self.best_epoch is not None:
            out["best_epoch"] = self.best_epoch
        if self.zero_shot:
            out["zero_shot"] = True
        return out

    def scalars(self) -> dict[str, float]:
        return {"accuracy": self.accuracy, "macro_f1": self.macro_f1}


@dataclass
class ClassificationValidation(Metrics):
    """What early stopping reads after each epoch."""

    accuracy: float
    macro_f1: float
    loss: float
    """Mean negative log-probability of the true label."""

    def to_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "macro_f1": self.macro_f1, "loss": self.loss}

    def scalars(self) -> dict[str, float]:
        return self.to_dict()


@dataclass
class Prediction:
    """One predicted example: the label, its probability, and every label's probability."""

    label: str
    confidence: float
    probabilities: dict[str, float] = field(default_factory=dict)


def compute_metrics(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]) -> ClassificationMetrics:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix."""
    # numpy, not sklearn: importing sklearn.metrics (with scipy) costs seconds and ~50 MB on every
    # training run, which validates each epoch. Same definitions as sklearn with zero_division=0.
    import numpy as np

    k = len(labels)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    tp, support, predicted = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
    p, r, f = (_ratio(tp, predicted), _ratio(tp, support), _ratio(2 * tp, predicted + support))
    return ClassificationMetrics(
        accuracy=float(tp.sum() / len(y_true)) if len(y_true) else 0.0,
        macro_f1=float(f.mean()) if k else 0.0,
        n=len(y_true),
        labels=list(labels),
        per_class={label: ClassScores(float(p[i]), float(r[i]), float(f[i]), int(support[i])) for i, label in enumerate(labels)},
        confusion_matrix=cm.tolist(),
    )


def _ratio(num, den):
    import numpy as np

    return np.divide(num, den, out=np.zeros(len(num), dtype=np.float64), where=den > 0)


def metrics_from_proba(probs, y_true: Sequence[int], labels: Sequence[str]) -> ClassificationMetrics:
    import numpy as np

    y_pred = np.asarray(probs).argmax(axis=1).tolist() if len(y_true) else []
    return compute_metrics(list(y_true), y_pred, labels)


def encoder_for(cfg: "Config", tokenizer, labels: Sequence[str], demonstrations: "Demonstrations | None") -> Encoder:
    """rows -> EncodedSplit with the config's template, the tokenizer, LM-BFF demonstrations (if any) and label indices."""
    from promptft_cli.prompting.encoding import encode_rows
    from promptft_cli.prompting.templates import template_for

    template = template_for(cfg)
    index = {label: i for i, label in enumerate(labels)}
    encode_with = demonstrations.encode_rows if demonstrations else encode_rows

    def encode(rows: Sequence[Mapping[str, str]], labelled: bool = True) -> "EncodedSplit":
        return encode_with(rows, template, tokenizer, cfg.model.max_length, index if labelled else None)

    return encode


class ClassificationTask(Task):
    name = "classification"

    def encoder(self, cfg: "Config", tokenizer, data: "PreparedData") -> Encoder:
        from promptft_cli.modeling.embedding import demonstrations_for

        demos = demonstrations_for(cfg, data["train"].rows, data.labels, tokenizer)
        return encoder_for(cfg, tokenizer, data.labels, demos)

    def collate(self, split, indices, pad_id):
        from promptft_cli.modeling.batching import collate

        return collate(split, indices, pad_id)

    def build_model(self, cfg: "Config", tokenizer, labels: list[str], *, report: bool = True) -> "nn.Module":
        from promptft_cli.modeling.classifier import build_classifier

        return build_classifier(cfg, labels, tokenizer, report=report)

    def loss(self, model, batch) -> tuple["torch.Tensor", int]:
        import torch

        labels = batch.pop("labels")
        return torch.nn.functional.cross_entropy(model(**batch).float(), labels), labels.size(0)

    def inference_batches(self, model, split, batch_size: int) -> list[list[int]]:
        from promptft_cli.modeling.batching import inference_batches

        return inference_batches(split.lengths, batch_size, extra_tokens=getattr(model, "virtual_tokens", 0))

    def score(self, model, split, batches):
        """Probabilities (on CPU) for the examples of `batches`, one forward pass per batch on the model's device."""
        import torch

        from promptft_cli.modeling.batching import pad_token_id

        device = next(model.parameters()).device
        pad_id = pad_token_id(model)
        idx: list[int] = [i for b in batches for i in b]
        out = torch.empty(len(idx), model.num_labels)
        model.eval()
        with torch.inference_mode():
            row = 0
            for b in batches:
                batch = {k: v.to(device) for k, v in self.collate(split, b, pad_id).items() if k != "labels"}
                out[row : row + len(b)] = torch.softmax(model(**batch).float(), dim=-1).cpu()
                row += len(b)
        return idx, out

    def assemble(self, pieces, total: int) -> "np.ndarray":
        import torch

        out = torch.empty(total, pieces[0][1].shape[1])
        for idx, probs in pieces:
            out[idx] = probs
        return out.numpy()

    def validation_metrics(self, outputs, split, labels: list[str]) -> ClassificationValidation:
        import numpy as np

        metrics = metrics_from_proba(outputs, split.labels, labels)
        loss = float(-np.log(np.clip(outputs[np.arange(len(split)), split.labels], 1e-12, None)).mean())
        return ClassificationValidation(metrics.accuracy, metrics.macro_f1, loss)

    def test_metrics(self, outputs, split, labels: list[str]) -> ClassificationMetrics:
        return metrics_from_proba(outputs, split.labels, labels)

    def predictions(self, outputs, labels: list[str]) -> list[Prediction]:
        """Typed predictions, one per row of `outputs` (class probabilities)."""
        found = []
        for p in outputs:
            best = int(p.argmax())
            found.append(Prediction(labels[best], round(float(p[best]), 6),
                                    {label: round(float(v), 6) for label, v in zip(labels, p)}))
        return found

    def prediction_columns(self, outputs, labels: list[str]) -> list[dict[str, Any]]:
        return [{"prediction": p.label, "confidence": p.confidence, **{f"prob_{k}": v for k, v in p.probabilities.items()}}
                for p in self.predictions(outputs, labels)]


def inference_device() -> str:
    """Where predict and evaluate run: this process's GPU when there is one, else the CPU."""
    import os

    import torch

    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"  # one GPU per process when launched
    return "cpu"
