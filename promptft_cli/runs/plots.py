"""Figures of a run as PNG files: learning curves, confusion matrices, and the spread over few-shot seeds.

matplotlib runs on the Agg backend (no display needed) and is imported only when a plot is drawn.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Sequence

from promptft_cli import runs

CURVES = "curves.png"
CONFUSION = "confusion_matrix.png"
SEEDS = "seeds.png"
_DPI = 100
_METRICS = ("accuracy", "macro_f1", "loss")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)  # layout="constrained" already fits the labels
    plt.close(fig)
    runs.write_bytes_atomic(path, buffer.getvalue())
    return path


def read_history(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split history.jsonl into per-step records (loss, lr) and per-epoch records (val_*)."""
    steps, epochs = [], []
    if not path.exists():
        return steps, epochs
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut off by a crash; the rest of the history is still worth plotting
        if any(k.startswith("val_") for k in record):
            epochs.append(record)
        elif "loss" in record:
            steps.append(record)
    return steps, epochs


def plot_curves(history: Path, path: Path, best_epoch: int | None = None) -> Path:
    """Training loss and learning rate per step, validation metrics per epoch (best epoch marked)."""
    plt = _pyplot()
    steps, epochs = read_history(history)
    fig, (ax_loss, ax_val, ax_lr) = plt.subplots(1, 3, figsize=(14, 4), layout="constrained")
    if steps:
        x = [r["step"] for r in steps]
        loss = [r["loss"] for r in steps]
        ax_loss.plot(x, loss, color="tab:blue", alpha=0.35, lw=1, label="train loss (step)")
        ax_loss.plot(x, _smooth(loss), color="tab:blue", lw=2, label="train loss (smoothed)")
        ax_lr.plot(x, [r.get("lr", 0.0) for r in steps], color="tab:purple")
    if epochs and "val_loss" in epochs[0]:
        ax_loss.plot([r["step"] for r in epochs], [r["val_loss"] for r in epochs], "o-", color="tab:red", label="validation loss (epoch)")
    # Different markers and dashes: on balanced data accuracy and macro-F1 often coincide and would hide each other.
    for metric, style, color in (("accuracy", "o-", "tab:green"), ("macro_f1", "s--", "tab:orange")):
        if epochs and f"val_{metric}" in epochs[0]:
            ax_val.plot([r["epoch"] for r in epochs], [r[f"val_{metric}"] for r in epochs], style, color=color,
                        markersize=7 if metric == "accuracy" else 4, label=f"validation {metric}")
    generation = bool(epochs) and "val_chrf" in epochs[0]
    for metric, style, color in (("chrf", "o-", "tab:green"), ("bleu", "s--", "tab:orange")) if generation else ():
        ax_val.plot([r["epoch"] for r in epochs], [r[f"val_{metric}"] for r in epochs], style, color=color,
                    markersize=6, label=f"validation {'chrF++' if metric == 'chrf' else 'BLEU'}")
    if best_epoch:
        ax_val.axvline(best_epoch, color="grey", ls="--", lw=1, label=f"best epoch ({best_epoch})")
    ax_loss.set(title="loss", xlabel="optimiser step", ylabel="cross-entropy")
    # sacreBLEU's scores are on 0-100, classification's on 0-1.
    ax_val.set(title="validation", xlabel="epoch", ylim=(0, 102) if generation else (0, 1.02))
    ax_lr.set(title="learning rate", xlabel="optimiser step")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    for ax in (ax_loss, ax_val):
        if ax.has_data():
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    if epochs:
        ax_val.set_xticks(sorted({r["epoch"] for r in epochs}))
    return _save(fig, path)


def _smooth(values: Sequence[float], weight: float = 0.8) -> list[float]:
    # TensorBoard-style exponential moving average, debiased so the first points are not pulled to 0.
    out, avg = [], 0.0
    for i, v in enumerate(values, start=1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight ** i))
    return out


