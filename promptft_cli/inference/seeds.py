"""Evaluating a multi-seed (few-shot protocol) run: every seed's run scored, aggregated as mean ± std."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from promptft_cli import runs
from promptft_cli.config import load_config
from promptft_cli.errors import PromptftError
from promptft_cli.training.fewshot import seed_dir, summarize


def multi_seed_dir(target: Path, overrides: list[str] | None = None) -> Path | None:
    """The multi-seed parent that `target` (a run directory or a config) points at, if it is one."""
    run_dir = target if target.is_dir() else load_config(target, overrides).run_dir
    return run_dir if runs.is_multi_seed(run_dir) else None


def evaluate_seeds(parent: Path, data: Path | None = None, batch_size: int | None = None) -> dict[str, Any]:
    """Evaluate every seed's run (on its test split or on `data`) and aggregate as mean ± std."""
    from promptft_cli.inference.evaluate import evaluate_target

    info = runs.RunInfo.load(parent)
    if info.status != "complete":
        missing = [s for s in info.seeds if s not in info.finished]
        raise PromptftError(f"multi-seed run is {info.status} (seeds not finished: {', '.join(map(str, missing)) or 'none'}); "
                            "run `promptft train CONFIG` again to finish it", file=parent)
    results = {seed: evaluate_target(seed_dir(parent, seed), data, None, batch_size)[0] for seed in info.seeds}
    saved = runs.read_json(parent / runs.SUMMARY) if (parent / runs.SUMMARY).exists() else {}
    summary = summarize(results, None, parent)
    summary.update({k: saved[k] for k in ("k", "method", "head", "model") if k in saved})
    return summary
