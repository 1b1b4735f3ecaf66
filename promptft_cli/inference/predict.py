"""Predict: load a finished run and score new rows, streaming large inputs in chunks."""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Sequence

from promptft_cli import runs
from promptft_cli.config import Config, load_config
from promptft_cli.data.reading import TextNotes, iter_records, text_value
from promptft_cli.errors import PromptftError
from promptft_cli.prompting.templates import Template
from promptft_cli.tasks.base import Encoder, Task, get_task
from promptft_cli.tasks.classification import encoder_for, inference_device

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedTokenizerBase

    from promptft_cli.prompting.demonstrations import Demonstrations

CHUNK_ROWS = 4096


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class Predictor:
    """Everything needed to score rows: config, task, labels, tokenizer, template and the trained model."""

    cfg: Config
    labels: list[str]
    tokenizer: "PreTrainedTokenizerBase"
    template: Template
    model: "nn.Module"
    truncated: int = 0
    """Inputs cut to model.max_length tokens so far."""
    demonstrations: "Demonstrations | None" = None
    """LM-BFF demonstrations drawn from the run's training split (see demonstrations.py), when configured."""
    zero_shot: bool = False
    """Scores come from the pretrained model through template and verbalizer alone (no trained run)."""
    demonstration_rows: list[dict[str, str]] | None = None
    """Generation: the training rows that in-context demonstrations are drawn from, when configured."""
    task: Task = field(init=False)
    encode: Encoder = field(init=False, repr=False)
    """rows -> encoded split, as in training (template, demonstrations, label indices when `labelled`)."""

    def __post_init__(self) -> None:
        self.task = get_task(self.cfg.task)
        if self.cfg.task == "generation":
            from promptft_cli.tasks.generation import encoder_for as generation_encoder

            self.encode = generation_encoder(self.cfg, self.tokenizer, self.model.kind, self.demonstration_rows)
        else:
            self.encode = encoder_for(self.cfg, self.tokenizer, self.labels, self.demonstrations)

    @classmethod
    def from_run(cls, run_dir: Path, checkpoint: Path | None = None, overrides: list[str] | None = None) -> "Predictor":
        """Load a finished run; `checkpoint` (a checkpoints/step-N or weights folder) also works on an unfinished one.

        Of `overrides`, only decoding settings (`generate.*`) apply: the rest of a trained run is fixed.
        """
        from promptft_cli.modeling.embedding import demonstrations_for
        from promptft_cli.modeling.loading import load_tokenizer
        from promptft_cli.modeling.weights import load_weights
        from promptft_cli.prompting.demonstrations import run_training_rows
        from promptft_cli.prompting.templates import template_for
        from promptft_cli.training.checkpoints import weights_for

        if checkpoint is None:
            weights, labels = run_dir / runs.CHECKPOINT, runs.require_finished(run_dir).labels
        else:
            weights, labels = weights_for(run_dir, checkpoint)
        cfg = load_config(run_dir / runs.CONFIG, [o for o in overrides or [] if o.startswith("generate.")])
        tokenizer = load_tokenizer(cfg.model, cfg.base_dir)
        model = get_task(cfg.task).build_model(cfg, tokenizer, labels, report=False)
        load_weights(model, weights)
        if not (cfg.model.device_map or cfg.model.load_in_8bit or cfg.model.load_in_4bit):  # those placed it already
            model.to(inference_device())
        rows = run_training_rows(run_dir) if cfg.prompt.demonstrations is not None else None
        if cfg.task == "generation":
            return cls(cfg, labels, tokenizer, template_for(cfg), model, demonstration_rows=rows)
        demos = None
        if cfg.prompt.demonstrations is not None:  # drawn from the training split the run saved, as in training
            demos = demonstrations_for(cfg, rows, labels, tokenizer)
        return cls(cfg, labels, tokenizer, template_for(cfg), model, demonstrations=demos)

    @classmethod
    def from_config(cls, cfg: Config, labels: Sequence[str] | None = None) -> "Predictor":
        """Zero-shot: the pretrained model scores rows through the template and verbalizer, nothing trained.

        `labels` default to the verbalizer's, in its order; evaluation passes the data's so they are checked.
        """
        from promptft_cli.data.prepare import prepare
        from promptft_cli.modeling.embedding import demonstrations_for
        from promptft_cli.modeling.loading import load_tokenizer
        from promptft_cli.prompting.templates import template_for

        if cfg.task == "generation":
            return cls._zero_shot_generation(cfg)
        if cfg.prompt.resolved_head != "verbalizer":
            raise PromptftError("zero-shot scoring needs a verbalizer (label → words) and head 'verbalizer'; "
                                "set prompt.verbalizer, or train the config first", field="prompt.verbalizer")
        labels = [str(label) for label in (labels or cfg.prompt.verbalizer)]
        tokenizer = load_tokenizer(cfg.model, cfg.base_dir)
        model = get_task(cfg.task).build_model(cfg, tokenizer, labels)
        if not (cfg.model.device_map or cfg.model.load_in_8bit or cfg.model.load_in_4bit):
            model.to(inference_device())
        demos = None
        if cfg.prompt.demonstrations is not None:  # drawn from the prepared training split, as in training
            demos = demonstrations_for(cfg, prepare(cfg, tokenizer)["train"].rows, labels, tokenizer)
        return cls(cfg, labels, tokenizer, template_for(cfg), model, demonstrations=demos, zero_shot=True)

    @classmethod
    def _zero_shot_generation(cls, cfg: Config) -> "Predictor":
        """The untouched model prompted with the template (an instruction), plus demonstrations when configured."""
        from promptft_cli.data.prepare import prepare
        from promptft_cli.modeling.loading import load_tokenizer
        from promptft_cli.prompting.templates import template_for

        tokenizer = load_tokenizer(cfg.model, cfg.base_dir)
        # `full` changes nothing at build time: the configured method's fresh virtual tokens or prefixes would.
        untouched = cfg.model_copy(update={"method": type(cfg.method).model_validate({"name": "full"})})
        model = get_task(cfg.task).build_model(untouched, tokenizer, [])
        if not (cfg.model.device_map or cfg.model.load_in_8bit or cfg.model.load_in_4bit):
            model.to(inference_device())
        rows = prepare(cfg, tokenizer)["train"].rows if cfg.prompt.demonstrations is not None else None
        return cls(cfg, [], tokenizer, template_for(cfg), model, zero_shot=True, demonstration_rows=rows)

    @classmethod
    def for_target(cls, target: Path, checkpoint: Path | None = None,
                   overrides: list[str] | None = None) -> "Predictor":
        """A run directory → its trained model; a config → its run, or zero-shot when output_dir holds none."""
        if not target.exists():
            raise PromptftError("no run directory or config file here", file=target)
        if target.is_dir():
            return cls.from_run(target, checkpoint, overrides)
        cfg = load_config(target, overrides)
        # Any run.json means a run exists: an unfinished one is an error to report, not a reason for zero-shot.
        if checkpoint is not None or (cfg.run_dir / runs.RUN_INFO).exists():
            return cls.from_run(cfg.run_dir, checkpoint, overrides)
        from promptft_cli.progress import status

        how = "the untrained model prompted with the template" if cfg.task == "generation" else "template + verbalizer"
        status(f"no finished run in {cfg.run_dir}: zero-shot ({how}, no training)")
        return cls.from_config(cfg)

    def infer(self, split, batch_size: int | None = None):
        """The task's outputs (classification: label probabilities) for an encoded split."""
        self.truncated += split.truncated
        return self.task.infer(self.model, split, batch_size or self.cfg.train.eval_batch_size)

    def proba(self, rows: Sequence[Mapping[str, str]], batch_size: int | None = None):
        """Label probabilities, one row per input row, columns in `labels` order."""
        return self.infer(self.encode(rows, labelled=False), batch_size)