def plot_confusion(matrix: Sequence[Sequence[int]], labels: Sequence[str], path: Path, title: str = "") -> Path:
    """Counts and row-normalised (recall per true label) confusion matrices side by side."""
    import numpy as np

    plt = _pyplot()
    counts = np.asarray(matrix, dtype=float)
    totals = counts.sum(axis=1, keepdims=True)
    rates = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    n = len(labels)
    side = min(max(3.5, 0.45 * n + 2), 14)
    fig, axes = plt.subplots(1, 2, figsize=(2 * side + 1.5, side), layout="constrained")
    for ax, values, name, fmt in ((axes[0], counts, "counts", "{:.0f}"), (axes[1], rates, "row-normalised", "{:.2f}")):
        vmax = max(values.max(), 1.0) if name == "counts" else 1.0
        image = ax.imshow(values, cmap="Blues", vmin=0, vmax=vmax)
        fig.colorbar(image, ax=ax, shrink=0.8)
        ax.set(title=name, xlabel="predicted", ylabel="true", xticks=range(n), yticks=range(n))
        ax.set_xticklabels(labels, rotation=45 if n > 3 else 0, ha="right" if n > 3 else "center")
        ax.set_yticklabels(labels)
        if n <= 25:  # beyond that the numbers are unreadable; the colours still tell the story
            for i in range(n):
                for j in range(n):
                    ax.text(j, i, fmt.format(values[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if values[i, j] > vmax / 2 else "black")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_seeds(summary: dict[str, Any], path: Path) -> Path:
    """Box plot per metric over few-shot seeds, each seed's value drawn as a labelled point.

    `summary` is summary.json of a multi-seed run: {metric: {"mean", "std", "per_seed": [...]}, "seeds": [...]?}.
    """
    plt = _pyplot()
    metrics = [m for m, v in summary.items() if isinstance(v, dict) and v.get("per_seed")]
    if not metrics:
        raise ValueError("summary has no per_seed values to plot")
    seeds = summary.get("seeds") or list(range(1, len(summary[metrics[0]]["per_seed"]) + 1))
    fig, ax = plt.subplots(figsize=(max(4, 1.8 * len(metrics) + 1), 4), layout="constrained")
    data = [summary[m]["per_seed"] for m in metrics]
    ax.boxplot(data, widths=0.5, medianprops={"color": "black"})
    ax.set_xticks(range(1, len(metrics) + 1), metrics)
    for i, values in enumerate(data, start=1):
        jitter = [i + 0.12 * ((k % 3) - 1) for k in range(len(values))]
        ax.scatter(jitter, values, s=18, color="tab:blue", zorder=3)
        for x, y, seed in zip(jitter, values, seeds):
            ax.annotate(str(seed), (x, y), textcoords="offset points", xytext=(4, 2), fontsize=7, color="grey")
        mean = summary[metrics[i - 1]].get("mean")
        if mean is not None:
            ax.plot([i - 0.25, i + 0.25], [mean, mean], color="tab:red", lw=1.5)
    ax.set(title=f"{len(seeds)} seeds (black: median, red: mean; numbers: seed)", ylabel="test score")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def write_run_plots(run_dir: Path, metrics: dict[str, Any] | None = None, best_epoch: int | None = None) -> list[Path]:
    """curves.png from history.jsonl and confusion_matrix.png from the test metrics, in the run directory."""
    if metrics is None and (run_dir / runs.METRICS).exists():
        metrics = runs.read_json(run_dir / runs.METRICS)
    written = []
    if (run_dir / runs.HISTORY).exists():
        written.append(plot_curves(run_dir / runs.HISTORY, run_dir / CURVES, best_epoch or (metrics or {}).get("best_epoch")))
    if metrics and metrics.get("confusion_matrix"):
        title = f"test: accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f} (n={metrics['n']})"
        written.append(plot_confusion(metrics["confusion_matrix"], metrics["labels"], run_dir / CONFUSION, title))
    return written
