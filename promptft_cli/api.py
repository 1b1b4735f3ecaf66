"""The Python API: what the `promptft` commands do, as functions (`import promptft_cli as pf`).

    cfg = pf.load_config("sentiment.yaml", overrides=["train.epochs=3"])
    run = pf.train(cfg)                       # a Run: run_dir, metrics, best_epoch, ...
    metrics = pf.evaluate(run.run_dir)        # ClassificationMetrics (reads like metrics.json)
    pf.Predictor(run.run_dir).predict(["a great film", {"text": "dull"}])   # [Prediction(label, confidence, probabilities)]

Bad input raises `pf.PromptftError` (with `file`, `row`, `field`), as the CLI reports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from promptft_cli.config import Config
from promptft_cli.config import load_config as _load_config
from promptft_cli.errors import PromptftError

if TYPE_CHECKING:
    from promptft_cli.inference import predict as _predict
    from promptft_cli.tasks.base import Metrics
    from promptft_cli.tasks.classification import Prediction
    from promptft_cli.training.loop import Run

__all__ = ["Config", "PromptftError", "Predictor", "evaluate", "load_config", "train", "train_seeds"]


def load_config(path: str | Path, overrides: Sequence[str] | None = None) -> Config:
    """Read and validate a YAML config; `overrides` are `section.key=value` strings, as `--set` takes them."""
    return _load_config(path, list(overrides or []))


def train(cfg: Config, *, overwrite: bool = False, resume: bool = False) -> "Run":
    """Train one run per the config and write its run directory; returns the Run (test metrics of the best checkpoint).

    A config with `data.few_shot.seeds` is the few-shot protocol: use `train_seeds`.
    """
    from promptft_cli.training.loop import train as train_run

    if cfg.data.few_shot and cfg.data.few_shot.seeds:
        raise PromptftError("data.few_shot.seeds trains one run per seed: call train_seeds(cfg) for the summary",
                            field="data.few_shot.seeds")
    return train_run(cfg, overwrite=overwrite, resume=resume)


def train_seeds(cfg: Config, *, overwrite: bool = False, resume: bool = False) -> dict[str, Any]:
    """The few-shot protocol: one run per seed of `data.few_shot.seeds`; returns the summary (mean ± std per metric)."""
    from promptft_cli.training.distributed import single_process_only
    from promptft_cli.training.fewshot import train_seeds as train_all

    single_process_only("data.few_shot.seeds: one small run per seed", field="data.few_shot.seeds")
    return train_all(cfg, overwrite=overwrite, resume=resume)


def evaluate(run_dir: str | Path, data: str | Path | None = None, *, batch_size: int | None = None,
             checkpoint: str | Path | None = None, overrides: Sequence[str] | None = None) -> "Metrics":
    """Test metrics of a trained run on its test split, or on the labelled file `data`.

    `run_dir` may also be a config file (its output_dir; zero-shot when that holds no run).
    """
    from promptft_cli.inference.evaluate import evaluate_target

    metrics, _ = evaluate_target(Path(run_dir), _path(data), list(overrides or []), batch_size, _path(checkpoint))
    return metrics


class Predictor:
    """A trained run loaded once, to label texts: `Predictor(run_dir).predict(["text", ...])`."""

    def __init__(self, run_dir: str | Path, *, checkpoint: str | Path | None = None,
                 overrides: Sequence[str] | None = None) -> None:
        from promptft_cli.inference.predict import Predictor as RunPredictor

        self._predictor: "_predict.Predictor" = RunPredictor.for_target(Path(run_dir), _path(checkpoint), list(overrides or []))

    @property
    def labels(self) -> list[str]:
        return list(self._predictor.labels)

    @property
    def config(self) -> Config:
        return self._predictor.cfg

    def predict(self, inputs: Sequence[str | Mapping[str, Any]], *, batch_size: int | None = None) -> list["Prediction"]:
        """One Prediction (label, confidence, probabilities) per input: a text, or a row {column: text}."""
        rows = [self._row(item, i) for i, item in enumerate(inputs)]
        outputs = self._predictor.proba(rows, batch_size)
        return self._predictor.task.predictions(outputs, self._predictor.labels)

    def _row(self, item: str | Mapping[str, Any], index: int) -> dict[str, str]:
        from promptft_cli.data.reading import text_value

        columns = self._predictor.cfg.data.columns
        if isinstance(item, str):
            if len(columns) != 1:
                raise PromptftError(f"this run reads {len(columns)} columns ({', '.join(columns)}); pass each input as a "
                                    "dict of them", row=index + 1)
            item = {columns[0]: item}
        elif not isinstance(item, Mapping):
            raise PromptftError(f"an input is a text or a dict of columns, not {type(item).__name__}", row=index + 1)
        missing = [c for c in columns if c not in item]
        if missing:
            raise PromptftError(f"missing column '{missing[0]}'", row=index + 1, field=missing[0])
        return {c: text_value(item[c], file="<inputs>", row=index + 1, field=c) for c in columns}


def _path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)
