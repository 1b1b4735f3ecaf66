"""Experiment trackers (`train.report_to`) through accelerate: TensorBoard, MLflow, Weights & Biases.

TensorBoard logs land in `<run_dir>/tensorboard/`, so `tensorboard --logdir runs/` shows every run.
MLflow and W&B use their own settings (MLFLOW_TRACKING_URI, WANDB_MODE, ...); the run is named after
the run directory.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Sequence

from promptft_cli.errors import PromptftError

TRACKERS = ("tensorboard", "mlflow", "wandb")
TENSORBOARD_DIR = "tensorboard"
PROJECT = "promptft"  # MLflow experiment / W&B project; runs inside it are named after the run directory
_FIELD = "train.report_to"


def check_installed(report_to: Sequence[str]) -> None:
    """Fail before training starts when a requested tracker's package is missing."""
    for name in report_to:
        if name not in TRACKERS:
            raise PromptftError(f"unknown tracker '{name}'; choose from {', '.join(TRACKERS)}", field=_FIELD)
        if importlib.util.find_spec(name) is None:
            raise PromptftError(f"'{name}' is listed but the {name} package is not installed: "
                                f"pip install 'promptft[{name}]' (or remove it from the list)", field=_FIELD)


def accelerator_kwargs(report_to: Sequence[str], run_dir: Path) -> dict[str, Any]:
    """`log_with` and `project_dir` for `Accelerator(...)`; empty when nothing is tracked."""
    if not report_to:
        return {}
    check_installed(report_to)
    from accelerate.tracking import TensorBoardTracker

    # A ready-made tracker fixes the folder to run_dir/tensorboard; by name, accelerate would use
    # run_dir/<project name>, which must stay "promptft" for MLflow and W&B.
    log_with = [TensorBoardTracker(TENSORBOARD_DIR, run_dir) if name == "tensorboard" else name
                for name in dict.fromkeys(report_to)]
    return {"log_with": log_with, "project_dir": str(run_dir)}


def start(accelerator, config: dict[str, Any], run_dir: Path) -> None:
    """Open a tracker run named after the run directory and record the resolved config as hyperparameters."""
    if not accelerator.log_with:
        return
    name = run_dir.resolve().name
    accelerator.init_trackers(PROJECT, config=hyperparameters(config),
                              init_kwargs={"wandb": {"name": name, "dir": str(run_dir)}, "mlflow": {"run_name": name}})


def log(accelerator, values: dict[str, float], step: int) -> None:
    if accelerator.trackers:
        accelerator.log(values, step=step)


def finish(accelerator) -> None:
    # Not accelerator.end_training(): that also tears down the process group, which is the launcher's job.
    for tracker in accelerator.trackers:
        tracker.finish()


def hyperparameters(config: dict[str, Any], prefix: str = "") -> dict[str, int | float | str | bool]:
    """Flatten the resolved config to `section.key` scalars, the only values every tracker accepts."""
    flat: dict[str, int | float | str | bool] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(hyperparameters(value, name + "."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = "null" if value is None else str(value)
    return flat
