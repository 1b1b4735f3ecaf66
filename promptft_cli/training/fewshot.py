"""The few-shot protocol (LM-BFF): one run per seed on k examples per class, reported as mean ± std.

`data.few_shot.seeds` makes `output_dir` a parent directory: `seed-<s>/` holds one complete run per
seed (its config samples k per class from train and from validation with seed s and trains with
train.seed = s), `summary.json` the mean, std and per-seed values of each metric, and `run.json`
(kind `multi-seed`) says `complete` only once every seed finished.

The held-out validation and test pools are drawn once, with the config's train.seed, into `pool/`:
every seed is tested on the same test set, so the spread reflects the sampled training examples and
the training seed, as in LM-BFF, not a different test split per seed.
"""

from __future__ import annotations

import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from promptft_cli import runs
from promptft_cli.config import Config, save_config, validate_config
from promptft_cli.data.reading import SPLITS, load_splits
from promptft_cli.errors import PromptftError
from promptft_cli.progress import status
from promptft_cli.runs import plots

POOL = "pool"
METRICS = ("accuracy", "macro_f1")
GENERATION_METRICS = ("bleu", "chrf", "rouge1", "rouge2", "rougeL", "exact_match")
"""A generation run's seeds are summarised on these (k examples in all, not per class)."""


def seed_dir(parent: Path, seed: int) -> Path:
    return parent / f"seed-{seed}"


def train_seeds(cfg: Config, *, overwrite: bool = False, resume: bool = False,
                train_one: Callable[..., Any] | None = None) -> dict[str, Any]:
    """Train one run per seed of `data.few_shot.seeds`; write and return the summary (mean ± std).

    Seeds whose run finished earlier with the same config are kept, so running it again after an
    interruption continues with the next seed; `resume` also continues the interrupted seed's run
    from its checkpoint.
    """
    if train_one is None:
        from promptft_cli.training.loop import train as train_one
    fs = cfg.data.few_shot
    if not fs or not fs.seeds:
        raise PromptftError("the few-shot protocol needs data.few_shot.seeds", field="data.few_shot.seeds")
    if len(set(fs.seeds)) != len(fs.seeds):
        raise PromptftError(f"data.few_shot.seeds repeats a seed: {fs.seeds}", field="data.few_shot.seeds")
    parent = cfg.run_dir
    runs.check_output_dir(parent, overwrite)
    _clear_parent(parent)
    labels = write_pools(cfg, parent / POOL)
    save_config(cfg, parent / runs.CONFIG)
    info = runs.RunInfo("running", labels, cfg.method.name, cfg.head, cfg.model.name,
                        kind=runs.MULTI_SEED, seeds=list(fs.seeds))
    info.save(parent)
    results: dict[int, Mapping[str, Any]] = {}
    try:
        for i, seed in enumerate(fs.seeds, start=1):
            results[seed] = _run_seed(config_for_seed(cfg, seed), f"seed {seed} ({i}/{len(fs.seeds)})",
                                      overwrite, resume, train_one)
            info = replace(info, finished=[*info.finished, seed])
            info.save(parent)
    except Exception as exc:
        replace(info, status="failed", error=f"seed {seed}: {exc}").save(parent)
        raise
    except BaseException as exc:  # Ctrl-C, SIGTERM (errors.Interrupted): the seed's run keeps its checkpoint
        replace(info, status="interrupted", error=f"seed {seed}: {exc or type(exc).__name__}").save(parent)
        raise
    summary = summarize(results, cfg, parent)
    runs.write_json_atomic(parent / runs.SUMMARY, summary)
    plots.plot_seeds(summary, parent / plots.SEEDS)
    replace(info, status="complete").save(parent)  # last: the parent counts as finished only once its summary is written
    return summary


def _run_seed(seed_cfg: Config, name: str, overwrite: bool, resume: bool, train_one: Callable[..., Any]) -> Mapping[str, Any]:
    """The test metrics of one seed's run: kept when it already finished with this config, else trained."""
    kept = _finished_metrics(seed_cfg, overwrite)
    if kept is not None:
        status(f"{name}: kept the finished run in {seed_cfg.run_dir}")
        return kept
    per = " per class" if seed_cfg.task == "classification" else " examples"
    status(f"{name}: k={seed_cfg.data.few_shot.k}{per} → {seed_cfg.run_dir}")
    if resume and any((seed_cfg.run_dir / runs.CHECKPOINTS).glob("step-*")):
        return train_one(seed_cfg, resume=True).metrics
    return train_one(seed_cfg, overwrite=overwrite).metrics


