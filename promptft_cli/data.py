"""Data: read CSV/TSV/JSONL, validate, clean, split and sample; write the prepared splits."""

from __future__ import annotations

import csv
import hashlib
import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from promptft_cli.errors import PromptftError

SPLITS = ("train", "validation", "test")
_SPACES = re.compile(r"\s+")
csv.field_size_limit(1 << 26)


@dataclass
class Split:
    """One split: rows hold the text columns and, when labelled, `label`."""

    name: str
    rows: list[dict[str, str]]
    source: str = ""
    lines: list[int] = field(default_factory=list)
    """Source line of each row while rows are still in file order (for error messages)."""

    @property
    def labels(self) -> list[str]:
        return [r["label"] for r in self.rows]


@dataclass
class PreparedData:
    labels: list[str]
    columns: list[str]
    splits: dict[str, Split]
    report: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Split:
        return self.splits[name]


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".tsv", ".tab"):
        return "tsv"
    return "csv"


def _decoded_lines(stream, path: Path, encoding: str) -> Iterator[str]:
    """Decode line by line so an undecodable byte is reported with its line and byte offset."""
    offset = 0
    enc = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    for lineno, raw in enumerate(stream, start=1):
        try:
            text = raw.decode(enc if lineno == 1 else encoding)
        except UnicodeDecodeError as exc:
            raise PromptftError(
                f"cannot decode byte 0x{raw[exc.start]:02x} at byte offset {offset + exc.start} as {encoding} "
                "(set data.encoding, e.g. latin-1)", file=path, row=lineno) from None
        except LookupError:
            raise PromptftError(f"unknown encoding '{encoding}'", file=path, field="data.encoding") from None
        offset += len(raw)
        yield text


def iter_records(path: Path, encoding: str = "utf-8") -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, record) from a CSV, TSV or JSONL file, streaming; errors name file and line."""
    if str(path) != "-" and not path.exists():
        raise PromptftError("file not found", file=path)
    if path.is_dir():
        raise PromptftError("expected a data file, got a directory", file=path)
    with path.open("rb") as stream:
        lines = _decoded_lines(stream, path, encoding)
        yield from (_jsonl(lines, path) if _format(path) == "jsonl" else _delimited(lines, path))


def _jsonl(lines: Iterator[str], path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PromptftError(f"malformed JSON line ({exc.msg} at column {exc.colno})", file=path, row=lineno) from None
        if not isinstance(record, dict):
            raise PromptftError("each JSONL line must be an object like {\"text\": ..., \"label\": ...}", file=path, row=lineno)
        yield lineno, record


def _delimited(lines: Iterator[str], path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.reader(lines, delimiter="\t" if _format(path) == "tsv" else ",")
    try:
        header = next(reader, None)
        if header is None:
            return
        header = [h.strip() for h in header]
        start = reader.line_num
        for values in reader:
            if not any(v.strip() for v in values):
                continue
            if len(values) > len(header):
                raise PromptftError(f"{len(values)} fields but the header has {len(header)} (quote fields containing the delimiter)", file=path, row=start + 1)
            yield start + 1, dict(zip(header, values + [""] * (len(header) - len(values))))
            start = reader.line_num
    except csv.Error as exc:
        raise PromptftError(f"malformed CSV ({exc})", file=path, row=reader.line_num) from None


def label_text(value: Any) -> str:
    """One spelling per label: JSON 1, 1.0 and "1" are the same class."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None else str(value).strip()


def clean_text(value: Any) -> str:
    return "" if value is None else _SPACES.sub(" ", str(value)).strip()


def read_split(path: Path, name: str, columns: list[str], label_column: str | None, encoding: str = "utf-8") -> tuple[Split, Counter]:
    """Read, validate and clean one file; returns the split and counts of what cleaning dropped."""
    rows, lines, seen, dropped, empty_rows = [], [], set(), Counter(), []
    checked = False
    for lineno, record in iter_records(path, encoding):
        if not checked:
            _check_columns(record, columns + ([label_column] if label_column else []), path)
            checked = True
        row = {c: clean_text(record.get(c)) for c in columns}
        if not all(row.values()):
            dropped["empty_text"] += 1
            empty_rows.append(lineno)
            continue
        if label_column:
            row["label"] = label_text(record.get(label_column))
            if not row["label"]:
                raise PromptftError("empty label", file=path, row=lineno, field=label_column)
        key = tuple(row.values())
        if key in seen:
            dropped["duplicate"] += 1
            continue
        seen.add(key)
        rows.append(row)
        lines.append(lineno)
    if not checked:
        raise PromptftError("file is empty (no data rows)", file=path)
    dropped["empty_text_lines"] = empty_rows[:20]  # type: ignore[assignment]
    return Split(name, rows, str(path), lines), dropped


