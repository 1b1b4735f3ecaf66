"""Evaluate: metrics of a trained run (or a zero-shot config) on its test split or any labelled file."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from promptft_cli import runs
from promptft_cli.errors import PromptftError


def compute_metrics(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    ids = list(range(len(labels)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=ids, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)) if len(y_true) else 0.0,
        "macro_f1": float(f1_score(y_true, y_pred, labels=ids, average="macro", zero_division=0)),
        "n": len(y_true),
        "labels": list(labels),
        "per_class": {
            label: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, label in enumerate(labels)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=ids).tolist(),
    }


def metrics_from_proba(probs, y_true: Sequence[int], labels: Sequence[str]) -> dict[str, Any]:
    import numpy as np

    y_pred = np.asarray(probs).argmax(axis=1).tolist() if len(y_true) else []
    return compute_metrics(list(y_true), y_pred, labels)


def labelled_rows(path: Path, columns: list[str], label_column: str, labels: Sequence[str], encoding: str = "utf-8") -> list[dict[str, str]]:
    """Read a labelled file for evaluation; a label the model does not know is an error."""
    from promptft_cli.data import read_split

    split, _ = read_split(path, "evaluation", columns, label_column, encoding)
    known = set(labels)
    for row, line in zip(split.rows, split.lines):
        if row["label"] not in known:
            raise PromptftError(f"label '{row['label']}' is not one of the run's labels ({', '.join(labels)})",
                                file=path, row=line, field=label_column)
    return split.rows


def evaluate(predictor, rows: list[dict[str, str]], batch_size: int | None = None) -> dict[str, Any]:
    index = {label: i for i, label in enumerate(predictor.labels)}
    probs = predictor.proba(rows, batch_size)
    return metrics_from_proba(probs, [index[r["label"]] for r in rows], predictor.labels)


def evaluate_target(target: Path, data: Path | None = None, overrides: list[str] | None = None,
                    batch_size: int | None = None) -> tuple[dict[str, Any], Path]:
    """Evaluate a run directory, or the run of a config file; returns the metrics and the run directory."""
    from promptft_cli.predict import Predictor

    run_dir = _run_dir_of(target, overrides)
    predictor = Predictor.from_run(run_dir)
    cfg = predictor.cfg
    if data is not None:
        rows = labelled_rows(data, cfg.data.columns, cfg.data.label_column, predictor.labels, cfg.data.encoding)
    else:
        test_file = run_dir / runs.DATA / "test.jsonl"
        if not test_file.exists():
            raise PromptftError("run has no prepared test split; pass --data FILE", file=run_dir)
        rows = labelled_rows(test_file, cfg.data.columns, "label", predictor.labels)
    return evaluate(predictor, rows, batch_size), run_dir


def _run_dir_of(target: Path, overrides: list[str] | None) -> Path:
    if target.is_dir():
        return target
    from promptft_cli.config import load_config

    return load_config(target, overrides).run_dir
