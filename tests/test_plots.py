"""Plots: real PNG files of sensible size, from a real run's history and from hand-made inputs."""

from __future__ import annotations

import json
import struct

import pytest

from promptft_cli import runs
from promptft_cli.runs import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path) -> tuple[int, int]:
    """(width, height) of a PNG, checking the signature and that the header chunk comes first."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def assert_png(path, min_width: int = 400, min_height: int = 250, min_bytes: int = 8_000) -> None:
    assert path.is_file(), f"{path} missing"
    width, height = png_size(path)
    assert width >= min_width and height >= min_height, (width, height)
    assert width <= 5000 and height <= 5000, (width, height)
    assert path.stat().st_size >= min_bytes  # an empty canvas compresses to a few KB


def test_training_writes_curves_and_confusion_matrix(trained_run):
    assert_png(trained_run / plots.CURVES, min_width=1000)
    assert_png(trained_run / plots.CONFUSION)
    assert not list(trained_run.glob(".*.tmp")), "a temporary file was left behind"


def test_curves_survive_a_line_cut_by_a_crash(tmp_path):
    history = tmp_path / runs.HISTORY
    lines = [json.dumps({"step": s, "epoch": 1 + (s > 5), "loss": 1.0 / s, "lr": 0.01}) for s in range(1, 11)]
    lines.insert(5, json.dumps({"epoch": 1, "step": 5, "val_accuracy": 0.6, "val_macro_f1": 0.55, "val_loss": 0.7}))
    history.write_text("\n".join(lines) + '\n{"step": 11, "epo')
    steps, epochs = plots.read_history(history)
    assert len(steps) == 10 and len(epochs) == 1
    assert_png(plots.plot_curves(history, tmp_path / "curves.png", best_epoch=1))


def test_confusion_matrix_handles_empty_rows_and_many_labels(tmp_path):
    labels = [f"class-{i}" for i in range(12)]
    matrix = [[(i * j) % 7 if i else 0 for j in range(12)] for i in range(12)]  # class-0 never occurs
    assert_png(plots.plot_confusion(matrix, labels, tmp_path / "cm.png", "12 classes"), min_width=1000)


def test_seed_box_plot_from_a_fewshot_summary(tmp_path):
    summary = {"accuracy": {"mean": 0.8, "std": 0.03, "per_seed": [0.76, 0.8, 0.84, 0.79, 0.81]},
               "macro_f1": {"mean": 0.79, "std": 0.03, "per_seed": [0.75, 0.79, 0.83, 0.78, 0.8]},
               "seeds": [13, 21, 42, 87, 100], "runs": ["seed-13"], "k": 16, "method": "lora", "n_test": 80}
    assert_png(plots.plot_seeds(summary, tmp_path / plots.SEEDS), min_width=300)
    with pytest.raises(ValueError, match="per_seed"):
        plots.plot_seeds({"seeds": [1], "k": 4}, tmp_path / "none.png")


def test_run_plots_without_history_draw_only_the_matrix(tmp_path):
    metrics = {"accuracy": 0.5, "macro_f1": 0.5, "n": 4, "labels": ["a", "b"], "confusion_matrix": [[1, 1], [1, 1]]}
    written = plots.write_run_plots(tmp_path, metrics)
    assert [p.name for p in written] == [plots.CONFUSION]


def test_multi_seed_run_writes_the_seed_box_plot(toy_project):
    """fewshot.train_seeds draws seeds.png next to summary.json (training itself stubbed: only plotting is tested)."""
    from types import SimpleNamespace

    from promptft_cli.config import load_config
    from promptft_cli.training import fewshot

    cfg = load_config(toy_project, ["data.few_shot={k: 4, seeds: [1, 2, 3]}"])
    scores = {1: 0.6, 2: 0.7, 3: 0.9}
    fake = lambda c, **_: SimpleNamespace(metrics={"accuracy": scores[c.train.seed], "macro_f1": scores[c.train.seed] - 0.1, "n": 20})
    summary = fewshot.train_seeds(cfg, train_one=fake)
    assert summary["accuracy"]["per_seed"] == [0.6, 0.7, 0.9]
    assert_png(cfg.run_dir / plots.SEEDS, min_width=300)
