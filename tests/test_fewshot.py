"""The few-shot protocol: one complete run per seed, summary.json (mean ± std), parent status, evaluate."""

from __future__ import annotations

import json
import statistics

import pytest
from typer.testing import CliRunner

from promptft_cli import runs
from promptft_cli.cli.commands import app
from promptft_cli.config import load_config
from promptft_cli.errors import GateFailed, Interrupted, PromptftError
from promptft_cli.inference import seeds
from promptft_cli.training import fewshot

SEEDS = [13, 21]
FEW_SHOT = ["data.few_shot={k: 4, seeds: [13, 21]}", "train.epochs=1"]


@pytest.fixture
def seeds_project(toy_project, tiny_encoder):
    """The toy project without a test file, so the test split is held out (and must be the same for every seed)."""
    from factories import write_config

    return write_config(toy_project.parent, tiny_encoder, data={"train": "train.csv"})


def read(path):
    return json.loads(path.read_text())


def test_one_complete_run_per_seed_and_a_summary(seeds_project):
    """Through the CLI: `train` on a config with seeds runs each seed, `evaluate` aggregates them."""
    runner = CliRunner()
    result = runner.invoke(app, ["train", str(seeds_project), "--quiet", "--json", *sum((["--set", s] for s in FEW_SHOT), [])])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    cfg = load_config(seeds_project, FEW_SHOT)
    parent = cfg.run_dir
    per_seed = {s: read(parent / f"seed-{s}" / runs.METRICS) for s in SEEDS}
    for seed in SEEDS:
        run_dir = parent / f"seed-{seed}"
        assert read(run_dir / runs.RUN_INFO)["status"] == "complete"
        seed_cfg = load_config(run_dir / runs.CONFIG)
        assert seed_cfg.train.seed == seed and seed_cfg.data.few_shot.seed == seed and seed_cfg.data.few_shot.seeds is None
        rows = [json.loads(line) for line in (run_dir / "data" / "train.jsonl").read_text().splitlines()]
        assert len(rows) == 8 and sorted(r["label"] for r in rows) == ["negative"] * 4 + ["positive"] * 4
        assert len((run_dir / "data" / "validation.jsonl").read_text().splitlines()) <= 8
    assert (parent / "seed-13" / "data" / "test.jsonl").read_text() == (parent / "seed-21" / "data" / "test.jsonl").read_text()
    assert (parent / "seed-13" / "data" / "train.jsonl").read_text() != (parent / "seed-21" / "data" / "train.jsonl").read_text()

    assert read(parent / runs.SUMMARY) == summary
    assert summary["seeds"] == SEEDS and summary["runs"] == ["seed-13", "seed-21"] and summary["k"] == 4
    for metric in ("accuracy", "macro_f1"):
        values = [per_seed[s][metric] for s in SEEDS]
        assert summary[metric]["per_seed"] == values
        assert summary[metric]["mean"] == pytest.approx(sum(values) / 2)
        assert summary[metric]["std"] == pytest.approx(statistics.pstdev(values))
    info = read(parent / runs.RUN_INFO)
    assert info["kind"] == "multi-seed" and info["status"] == "complete" and info["finished"] == SEEDS

    # evaluate aggregates the seeds again (same test split: same figures); predict needs one seed's run.
    result = runner.invoke(app, ["evaluate", str(parent), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "mean ± std" in result.stdout and "seed-13" not in result.stdout and "21" in result.stdout
    again = seeds.evaluate_seeds(parent)
    assert again["accuracy"] == summary["accuracy"] and again["macro_f1"] == summary["macro_f1"]
    result = runner.invoke(app, ["evaluate", str(seeds_project), "--quiet", "--min-accuracy", "1.01", *sum((["--set", s] for s in FEW_SHOT), [])])
    assert isinstance(result.exception, GateFailed)
    with pytest.raises(PromptftError, match="one run per seed"):
        runs.require_finished(parent)
    with pytest.raises(PromptftError, match="finished run"):
        fewshot.train_seeds(cfg)


def test_parent_is_complete_only_when_every_seed_finished_and_a_rerun_continues(seeds_project):
    from promptft_cli.training.loop import train

    cfg = load_config(seeds_project, FEW_SHOT)
    calls = []

    def failing_second(seed_cfg, **kw):
        calls.append(seed_cfg.train.seed)
        if seed_cfg.train.seed == 21:
            raise PromptftError("disk full")
        return train(seed_cfg, **kw)

    with pytest.raises(PromptftError, match="disk full"):
        fewshot.train_seeds(cfg, train_one=failing_second)
    info = read(cfg.run_dir / runs.RUN_INFO)
    assert info["status"] == "failed" and info["finished"] == [13] and "disk full" in info["error"]
    assert not (cfg.run_dir / runs.SUMMARY).exists()
    with pytest.raises(PromptftError, match="not finished: 21"):
        seeds.evaluate_seeds(cfg.run_dir)

    calls.clear()
    summary = fewshot.train_seeds(cfg, train_one=lambda c, **kw: calls.append(c.train.seed) or train(c, **kw))
    assert calls == [21]  # seed 13 finished with the same config and is kept
    assert read(cfg.run_dir / runs.RUN_INFO)["status"] == "complete" and len(summary["accuracy"]["per_seed"]) == 2


def test_seed_config_and_summary_arithmetic(seeds_project, tmp_path):
    cfg = load_config(seeds_project, ["data.few_shot={k: 4, seeds: [1, 2, 3]}"])
    seed_cfg = fewshot.config_for_seed(cfg, 2)
    assert seed_cfg.run_dir == (cfg.run_dir / "seed-2").resolve()
    assert seed_cfg.data.train.endswith("pool/train.jsonl") and seed_cfg.data.label_column == cfg.data.label_column
    results = {s: {"accuracy": a, "macro_f1": f, "n": 10} for s, a, f in [(1, 0.5, 0.4), (2, 0.7, 0.6), (3, 0.9, 0.8)]}
    summary = fewshot.summarize(results, cfg, tmp_path)
    assert summary["accuracy"] == {"mean": pytest.approx(0.7), "std": pytest.approx(0.163299, abs=1e-6), "per_seed": [0.5, 0.7, 0.9]}
    assert summary["seeds"] == [1, 2, 3] and summary["n_test"] == 10
    with pytest.raises(PromptftError, match="repeats"):
        fewshot.train_seeds(load_config(seeds_project, ["data.few_shot={k: 4, seeds: [1, 1]}"]))


def test_an_interrupted_seed_marks_the_parent_interrupted(seeds_project):
    cfg = load_config(seeds_project, FEW_SHOT)

    def stopped(seed_cfg, **kw):
        raise Interrupted("stopped by SIGTERM at step 3")

    with pytest.raises(Interrupted):
        fewshot.train_seeds(cfg, train_one=stopped)
    info = read(cfg.run_dir / runs.RUN_INFO)
    assert info["status"] == "interrupted" and "SIGTERM" in info["error"] and info["finished"] == []
