"""Predict: load a finished run and score new rows, streaming large inputs in chunks."""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from promptft_cli import runs
from promptft_cli.config import Config, load_config
from promptft_cli.data import clean_text, iter_records
from promptft_cli.errors import PromptftError
from promptft_cli.templates import Template

CHUNK_ROWS = 4096
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def predict_proba(classifier, split, batch_size: int):
    """Class probabilities for every encoded example, in the split's original order."""
    import torch

    from promptft_cli.batching import collate, inference_batches

    device = next(classifier.parameters()).device
    pad_id = getattr(classifier, "pad_token_id", 0)
    out = torch.empty(len(split), classifier.num_labels)
    classifier.eval()
    with torch.inference_mode():
        for idx in inference_batches(split.lengths, batch_size):
            batch = {k: v.to(device) for k, v in collate(split, idx, pad_id).items() if k != "labels"}
            out[idx] = torch.softmax(classifier(**batch).float(), dim=-1).cpu()
    return out.numpy()


@dataclass
class Predictor:
    """Everything needed to score rows: config, labels, tokenizer, template and the trained classifier."""

    cfg: Config
    labels: list[str]
    tokenizer: Any
    template: Template
    classifier: Any

    @classmethod
    def from_run(cls, run_dir: Path, checkpoint: Path | None = None) -> "Predictor":
        from promptft_cli.models import build_classifier, load_tokenizer, load_weights
        from promptft_cli.prepare import template_for

        info = runs.require_finished(run_dir) if checkpoint is None else runs.RunInfo.load(run_dir)
        cfg = load_config(run_dir / runs.CONFIG)
        tokenizer = load_tokenizer(cfg.model, cfg.base_dir)
        classifier = build_classifier(cfg, info.labels, tokenizer)
        load_weights(classifier, checkpoint or run_dir / runs.CHECKPOINT)
        return cls(cfg, info.labels, tokenizer, template_for(cfg), classifier)

    def proba(self, rows: Sequence[Mapping[str, str]], batch_size: int | None = None):
        from promptft_cli.batching import encode_rows

        split = encode_rows(rows, self.template, self.tokenizer, self.cfg.model.max_length)
        return predict_proba(self.classifier, split, batch_size or self.cfg.train.eval_batch_size)


def read_inputs(path: str, columns: list[str], encoding: str = "utf-8") -> Iterator[tuple[dict[str, Any], dict[str, str]]]:
    """Yield (original record, cleaned model inputs); `-` reads JSONL from stdin."""
    records = _stdin_records() if path == "-" else iter_records(Path(path), encoding)
    for lineno, record in records:
        missing = [c for c in columns if c not in record]
        if missing:
            raise PromptftError(f"missing column '{missing[0]}'; columns found: {', '.join(record)}",
                                file=path if path != "-" else "<stdin>", row=lineno, field=missing[0])
        yield record, {c: clean_text(record[c]) for c in columns}


def _stdin_records() -> Iterator[tuple[int, dict[str, Any]]]:
    for lineno, line in enumerate(sys.stdin, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PromptftError(f"malformed JSON line ({exc.msg})", file="<stdin>", row=lineno) from None
        if not isinstance(record, dict):
            raise PromptftError("each JSONL line must be an object", file="<stdin>", row=lineno)
        yield lineno, record


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
    """Each input record with `prediction`, `confidence` and one `prob_<label>` per label added."""
    for chunk in chunked(inputs, CHUNK_ROWS):
        probs = predictor.proba([clean for _, clean in chunk], batch_size)
        for (record, _), p in zip(chunk, probs):
            best = int(p.argmax())
            out = dict(record)
            out.update(prediction=predictor.labels[best], confidence=round(float(p[best]), 6))
            out.update({f"prob_{label}": round(float(v), 6) for label, v in zip(predictor.labels, p)})
            yield out


def csv_safe(value: Any) -> Any:
    """Neutralise spreadsheet formulas (CSV injection): text cells starting with = + - @ get a quote."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def write_predictions(rows: Iterable[dict[str, Any]], output: Path | None) -> int:
    """Write CSV/TSV or JSONL by extension (stdout: JSONL); atomically when writing a file."""
    fmt = "jsonl" if output is None or output.suffix.lower() in (".jsonl", ".json", ".ndjson") else (
        "tsv" if output.suffix.lower() == ".tsv" else "csv")
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
                        writer = csv.DictWriter(fh, fieldnames=list(row), delimiter="\t" if fmt == "tsv" else ",", extrasaction="ignore")
                        writer.writeheader()
                    writer.writerow({k: csv_safe(v) for k, v in row.items()})
                n += 1
        tmp.replace(output)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return n
