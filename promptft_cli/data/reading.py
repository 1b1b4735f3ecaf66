"""Data: read CSV/TSV/JSONL, validate, clean, split and sample; write the prepared splits."""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import random
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from promptft_cli.errors import PromptftError

SPLITS = ("train", "validation", "test")
UNLABELED = "unlabeled"
"""The optional split of texts without labels, read only by self-training."""
_SPACES = re.compile(r"\s+")
csv.field_size_limit(1 << 26)
MAX_TEXT_CHARS = 100_000
# Longer texts are cut when read (and counted): no model here reads more than a few thousand tokens,
# and a runaway cell (a whole file in one quoted field) would otherwise cost minutes of tokenising.
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_LABEL_NUMBER = re.compile(r"[+-]?(0|[1-9]\d*)(\.\d*)?([eE][+-]?\d+)?")  # "01" stays a code, not 1
_LINE_END = re.compile(r"(?<=\n)|(?<=\r)(?!\n)")
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
DECODE_HINT = "set data.encoding, e.g. latin-1"


@dataclass
class Split:
    """One split: rows hold the text columns and, when labelled, `label`."""

    name: str
    rows: list[dict[str, str]]
    source: str = ""
    lines: list[int] = field(default_factory=list)
    """Source line of each row while rows are still in file order (for error messages)."""
    notes: dict[str, Any] = field(default_factory=dict)
    """What reading noticed but kept (numeric texts, cut texts), with line numbers, for the data report."""
    tokens: list[list[list[int]]] | None = None
    """Untruncated column ids of each row (`TemplateEncoder.tokenize`), when `prepare` has just computed them;
    training cuts these to max_length instead of tokenizing the split a second time."""

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
    if suffix == ".csv":
        return "csv"
    # Read as CSV, a .txt or .parquet file would load as one column of garbage or fail rows later, far from the cause.
    raise PromptftError(f"unknown data file extension '{path.suffix}'; use .csv, .tsv (.tab) or .jsonl (.ndjson, .json)",
                        file=path)


def _decoded_lines(stream, path: Path | str, encoding: str, hint: str = DECODE_HINT) -> Iterator[str]:
    """Decode line by line (any of \\n, \\r\\n, \\r), so an undecodable byte is reported with its line and byte offset."""
    is_utf8 = encoding.lower().replace("_", "-") in ("utf-8", "utf8")
    try:
        decoder = codecs.getincrementaldecoder("utf-8-sig" if is_utf8 else encoding)()
    except LookupError:
        raise PromptftError(f"unknown encoding '{encoding}'", file=path, field="data.encoding") from None
    offset, pending, lineno = 0, "", 0
    for lineno, raw in enumerate(stream, start=1):
        if lineno == 1 and is_utf8 and raw.startswith(_UTF16_BOMS):
            raise PromptftError(f"file is UTF-16 (it starts with a UTF-16 byte-order mark), not {encoding}; "
                                "save it as UTF-8 or set the encoding to utf-16", file=path, row=1)
        try:
            text = pending + decoder.decode(raw)
        except UnicodeDecodeError as exc:
            at = offset - (len(exc.object) - len(raw)) + exc.start  # the decoder may hold bytes of the last line
            raise PromptftError(f"cannot decode byte 0x{exc.object[exc.start]:02x} at byte offset {at} as {encoding} "
                                f"({hint})", file=path, row=lineno) from None
        except UnicodeError as exc:  # e.g. utf-16 without a byte-order mark
            raise PromptftError(f"cannot decode as {encoding}: {exc} ({hint})", file=path, row=lineno) from None
        offset += len(raw)
        lines = _LINE_END.split(text)
        pending = lines.pop()
        if not pending and lines and lines[-1].endswith("\r"):
            pending = lines.pop()  # a "\n" may follow in the next chunk (UTF-16 splits "\r\n" across byte lines)
        yield from lines
    try:
        pending += decoder.decode(b"", final=True)
    except UnicodeError:
        raise PromptftError(f"file ends inside a multi-byte character (byte offset {offset}); not valid {encoding} "
                            f"({hint})", file=path, row=lineno) from None
    if pending:
        yield pending