def _clear_parent(parent: Path) -> None:
    """Remove the summary, and whatever a single run left here before, so nothing stale sits beside the seeds."""
    import shutil

    for name in (runs.SUMMARY, plots.SEEDS, runs.METRICS, runs.HISTORY, runs.LOG):
        (parent / name).unlink(missing_ok=True)
    shutil.rmtree(parent / runs.CHECKPOINT, ignore_errors=True)


def write_pools(cfg: Config, pool_dir: Path) -> list[str]:
    """Clean and hold out the splits once (no few-shot sampling) and write them where every seed reads them."""
    data = load_splits(cfg.data.model_copy(update={"few_shot": None, "unlabeled": None}), cfg.path, cfg.train.seed)
    label_column = cfg.data.label_column
    for name in SPLITS:
        # Keep the user's label column name, so each seed's config reads like theirs.
        rows = [{**{c: r[c] for c in cfg.data.columns}, label_column: r["label"]} for r in data[name].rows]
        runs.write_jsonl_atomic(pool_dir / f"{name}.jsonl", rows)
    return data.labels


def config_for_seed(cfg: Config, seed: int) -> Config:
    """The parent config with one seed: sampling and training seeded by it, data read from the pools."""
    raw = cfg.dump()
    pool = (cfg.run_dir / POOL).resolve()
    raw["data"].update({name: str(pool / f"{name}.jsonl") for name in SPLITS}, encoding="utf-8",
                       few_shot={"k": cfg.data.few_shot.k, "seed": seed, "seeds": None,
                                 "unlabeled": cfg.data.few_shot.unlabeled})
    raw["train"]["seed"] = seed
    raw["output_dir"] = str(seed_dir(cfg.run_dir.resolve(), seed))
    seed_cfg = validate_config(raw)
    seed_cfg.base_dir = cfg.base_dir
    return seed_cfg


def _finished_metrics(seed_cfg: Config, overwrite: bool) -> dict[str, Any] | None:
    """Metrics of a seed's run finished earlier with this exact config and data (an interrupted parent continues)."""
    from promptft_cli.data.prepare import data_fingerprint

    run_dir = seed_cfg.run_dir
    needed = (runs.RUN_INFO, runs.METRICS, runs.CONFIG, runs.REPORT)
    if overwrite or not all((run_dir / name).is_file() for name in needed):
        return None
    if runs.RunInfo.load(run_dir).status != "complete":
        return None
    saved = yaml.safe_load((run_dir / runs.CONFIG).read_text(encoding="utf-8"))
    if saved != yaml.safe_load(yaml.safe_dump(seed_cfg.dump(), sort_keys=False, allow_unicode=True)):
        return None
    if runs.read_json(run_dir / runs.REPORT).get("fingerprint") != data_fingerprint(seed_cfg):
        return None  # the data files changed since: train this seed again
    return runs.read_json(run_dir / runs.METRICS)


def summarize(results: Mapping[int, Mapping[str, Any]], cfg: Config | None, run_dir: Path) -> dict[str, Any]:
    """Mean, std and per-seed values of each metric; std is the population std (ddof 0), as LM-BFF reports."""
    seeds = list(results)
    names = METRICS if "accuracy" in results[seeds[0]] else GENERATION_METRICS
    summary: dict[str, Any] = {name: _stats([results[s][name] for s in seeds]) for name in names}
    summary.update(seeds=seeds, runs=[seed_dir(run_dir, s).name for s in seeds], run_dir=str(run_dir),
                   n_test=results[seeds[0]]["n"])
    if cfg is not None:
        summary.update(k=cfg.data.few_shot.k, method=cfg.method.name, head=cfg.head, model=cfg.model.name)
    return summary


def _stats(values: list[float]) -> dict[str, Any]:
    return {"mean": statistics.fmean(values), "std": statistics.pstdev(values), "per_seed": values}