def _check_columns(record: dict[str, Any], wanted: list[str], path: Path) -> None:
    missing = [c for c in wanted if c not in record]
    if missing:
        raise PromptftError(
            f"missing column '{missing[0]}'; columns found: {', '.join(map(str, record)) or '(none)'}",
            file=path, row=1, field=missing[0])


def stratified_split(rows: list[dict[str, str]], share: float, seed: int) -> tuple[list, list]:
    """Hold out `share` of rows per class (at least one each where the class allows it), seeded."""
    rng = random.Random(seed)
    by_label: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_label.setdefault(r["label"], []).append(i)
    held: set[int] = set()
    for label in sorted(by_label):
        idx = by_label[label][:]
        rng.shuffle(idx)
        n = min(len(idx) - 1, max(1, round(len(idx) * share)))
        held.update(idx[:n])
    keep = [r for i, r in enumerate(rows) if i not in held]
    out = [r for i, r in enumerate(rows) if i in held]
    return keep, out


def sample_k_per_class(split: Split, k: int, seed: int, *, strict: bool) -> Split:
    """k examples per label, seeded; `strict` makes a too-small class an error (else it is taken whole)."""
    rng = random.Random(seed)
    counts = Counter(split.labels)
    chosen: list[dict[str, str]] = []
    for label in sorted(counts):
        if counts[label] < k and strict:
            raise PromptftError(
                f"few_shot.k={k} but class '{label}' has only {counts[label]} examples in {split.name}",
                file=split.source or None, field="data.few_shot.k")
        pool = [r for r in split.rows if r["label"] == label]
        chosen += rng.sample(pool, min(k, len(pool)))
    rng.shuffle(chosen)
    return Split(split.name, chosen, split.source)


def load_splits(data_cfg, resolve: Callable[[str], Path], seed: int) -> PreparedData:
    """Read the configured files, hold out missing splits, check labels, apply few-shot sampling."""
    columns, enc = data_cfg.columns, data_cfg.encoding
    dropped: dict[str, dict[str, int]] = {}
    files = {name: getattr(data_cfg, name) for name in SPLITS}
    splits: dict[str, Split] = {}
    for name, value in files.items():
        if value:
            splits[name], counts = read_split(resolve(value), name, columns, data_cfg.label_column, enc)
            dropped[name] = dict(counts)
    train = splits["train"]
    train.lines = []  # held-out splits reorder train rows
    if "test" not in splits:
        train.rows, held = stratified_split(train.rows, data_cfg.test_size, seed)
        splits["test"] = Split("test", held, f"{train.source} (held out)")
    if "validation" not in splits:
        train.rows, held = stratified_split(train.rows, data_cfg.validation_size, seed + 1)
        splits["validation"] = Split("validation", held, f"{train.source} (held out)")
    labels = _check_labels(splits)
    if data_cfg.few_shot:
        fs = data_cfg.few_shot
        splits["train"] = sample_k_per_class(splits["train"], fs.k, fs.seed, strict=True)
        splits["validation"] = sample_k_per_class(splits["validation"], fs.k, fs.seed, strict=False)
    report = {"dropped": dropped}
    return PreparedData(labels, columns, {n: splits[n] for n in SPLITS}, report)


def _check_labels(splits: dict[str, Split]) -> list[str]:
    labels = sorted(set(splits["train"].labels))
    if len(labels) < 2:
        found = labels[0] if labels else "none"
        raise PromptftError(f"need at least 2 classes in train, found {len(labels)} ({found})", file=splits["train"].source, field="label")
    known = set(labels)
    for name in ("validation", "test"):
        split = splits[name]
        for i, row in enumerate(split.rows):
            if row["label"] not in known:
                raise PromptftError(
                    f"label '{row['label']}' does not occur in train (train labels: {', '.join(labels)})",
                    file=split.source, row=split.lines[i] if split.lines else None, field="label")
    return labels


def fingerprint(data_cfg, resolve: Callable[[str], Path], seed: int, extra: Any = None) -> str:
    """Hash of the data settings and file contents: prepared data is stale when this changes."""
    h = hashlib.sha256(json.dumps([data_cfg.model_dump(mode="json"), seed, extra], sort_keys=True).encode())
    for name in SPLITS:
        value = getattr(data_cfg, name)
        if value and resolve(value).is_file():
            h.update(resolve(value).read_bytes())
    return h.hexdigest()[:16]


def length_stats(lengths: list[int], truncated: int) -> dict[str, float]:
    if not lengths:
        return {"p50": 0, "p95": 0, "max": 0, "truncated_share": 0.0}
    ordered = sorted(lengths)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50": pick(0.5), "p95": pick(0.95), "max": ordered[-1], "truncated_share": truncated / len(lengths)}