def iter_records(path: Path, encoding: str = "utf-8", hint: str = DECODE_HINT) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, record) from a CSV, TSV or JSONL file (`-`: JSONL on stdin), streaming; errors name file and line."""
    if str(path) == "-":
        yield from _jsonl(_decoded_lines(sys.stdin.buffer, "<stdin>", encoding, hint), "<stdin>")
        return
    if not path.exists():
        raise PromptftError("file not found", file=path)
    if path.is_dir():
        raise PromptftError("expected a data file, got a directory", file=path)
    try:
        stream = path.open("rb")
    except OSError as exc:
        raise PromptftError(f"cannot read file ({exc.strerror})", file=path) from None
    with stream:
        lines = _decoded_lines(stream, path, encoding, hint)
        yield from (_jsonl(lines, path) if _format(path) == "jsonl" else _delimited(lines, path))


def _jsonl(lines: Iterator[str], path: Path | str) -> Iterator[tuple[int, dict[str, Any]]]:
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PromptftError(f"malformed JSON line ({exc.msg} at column {exc.colno})", file=path, row=lineno) from None
        except (ValueError, RecursionError) as exc:  # too deeply nested, or an integer too long to convert
            raise PromptftError(f"malformed JSON line ({type(exc).__name__}: {str(exc)[:80]})", file=path, row=lineno) from None
        if not isinstance(record, dict):
            raise PromptftError("each JSONL line must be an object like {\"text\": ..., \"label\": ...}", file=path, row=lineno)
        yield lineno, record


def _delimited(lines: Iterator[str], path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    # strict: an unclosed quote is an error, not a field that silently swallows the rest of the file.
    reader = csv.reader(lines, delimiter="\t" if _format(path) == "tsv" else ",", strict=True)
    start = 0
    try:
        header = next(reader, None)
        if header is None:
            return
        header = [h.strip() for h in header]
        start = reader.line_num
        for values in reader:
            # A record starts on the line after the previous one ended (quoted fields may span lines).
            line, start = start + 1, reader.line_num
            if not any(v.strip() for v in values):
                continue
            if len(values) > len(header):
                raise PromptftError(f"{len(values)} fields but the header has {len(header)} (quote fields containing the delimiter)", file=path, row=line)
            yield line, dict(zip(header, values + [""] * (len(header) - len(values))))
    except csv.Error as exc:
        hint = "; a quote opened here is never closed" if "unexpected end of data" in str(exc) else ""
        raise PromptftError(f"malformed CSV ({exc}{hint})", file=path, row=start + 1) from None


def label_text(value: Any) -> str:
    """One spelling per label: 1, 1.0, "1" and "1.0" (JSON or CSV) are the same class, named `1`."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (dict, list)):
        raise ValueError("a label must be a string or a number, not a JSON object or list")
    if isinstance(value, (int, float)):
        return _number_text(value)
    text = "" if value is None else str(value).strip()
    return _number_text(float(text)) if _LABEL_NUMBER.fullmatch(text) else text


def _number_text(value: int | float) -> str:
    if isinstance(value, int):
        return str(value)
    return str(int(value)) if value.is_integer() else repr(value)


def clean_text(value: Any) -> str:
    return "" if value is None else _SPACES.sub(" ", str(value)).strip()


def text_value(value: Any, *, file: Path | str, row: int, field: str) -> str:
    """One text cell as clean text; a JSON number is read as its digits, an object or list is an error."""
    if isinstance(value, (dict, list)):
        kind = "object" if isinstance(value, dict) else "list"
        raise PromptftError(f"text must be a string, got a JSON {kind}", file=file, row=row, field=field)
    return clean_text(value)


