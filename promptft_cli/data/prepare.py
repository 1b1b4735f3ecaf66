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
from promptft_cli.prompting.encoding import TemplateEncoder
from promptft_cli.prompting.templates import Template, label_words, template_for

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
        if cfg.data.label_examples:
            add_label_examples(data, cfg.prompt.verbalizer)
    if cfg.task == "generation":
        report = _generation_report(cfg, data, template, tokenizer)
    else:
        encoder = TemplateEncoder(template, tokenizer)
        for split in data.splits.values():
            split.tokens = encoder.tokenize(track(split.rows, f"tokenizing {split.name}"))  # training reuses them
        report = _report(data, encoder, cfg.model.max_length)
    data.report.update(report, fingerprint=digest)
    (run_dir / runs.DATA / f"{UNLABELED}.jsonl").unlink(missing_ok=True)
    for name in data.splits:
        runs.write_jsonl_atomic(run_dir / runs.DATA / f"{name}.jsonl", data[name].rows)
    runs.write_json_atomic(run_dir / runs.REPORT, data.report)
    return data


def add_label_examples(data: PreparedData, verbalizer) -> None:
    """data.label_examples: each label description becomes a train row of its label, after any few-shot sample.

    A description is labelled text the user already wrote; in the train split it also moves the label's
    vector towards it. The data report counts the rows added.
    """
    words = label_words(verbalizer, data.labels)
    added = [{data.columns[0]: word, "label": label} for label, phrases in words.items() for word in phrases]
    data["train"].rows = data["train"].rows + added
    data.report["label_examples"] = len(added)


def _report(data: PreparedData, encoder: TemplateEncoder, max_length: int) -> dict[str, Any]:
    splits = {}
    for name in data.splits:
        split = data[name]
        # Untruncated lengths, so the report shows how much truncation at max_length cuts.
        lengths = [encoder.length(columns) for columns in split.tokens]
        over = sum(n > max_length for n in lengths)
        splits[name] = {"rows": len(split.rows), "labels": dict(sorted(Counter(r["label"] for r in split.rows if "label" in r).items())),
                        "tokens": length_stats(lengths, over), "source": split.source}
    return {"labels": data.labels, "columns": data.columns, "template": encoder.template.source,
            "max_length": max_length, "splits": splits}


def _generation_report(cfg: Config, data: PreparedData, template: Template, tokenizer) -> dict[str, Any]:
    """Prompt and target token lengths per split, and the share of each cut at model.max_length / max_target_length."""
    from promptft_cli.modeling.generator import generator_kind
    from promptft_cli.prompting.generation import TARGET, check_template, target_length, target_prefix

    check_template(template)
    encoder = TemplateEncoder(template, tokenizer)
    kind = generator_kind(cfg.model, cfg.base_dir)
    prefix = target_prefix(template, kind, cfg.prompt.chat)
    limit, target_limit = cfg.model.max_length, cfg.model.max_target_length
    splits = {}
    for name in data.splits:
        rows = data[name].rows
        lengths = [encoder.length(columns) for columns in encoder.tokenize(track(rows, f"tokenizing {name}"))]
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
