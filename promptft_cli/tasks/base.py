"""The task seam: what the training loop, evaluate, predict and the few-shot protocol ask of a task.

One loop serves every task (as transformers' one Trainer serves Seq2SeqTrainer, which only changes what a
prediction step returns): the loop sets up, trains on `task.loss`, validates with `task.validation_metrics`,
keeps the best checkpoint and tests with `task.test_metrics`; it never looks at labels or texts itself.

Adding a task (say `generation`) is one module and one registry line:

1. `promptft_cli/tasks/generation.py` with `class GenerationTask(Task)` implementing every abstract method:
   - `encoder(cfg, tokenizer, data)`: rows -> an encoded split (token ids, `lengths`, and targets when
     `labelled`); `collate(split, indices, pad_id)`: the batch tensors (e.g. left padding for a decoder).
   - `build_model(cfg, tokenizer, labels)`: the backbone with the method applied (`labels` is empty).
   - `loss(model, batch)`: the batch's training loss (say, token cross-entropy over the answer) and its
     number of examples.
   - `inference_batches` + `score(model, split, batches)`: what inference returns per example, here the
     generated texts, and `assemble` to put scored pieces back into the split's order. The loop runs them
     on one process (`infer`) or spread over a launch (training/distributed.py), so a task never gathers.
   - `validation_metrics(outputs, split, labels)`: a `Metrics` with `loss` and every name of
     `TaskSpec.stopping_metrics` (say chrF, BLEU); `test_metrics(...)`: the `Metrics` written as
     metrics.json (with a `best_epoch` field the loop fills in).
   - `predictions(outputs, labels)`: typed predictions (the Python API's), and `prediction_columns`: the
     columns `promptft predict` adds to each input row.
2. `TASKS["generation"] = TaskSpec(("chrf", "bleu", "loss"), "promptft_cli.tasks.generation:GenerationTask")`.
   `config.task` then accepts `generation`, and `train.early_stopping.metric` its names (default: the first).

This module is light on purpose (no torch at import): config validation reads `TASKS`.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

from promptft_cli.errors import PromptftError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from promptft_cli.config import Config
    from promptft_cli.data.reading import PreparedData


class EncodedRows(Protocol):
    """What the loop needs of an encoded split: its size and each example's token count (for batching)."""

    lengths: list[int]

    def __len__(self) -> int: ...


Encoder = Callable[..., Any]
"""`encode(rows, labelled=True) -> encoded split`: this run's template, tokenizer and targets applied."""


class Metrics(Mapping):
    """Base of a task's metrics dataclasses: typed fields, read like the dict that `to_dict` writes as JSON."""

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def scalars(self) -> dict[str, float]:
        """The headline numbers (for trackers and one-line summaries)."""
        raise NotImplementedError

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __iter__(self):
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


class Task(ABC):
    """One task's data encoding, model, loss, inference, metrics and prediction columns (see the module docstring)."""

    name: str = ""

    @abstractmethod
    def encoder(self, cfg: "Config", tokenizer: Any, data: "PreparedData") -> Encoder:
        """The function that encodes this run's rows (training: built from the prepared data)."""

    @abstractmethod
    def collate(self, split: Any, indices: Sequence[int], pad_id: int) -> dict[str, "torch.Tensor"]:
        """The tensors of one batch of `split` (targets included when the split has them)."""

    @abstractmethod
    def build_model(self, cfg: "Config", tokenizer: Any, labels: list[str], *, report: bool = True) -> "nn.Module":
        """Backbone + method (+ head), freshly initialised per the config."""

    @abstractmethod
    def loss(self, model: "nn.Module", batch: dict[str, "torch.Tensor"]) -> tuple["torch.Tensor", int]:
        """The loss of a training batch and the number of examples in it."""

    @abstractmethod
    def inference_batches(self, model: "nn.Module", split: Any, batch_size: int) -> list[list[int]]:
        """How `split` is cut into inference batches (indices into the split)."""

    @abstractmethod
    def score(self, model: "nn.Module", split: Any, batches: Sequence[Sequence[int]]) -> tuple[list[int], Any]:
        """Outputs for the examples of `batches`: (example indices, one output row per index, in that order)."""

    @abstractmethod
    def assemble(self, pieces: Sequence[tuple[list[int], Any]], total: int) -> Any:
        """Scored (indices, outputs) pieces, together covering the split once, in the split's order."""

    def infer(self, model: "nn.Module", split: Any, batch_size: int) -> Any:
        """Outputs for every example of `split` on this process (label probabilities, generated texts, ...)."""
        return self.assemble([self.score(model, split, self.inference_batches(model, split, batch_size))], len(split))

    @abstractmethod
    def validation_metrics(self, outputs: Any, split: Any, labels: list[str]) -> Metrics:
        """Metrics with `loss` and every early-stopping metric this task accepts."""

    @abstractmethod
    def test_metrics(self, outputs: Any, split: Any, labels: list[str]) -> Metrics:
        """The full metrics written as metrics.json / evaluation.json."""

    @abstractmethod
    def predictions(self, outputs: Any, labels: list[str]) -> list[Any]:
        """Per example, a typed prediction (what the Python API's `Predictor.predict` returns)."""

    @abstractmethod
    def prediction_columns(self, outputs: Any, labels: list[str]) -> list[dict[str, Any]]:
        """Per example, the columns `predict` adds to its input row."""


@dataclass(frozen=True)
class TaskSpec:
    stopping_metrics: tuple[str, ...]
    """Validation metrics `train.early_stopping.metric` may name; the first is the default."""
    implementation: str
    """`module:Class` of the Task, imported only when a run needs it (config validation stays light)."""

    def load(self) -> Task:
        module, _, name = self.implementation.partition(":")
        return getattr(importlib.import_module(module), name)()


TASKS: dict[str, TaskSpec] = {
    "classification": TaskSpec(("accuracy", "macro_f1", "loss"), "promptft_cli.tasks.classification:ClassificationTask"),
    # chrF first: smoother than BLEU on small validation sets, where BLEU is often 0 for the first epochs.
    "generation": TaskSpec(("chrf", "bleu", "rouge1", "rouge2", "rougeL", "exact_match", "loss"),
                           "promptft_cli.tasks.generation:GenerationTask"),
}


def get_task(name: str) -> Task:
    """The registered task called `name` (config validation already checked it)."""
    if name not in TASKS:
        raise PromptftError(f"unknown task '{name}'; choose one of: {', '.join(TASKS)}", field="task")
    return TASKS[name].load()