@dataclass
class TextNotes:
    """What reading noticed in the text columns but kept: numeric texts, texts cut at MAX_TEXT_CHARS, empty texts."""

    numeric: list[int] = field(default_factory=list)
    cut: list[int] = field(default_factory=list)
    empty: list[int] = field(default_factory=list)
    truncated: int = 0
    """Inputs cut to model.max_length tokens (filled in by whoever tokenises)."""

    def check(self, row: dict[str, str], lineno: int) -> dict[str, str]:
        """Note what is odd about `row`, cut its over-long texts, and return it."""
        if any(_NUMBER.fullmatch(v) for v in row.values()):
            self.numeric.append(lineno)  # kept as text, but usually a shifted column
        if any(len(v) > MAX_TEXT_CHARS for v in row.values()):
            self.cut.append(lineno)
            row = {k: v[:MAX_TEXT_CHARS] for k, v in row.items()}
        if not all(row.values()):
            self.empty.append(lineno)
        return row

    def report(self) -> dict[str, Any]:
        """Counts and the first 20 line numbers of each finding, for data_report.json."""
        out: dict[str, Any] = {}
        for name, lines in (("numeric_text", self.numeric), (f"text_cut_at_{MAX_TEXT_CHARS}_chars", self.cut)):
            if lines:
                out[name], out[f"{name}_lines"] = len(lines), lines[:20]
        return out

    def summary(self) -> str:
        """One clause for a status line, e.g. '; 2 empty texts (lines 3, 9)'."""
        parts = [f"{len(lines)} {what} (line{'s' if len(lines) > 1 else ''} {', '.join(map(str, lines[:10]))}"
                 f"{', ...' if len(lines) > 10 else ''})"
                 for what, lines in (("empty texts", self.empty), ("numeric texts", self.numeric),
                                     (f"texts cut at {MAX_TEXT_CHARS} characters", self.cut)) if lines]
        if self.truncated:
            parts.append(f"{self.truncated} inputs truncated to model.max_length tokens")
        return "".join(f"; {p}" for p in parts)


class UniqueRows:
    """Exact-duplicate rows (every cleaned field equal) are dropped and counted as `dropped["duplicate"]`."""

    def __init__(self, dropped: Counter) -> None:
        self.seen: set[tuple[str, ...]] = set()
        self.dropped = dropped

    def keep(self, row: dict[str, str]) -> bool:
        key = tuple(row.values())
        if key in self.seen:
            self.dropped["duplicate"] += 1
            return False
        self.seen.add(key)
        return True


def read_split(path: Path, name: str, columns: list[str], label_column: str | None, encoding: str = "utf-8") -> tuple[Split, Counter]:
    """Read, validate and clean one file; returns the split and counts of what cleaning dropped."""
    rows, lines, dropped, empty_rows = [], [], Counter(), []
    unique = UniqueRows(dropped)
    checked, notes = False, TextNotes()
    for lineno, record in iter_records(path, encoding):
        if not checked:
            check_columns(record, columns + ([label_column] if label_column else []), path)
            checked = True
        row = notes.check({c: text_value(record.get(c), file=path, row=lineno, field=c) for c in columns}, lineno)
        if not all(row.values()):
            dropped["empty_text"] += 1
            empty_rows.append(lineno)
            continue
        if label_column:
            try:
                row["label"] = label_text(record.get(label_column))
            except ValueError as exc:
                raise PromptftError(str(exc), file=path, row=lineno, field=label_column) from None
            if not row["label"]:
                raise PromptftError("empty label", file=path, row=lineno, field=label_column)
        if unique.keep(row):
            rows.append(row)
            lines.append(lineno)
    if not checked:
        raise PromptftError("file is empty (no data rows)", file=path)
    if not rows:
        where = ", ".join(map(str, empty_rows[:10])) + (", ..." if len(empty_rows) > 10 else "")
        raise PromptftError(f"no usable rows: all {len(empty_rows)} rows have an empty {' or '.join(columns)} (lines {where})",
                            file=path, field=columns[0])
    dropped["empty_text_lines"] = empty_rows[:20]  # type: ignore[assignment]
    return Split(name, rows, str(path), lines, notes.report()), dropped


