"""Runs on disk as rows: `promptft runs DIR` lists them, `promptft compare RUN RUN...` sets them side by side.

Everything is read from what a run leaves behind (run.json, metrics.json, config.yaml, history.jsonl,
summary.json of a multi-seed run); nothing is loaded into a model.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml

from promptft_cli import runs
from promptft_cli.errors import PromptftError

_SKIP = {runs.DATA, runs.CHECKPOINT, "checkpoints", "tensorboard", "__pycache__"}


@dataclass
class RunRow:
    """One run as the table shows it; `--json` prints these fields."""

    name: str
    path: str
    status: str
    task: str | None = None
    model: str | None = None
    method: str | None = None
    head: str | None = None
    shots: str | None = None
    """`k=16 x 5 seeds`, `k=16` or null for full data."""
    best_metric: str | None = None
    """The validation metric that picked the best checkpoint (train.early_stopping.metric)."""
    best_validation: float | None = None
    best_epoch: int | None = None
    test_accuracy: float | None = None
    test_macro_f1: float | None = None
    test_accuracy_std: float | None = None
    """Spread over seeds (multi-seed runs only)."""
    test_macro_f1_std: float | None = None
    test_scores: dict[str, float] = field(default_factory=dict)
    """Generation runs: test BLEU, chrF++, ROUGE-L and exact match (means over seeds for a multi-seed run)."""
    train_seconds: float | None = None
    trainable_parameters: int | None = None
    checkpoint_bytes: int | None = None
    config: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("config")
        return data


GENERATION_SCORES = ("bleu", "chrf", "rougeL", "exact_match")


def checkpoint_bytes(run_dir: Path) -> int | None:
    """Size of the best checkpoint on disk (what sharing the run costs), or None when there is none."""
    ckpt = run_dir / runs.CHECKPOINT
    if not ckpt.is_dir():
        return None
    return sum(f.stat().st_size for f in ckpt.rglob("*") if f.is_file())


def human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def find_runs(root: Path) -> list[Path]:
    """Every run directory (config.yaml, run.json or summary.json) under `root`, `root` included, sorted."""
    if not root.exists():
        raise PromptftError("folder not found", file=root)
    if not root.is_dir():
        raise PromptftError("expected a folder of runs", file=root)
    return sorted(_walk(root))


def _walk(folder: Path) -> Iterator[Path]:
    if _is_run(folder):
        yield folder
    try:
        children = sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in _SKIP and not p.name.startswith("."))
    except PermissionError:
        return
    for child in children:
        yield from _walk(child)


def _is_run(folder: Path) -> bool:
    return any((folder / name).is_file() for name in (runs.RUN_INFO, runs.SUMMARY)) or \
        ((folder / runs.CONFIG).is_file() and (folder / runs.REPORT).is_file())


def list_runs(root: Path) -> list[RunRow]:
    return [load_row(path, root) for path in find_runs(root)]


def load_row(run_dir: Path, root: Path | None = None) -> RunRow:
    """Read one run directory into a row; missing files leave their columns empty rather than failing."""
    if not run_dir.is_dir():
        raise PromptftError("run directory not found", file=run_dir)
    name = _name(run_dir, root)
    cfg = _read_config(run_dir)
    row = RunRow(name=name, path=str(run_dir), status=_status(run_dir), config=cfg)
    if cfg:
        few = (cfg.get("data") or {}).get("few_shot") or {}
        seeds = few.get("seeds")
        row.task, row.model = cfg.get("task"), (cfg.get("model") or {}).get("name")
        row.method, row.head = (cfg.get("method") or {}).get("name"), _head(cfg)
        row.shots = (f"k={few['k']} x {len(seeds)} seeds" if seeds else f"k={few['k']}") if few.get("k") else None
        row.best_metric = ((cfg.get("train") or {}).get("early_stopping") or {}).get("metric", "accuracy")
    _fill_info(row, run_dir)
    _fill_metrics(row, run_dir)
    _fill_summary(row, run_dir)
    row.best_validation, best_epoch = _best_validation(run_dir / runs.HISTORY, row.best_metric or "accuracy", row.best_epoch)
    row.best_epoch = row.best_epoch or best_epoch
    row.checkpoint_bytes = checkpoint_bytes(run_dir)
    return row


def _name(run_dir: Path, root: Path | None) -> str:
    if root is not None:
        try:
            rel = run_dir.resolve().relative_to(root.resolve())
            return str(rel) if str(rel) != "." else run_dir.resolve().name
        except ValueError:
            pass
    return str(run_dir)


def _read_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / runs.CONFIG
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _head(cfg: dict[str, Any]) -> str | None:
    prompt = cfg.get("prompt") or {}
    return prompt.get("head") or ("verbalizer" if prompt.get("verbalizer") else "linear")


def _status(run_dir: Path) -> str:
    if (run_dir / runs.SUMMARY).is_file() and not (run_dir / runs.RUN_INFO).is_file():
        return "complete"
    if (run_dir / runs.RUN_INFO).is_file():
        try:
            return str(runs.read_json(run_dir / runs.RUN_INFO).get("status", "unknown"))
        except PromptftError:
            return "unreadable"
    if (run_dir / runs.HISTORY).is_file():
        return "unfinished"
    return "prepared"


def _fill_info(row: RunRow, run_dir: Path) -> None:
    if not (run_dir / runs.RUN_INFO).is_file():
        return
    try:
        info = runs.RunInfo.load(run_dir)
    except (PromptftError, TypeError):
        return
    row.method, row.head, row.model = info.method or row.method, info.head or row.head, row.model or info.model
    row.best_epoch, row.train_seconds, row.trainable_parameters = info.best_epoch, info.train_seconds, info.trainable_parameters


def _fill_metrics(row: RunRow, run_dir: Path) -> None:
    if not (run_dir / runs.METRICS).is_file():
        return
    try:
        m = runs.read_json(run_dir / runs.METRICS)
    except PromptftError:
        return
    row.test_accuracy, row.test_macro_f1 = m.get("accuracy"), m.get("macro_f1")
    row.test_scores = {k: m[k] for k in GENERATION_SCORES if isinstance(m.get(k), (int, float))}


def _fill_summary(row: RunRow, run_dir: Path) -> None:
    """A multi-seed parent: mean ± std over seeds, summed time, the seeds' shared settings."""
    if not (run_dir / runs.SUMMARY).is_file():
        return
    try:
        summary = runs.read_json(run_dir / runs.SUMMARY)
    except PromptftError:
        return
    for metric, attr in (("accuracy", "test_accuracy"), ("macro_f1", "test_macro_f1")):
        value = summary.get(metric)
        if isinstance(value, dict):
            setattr(row, attr, value.get("mean"))
            setattr(row, f"{attr}_std", value.get("std"))
    row.test_scores = {k: summary[k]["mean"] for k in GENERATION_SCORES if isinstance(summary.get(k), dict)}
    seeds = [p for p in sorted(run_dir.iterdir()) if p.is_dir() and (p / runs.RUN_INFO).is_file()]
    infos = [_read_json_or_empty(p / runs.RUN_INFO) for p in seeds]
    if infos:
        first = infos[0]
        row.method, row.head, row.model = row.method or first.get("method"), row.head or first.get("head"), row.model or first.get("model")
        row.train_seconds = sum(i.get("train_seconds") or 0 for i in infos)
        row.trainable_parameters = first.get("trainable_parameters")
        if not row.config:
            row.config = _read_config(seeds[0])
            row.task = row.config.get("task")
        if not row.shots and ((row.config.get("data") or {}).get("few_shot") or {}).get("k"):
            row.shots = f"k={row.config['data']['few_shot']['k']} x {len(infos)} seeds"


