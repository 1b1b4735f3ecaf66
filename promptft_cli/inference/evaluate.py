"""Evaluate: metrics of a trained run (or a zero-shot config) on its test split or any labelled file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from promptft_cli import runs
from promptft_cli.errors import PromptftError
from promptft_cli.tasks.base import Metrics

if TYPE_CHECKING:
    from promptft_cli.inference.predict import Predictor


def labelled_rows(path: Path, columns: list[str], label_column: str, labels: Sequence[str], encoding: str = "utf-8") -> list[dict[str, str]]:
    """Read a labelled file for evaluation; a label the model does not know is an error."""
    from promptft_cli.data.reading import read_split

    split, _ = read_split(path, "evaluation", columns, label_column, encoding)
    known = set(labels)
    for row, line in zip(split.rows, split.lines):
        if row["label"] not in known:
            raise PromptftError(f"label '{row['label']}' is not one of the run's labels ({', '.join(labels)})",
                                file=path, row=line, field=label_column)
    return split.rows


def reference_rows(path: Path, cfg, prepared: bool = False) -> list[dict[str, str]]:
    """Read a file of inputs + targets (and references) for evaluating a generation run."""
    from promptft_cli.data.generation import read_generation_split
    from promptft_cli.prompting.generation import REFERENCES, TARGET

    target, references = (TARGET, REFERENCES) if prepared else (cfg.data.target_column, cfg.data.references_column)
    split, _ = read_generation_split(path, "evaluation", cfg.data.columns, target, references,
                                     "utf-8" if prepared else cfg.data.encoding)
    return split.rows


def _rows_of(path: Path, predictor: "Predictor", prepared: bool = False) -> list[dict[str, str]]:
    cfg = predictor.cfg
    if cfg.task == "generation":
        return reference_rows(path, cfg, prepared)
    if prepared:
        return labelled_rows(path, cfg.data.columns, "label", predictor.labels)
    return labelled_rows(path, cfg.data.columns, cfg.data.label_column, predictor.labels, cfg.data.encoding)


def evaluate(predictor: "Predictor", rows: list[dict[str, str]], batch_size: int | None = None) -> Metrics:
    """The task's test metrics of the predictor's model on labelled rows."""
    split = predictor.encode(rows)
    return predictor.task.test_metrics(predictor.infer(split, batch_size), split, predictor.labels)


def evaluate_target(target: Path, data: Path | None = None, overrides: list[str] | None = None,
                    batch_size: int | None = None, checkpoint: Path | None = None) -> tuple[Metrics, Path]:
    """Evaluate a run directory, or the run of a config file; returns the metrics and the run directory.

    `checkpoint` scores a saved checkpoint instead of the finished run's best one (works on unfinished runs).
    """
    from promptft_cli.inference.predict import Predictor

    run_dir = run_dir_of(target, overrides)
    predictor = Predictor.for_target(target, checkpoint, overrides)
    if predictor.zero_shot:
        return _evaluate_zero_shot(predictor, data, batch_size), run_dir
    if data is not None:
        rows = _rows_of(data, predictor)
    else:
        test_file = run_dir / runs.DATA / "test.jsonl"
        if not test_file.exists():
            raise PromptftError("run has no prepared test split; pass --data FILE", file=run_dir)
        rows = _rows_of(test_file, predictor, prepared=True)
    return evaluate(predictor, rows, batch_size), run_dir


def _evaluate_zero_shot(predictor: "Predictor", data: Path | None, batch_size: int | None) -> Metrics:
    """Score the prepared test split (or `data`) with the untrained template + verbalizer."""
    from promptft_cli.data.prepare import prepare

    cfg = predictor.cfg
    prepared = prepare(cfg, predictor.tokenizer)
    missing = [label for label in prepared.labels if label not in predictor.labels]
    if missing and cfg.task != "generation":  # the verbalizer's own order is fine, but every label of the data needs words
        raise PromptftError(f"the data has label(s) {', '.join(missing)} without words in prompt.verbalizer",
                            field="prompt.verbalizer")
    rows = _rows_of(data, predictor) if data is not None else prepared["test"].rows
    return replace(evaluate(predictor, rows, batch_size), zero_shot=True)


def run_dir_of(target: Path, overrides: list[str] | None = None) -> Path:
    """The run directory `target` names: itself, or the output_dir of a config file."""
    if not target.exists():
        raise PromptftError("no run directory or config file here", file=target)
    if target.is_dir():
        return target
    from promptft_cli.config import load_config

    return load_config(target, overrides).run_dir


def write_evaluation(metrics: Mapping[str, Any], run_dir: Path, data: Path | None = None) -> list[Path]:
    """Save metrics as JSON and their figure beside it in the run directory.

    The test split gives `evaluation.json` + `evaluation_confusion_matrix.png`; `--data FILE` gives
    `evaluation-<FILE stem>.json` + `evaluation-<FILE stem>_confusion_matrix.png`, so evaluations of
    different files sit side by side. A multi-seed summary gets a box plot over seeds (`..._seeds.png`).
    """
    from promptft_cli.runs.plots import plot_confusion, plot_seeds

    stem = "evaluation" if data is None else f"evaluation-{data.stem}"
    report = run_dir / f"{stem}.json"
    runs.write_json_atomic(report, {"data": str(data) if data else "test split", **metrics})
    if "chrf" in metrics:  # generation: the per-example scores are in the JSON; no figure
        return [report]
    if "confusion_matrix" not in metrics:
        return [report, plot_seeds(metrics, run_dir / f"{stem}_seeds.png")]
    title = f"{data.name if data else 'test split'}: accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f} (n={metrics['n']})"
    figure = plot_confusion(metrics["confusion_matrix"], metrics["labels"], run_dir / f"{stem}_confusion_matrix.png", title)
    return [report, figure]


def quality_bars(task: str, minimums: Sequence[str] = (), min_accuracy: float | None = None) -> list[tuple[str, float]]:
    """The (metric, minimum) pairs of `--min-metric NAME=VALUE` and `--min-accuracy`; a metric the task lacks is an error."""
    from promptft_cli.tasks.base import TASKS

    known = [m for m in TASKS[task].stopping_metrics if m != "loss"]
    bars = [_parse_minimum(item, known, task) for item in minimums]
    if min_accuracy is not None:
        bars.insert(0, (_known("accuracy", known, task, "--min-accuracy"), min_accuracy))
    return bars


def gate_failures(metrics: Mapping[str, Any], bars: Sequence[tuple[str, float]]) -> list[str]:
    """What misses its bar; a multi-seed summary is gated on each metric's mean over seeds."""
    failed = []
    for name, bar in bars:
        value = metrics[name]["mean"] if isinstance(metrics[name], Mapping) else metrics[name]
        if value < bar:
            option = f"--min-accuracy {bar:g}" if name == "accuracy" else f"--min-metric {name}={bar:g}"
            failed.append(f"{name} {value:.4f} is below {option}")
    return failed


def _parse_minimum(item: str, known: list[str], task: str) -> tuple[str, float]:
    name, sep, value = item.partition("=")
    try:
        bar = float(value)
    except ValueError:
        bar = None
    if not sep or bar is None:
        raise PromptftError(f"expected NAME=VALUE such as {known[0]}=25, got '{item}'", field="--min-metric")
    return _known(name.strip(), known, task, "--min-metric"), bar


def _known(name: str, known: list[str], task: str, option: str) -> str:
    if name not in known:
        raise PromptftError(f"task {task} does not compute '{name}'; choose one of: {', '.join(known)}", field=option)
    return name