InputStats = TextNotes  # what predict noticed in its input: empty, numeric and cut texts, with line numbers


def read_inputs(path: str, columns: list[str], encoding: str = "utf-8",
                stats: TextNotes | None = None) -> Iterator[tuple[dict[str, Any], dict[str, str]]]:
    """Yield (original record, cleaned model inputs) lazily, one row at a time; `-` reads JSONL from stdin."""
    stats = stats if stats is not None else TextNotes()
    source = "<stdin>" if path == "-" else path
    for lineno, record in iter_records(Path(path), encoding, hint="pass --encoding, e.g. --encoding latin-1"):
        missing = [c for c in columns if c not in record]
        if missing:
            raise PromptftError(f"missing column '{missing[0]}'; columns found: {', '.join(map(str, record))}",
                                file=source, row=lineno, field=missing[0])
        # Empty texts are still predicted (the output keeps one row per input) but reported by line.
        yield record, stats.check({c: text_value(record[c], file=source, row=lineno, field=c) for c in columns}, lineno)


def chunked(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def predictions(predictor: Predictor, inputs: Iterable[tuple[dict, dict]], batch_size: int | None = None) -> Iterator[dict[str, Any]]:
    """Each input record with the task's columns added (classification: `prediction`, `confidence`, `prob_<label>`)."""
    for chunk in chunked(inputs, CHUNK_ROWS):
        outputs = predictor.proba([clean for _, clean in chunk], batch_size)
        for (record, _), added in zip(chunk, predictor.task.prediction_columns(outputs, predictor.labels)):
            # An input column with an output's name (say, re-scoring an earlier predictions file) is kept
            # as input_<name>, not overwritten: predict never loses what it was given.
            yield {**{(f"input_{k}" if k in added else k): v for k, v in record.items()}, **added}


def csv_safe(value: Any) -> Any:
    """Neutralise spreadsheet formulas (CSV injection): text cells starting with = + - @ get a quote."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def output_format(output: Path | None) -> str:
    """csv, tsv or jsonl from `-o`'s extension (none: JSONL on stdout); any other extension is an error."""
    if output is None:
        return "jsonl"
    formats = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".tsv": "tsv", ".tab": "tsv", ".csv": "csv"}
    if output.suffix.lower() not in formats:
        raise PromptftError(f"unknown output extension '{output.suffix}'; use .csv, .tsv or .jsonl", file=output,
                            field="--output")
    return formats[output.suffix.lower()]


def write_predictions(rows: Iterable[dict[str, Any]], output: Path | None) -> int:
    """Write CSV/TSV or JSONL by extension (stdout: JSONL); atomically when writing a file."""
    fmt = output_format(output)
    if output is None:
        n = 0
        for row in rows:
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
        return n
    tmp = output.with_name(f".{output.name}.tmp")
    output.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    try:
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            writer = None
            for row in rows:
                if fmt == "jsonl":
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                else:
                    if writer is None:
                        writer = csv.writer(fh, delimiter="\t" if fmt == "tsv" else ",")
                        fields = list(row)
                        writer.writerow([csv_safe(k) for k in fields])  # input column names are user data too
                    writer.writerow([csv_safe(row.get(k, "")) for k in fields])
                n += 1
        tmp.replace(output)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return n