def _read_json_or_empty(path: Path) -> dict[str, Any]:
    try:
        data = runs.read_json(path)
    except PromptftError:
        return {}
    return data if isinstance(data, dict) else {}


def _best_validation(history: Path, metric: str, best_epoch: int | None) -> tuple[float | None, int | None]:
    """The validation `metric` at the best epoch (or the best over epochs when run.json is missing)."""
    if not history.is_file():
        return None, None
    values: dict[int, float] = {}
    for line in history.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if f"val_{metric}" in record:
            values[record["epoch"]] = record[f"val_{metric}"]
    if not values:
        return None, None
    if best_epoch in values:
        return values[best_epoch], best_epoch
    pick = min if metric == "loss" else max
    epoch = pick(values, key=values.__getitem__)
    return values[epoch], epoch


# --- compare ---


@dataclass
class Comparison:
    """Runs side by side: their rows, and the config keys whose values differ (or all keys)."""

    rows: list[RunRow]
    differences: dict[str, list[Any]]
    same: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"runs": [r.to_json() for r in self.rows], "differences": self.differences, "same": self.same}


def compare_runs(paths: list[Path]) -> Comparison:
    if len(paths) < 2:
        raise PromptftError("compare needs at least two run directories")
    rows = []
    for path in paths:
        if not path.is_dir() or not _is_run(path):
            raise PromptftError("not a run directory (no run.json, config.yaml or summary.json)", file=path)
        rows.append(load_row(path))
    flat = [_with_defaults(r.config) for r in rows]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    differences, same = {}, {}
    for key in keys:
        if key == "output_dir":  # always differs, and the column header already names the run
            continue
        values = [f.get(key) for f in flat]
        if all(v == values[0] for v in values):
            same[key] = values[0]
        else:
            differences[key] = values
    return Comparison(rows, differences, same)


def _with_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """Flat config keys, with the current defaults for keys an older run's file lacks (so they are no difference)."""
    from promptft_cli.config import validate_config

    written = flatten(config)
    try:
        defaults = flatten(validate_config(config).dump())
    except PromptftError:  # written by another version: compare what the file says
        return written
    return {**{k: v for k, v in defaults.items() if k not in written}, **written}


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value and key != "verbalizer":
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out