def check_columns(record: dict[str, Any], wanted: list[str], path: Path) -> None:
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
            if not resolve(value).exists():  # name the config key too: the path alone may not say which one
                raise PromptftError("file not found", file=resolve(value), field=f"data.{name}")
            splits[name], counts = read_split(resolve(value), name, columns, data_cfg.label_column, enc)
            dropped[name] = dict(counts)
    notes = {n: s.notes for n, s in splits.items() if s.notes}  # before sampling replaces the splits
    train = splits["train"]
    train.lines = []  # held-out splits reorder train rows
    if "test" not in splits:
        train.rows, held = stratified_split(train.rows, data_cfg.test_size, seed)
        splits["test"] = Split("test", held, f"{train.source} (held out)")
    if "validation" not in splits:
        train.rows, held = stratified_split(train.rows, data_cfg.validation_size, seed + 1)
        splits["validation"] = Split("validation", held, f"{train.source} (held out)")
    labels = _check_labels(splits, data_cfg.label_column)
    if data_cfg.few_shot:
        fs = data_cfg.few_shot
        full_train = splits["train"]
        splits["train"] = sample_k_per_class(full_train, fs.k, fs.seed, strict=True)
        splits["validation"] = sample_k_per_class(splits["validation"], fs.k, fs.seed, strict=False)
        if fs.unlabeled:
            splits[UNLABELED] = unlabeled_rest(full_train, splits["train"], fs.unlabeled, fs.seed)
    if data_cfg.unlabeled:
        path = resolve(data_cfg.unlabeled)
        if not path.exists():
            raise PromptftError("file not found", file=path, field="data.unlabeled")
        splits[UNLABELED], counts = read_split(path, UNLABELED, columns, None, enc)
        dropped[UNLABELED] = dict(counts)
    report = {"dropped": dropped, "notes": notes}
    return PreparedData(labels, columns, {n: splits[n] for n in (*SPLITS, UNLABELED) if n in splits}, report)


def unlabeled_rest(full: Split, sampled: Split, n: int, seed: int) -> Split:
    """Up to n rows of `full` that the few-shot sample did not take, labels dropped (PET's unlabelled set)."""
    taken = {id(r) for r in sampled.rows}
    rest = [r for r in full.rows if id(r) not in taken]
    picked = random.Random(seed + 1).sample(rest, min(n, len(rest)))
    return Split(UNLABELED, [{k: v for k, v in r.items() if k != "label"} for r in picked], f"{full.source} (labels dropped)")


def _check_labels(splits: dict[str, Split], label_column: str = "label") -> list[str]:
    labels = sorted(set(splits["train"].labels))
    if len(labels) < 2:
        found = labels[0] if labels else "none"
        raise PromptftError(f"need at least 2 classes in train, found {len(labels)} ({found})", file=splits["train"].source, field=label_column)
    known = set(labels)
    for name in ("validation", "test"):
        split = splits[name]
        for i, row in enumerate(split.rows):
            if row["label"] not in known:
                raise PromptftError(
                    f"label '{row['label']}' does not occur in train (train labels: {', '.join(labels)})",
                    file=split.source, row=split.lines[i] if split.lines else None, field=label_column)
    return labels


def fingerprint(data_cfg, resolve: Callable[[str], Path], seed: int, extra: Any = None) -> str:
    """Hash of the data settings and file contents: prepared data is stale when this changes."""
    h = hashlib.sha256(json.dumps([data_cfg.model_dump(mode="json"), seed, extra], sort_keys=True).encode())
    for name in (*SPLITS, UNLABELED):
        value = getattr(data_cfg, name)
        if value and resolve(value).is_file():
            h.update(resolve(value).read_bytes())
    return h.hexdigest()[:16]


def length_stats(lengths: list[int], truncated: int) -> dict[str, float]:
    if not lengths:
        return {"p50": 0, "p95": 0, "max": 0, "truncated": 0, "truncated_share": 0.0}
    ordered = sorted(lengths)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50": pick(0.5), "p95": pick(0.95), "max": ordered[-1], "truncated": truncated,
            "truncated_share": truncated / len(lengths)}
