"""Prepare: turn the configured raw files into clean, split, sampled JSONL in the run directory."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptft_cli import runs
from promptft_cli.config import Config
from promptft_cli.data.reading import (
    SPLITS,
    UNLABELED,
    PreparedData,
    Split,
    fingerprint,
    length_stats,
    load_splits,
)
from promptft_cli.progress import track
from promptft_cli.prompting.templates import Template, encode, template_for

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def data_fingerprint(cfg: Config) -> str:
    extra = [cfg.model.name, cfg.model.max_length, cfg.prompt.template]
    if cfg.task == "generation":  # classification fingerprints stay as they were
        extra += [cfg.task, cfg.model.max_target_length, cfg.prompt.chat]
    return fingerprint(cfg.data, cfg.path, cfg.train.seed, extra=extra)


def prepare(cfg: Config, tokenizer: "PreTrainedTokenizerBase", *, force: bool = False) -> PreparedData:
    """Read, clean, split, sample and measure (token lengths with `tokenizer`); reuse the prepared files when
    inputs are unchanged."""
    run_dir = cfg.run_dir
    digest = data_fingerprint(cfg)
    if not force:
        cached = load_prepared(run_dir)
        if cached is not None and cached.report.get("fingerprint") == digest:
            return cached
    template = template_for(cfg)
    if cfg.task == "generation":
        from promptft_cli.data.generation import load_generation_splits

        data = load_generation_splits(cfg.data, cfg.path, cfg.train.seed)
    else:
        data = load_splits(cfg.data, cfg.path, cfg.train.seed)
    report = _generation_report(cfg, data, template, tokenizer) if cfg.task == "generation" else \
        _report(data, template, tokenizer, cfg.model.max_length)
    data.report.update(report, fingerprint=digest)
    (run_dir / runs.DATA / f"{UNLABELED}.jsonl").unlink(missing_ok=True)
    for name in data.splits:
        runs.write_jsonl_atomic(run_dir / runs.DATA / f"{name}.jsonl", data[name].rows)
    runs.write_json_atomic(run_dir / runs.REPORT, data.report)
    return data


def _report(data: PreparedData, template: Template, tokenizer, max_length: int) -> dict[str, Any]:
    splits = {}
    for name in data.splits:
        rows = data[name].rows
        # Measure untruncated lengths so the report shows how much truncation at max_length cuts.
        lengths = [len(encode(template, r, tokenizer, 100_000).input_ids) for r in track(rows, f"tokenizing {name}")]
        over = sum(n > max_length for n in lengths)
        splits[name] = {"rows": len(rows), "labels": dict(sorted(Counter(r["label"] for r in rows if "label" in r).items())),
                        "tokens": length_stats(lengths, over), "source": data[name].source}
    return {"labels": data.labels, "columns": data.columns, "template": template.source,
            "max_length": max_length, "splits": splits}


def _generation_report(cfg: Config, data: PreparedData, template: Template, tokenizer) -> dict[str, Any]:
    """Prompt and target token lengths per split, and the share of each cut at model.max_length / max_target_length."""
    from promptft_cli.modeling.generator import generator_kind
    from promptft_cli.prompting.generation import TARGET, check_template, target_length, target_prefix

    check_template(template)
    kind = generator_kind(cfg.model, cfg.base_dir)
    prefix = target_prefix(template, kind, cfg.prompt.chat)
    limit, target_limit = cfg.model.max_length, cfg.model.max_target_length
    splits = {}
    for name in data.splits:
        rows = data[name].rows
        lengths = [len(encode(template, r, tokenizer, 100_000).input_ids) for r in track(rows, f"tokenizing {name}")]
        targets = [target_length(r[TARGET], tokenizer, prefix) for r in rows]
        splits[name] = {"rows": len(rows), "tokens": length_stats(lengths, sum(n > limit for n in lengths)),
                        "target_tokens": length_stats(targets, sum(n > target_limit for n in targets)),
                        "source": data[name].source}
    return {"labels": [], "columns": data.columns, "target_column": cfg.data.target_column, "kind": kind, "template": template.source,
            "max_length": limit, "max_target_length": target_limit, "splits": splits}


def load_prepared(run_dir: Path) -> PreparedData | None:
    """The prepared data of a run directory, or None when any part is missing."""
    report_path = run_dir / runs.REPORT
    files = [run_dir / runs.DATA / f"{n}.jsonl" for n in SPLITS]
    if not report_path.exists() or not all(f.exists() for f in files):
        return None
    report = runs.read_json(report_path)
    pool = run_dir / runs.DATA / f"{UNLABELED}.jsonl"
    splits = {}
    for name, f in [*zip(SPLITS, files), *([(UNLABELED, pool)] if pool.exists() else [])]:
        rows = [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
        splits[name] = Split(name, rows, str(f))
    return PreparedData(report["labels"], report["columns"], splits, report)
