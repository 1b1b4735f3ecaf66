"""Generation data: input columns + a target column (+ optional ` ||| `-joined references), split and sampled.

Rows hold the input columns by name, `target` and, where the file has the references column,
`references`. Empty targets are dropped and counted (not an error: published sets have a few); splits
missing from the config are held out at random (there are no classes to stratify by), and the
few-shot protocol samples k examples in all, not per class.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from promptft_cli.data.reading import (
    SPLITS,
    PreparedData,
    Split,
    TextNotes,
    UniqueRows,
    check_columns,
    iter_records,
    text_value,
)
from promptft_cli.errors import PromptftError
from promptft_cli.prompting.generation import REFERENCES, TARGET


def read_generation_split(path: Path, name: str, columns: list[str], target_column: str, references_column: str,
                          encoding: str = "utf-8") -> tuple[Split, Counter]:
    """Read, validate and clean one file of (inputs, target) rows; returns the split and what cleaning dropped."""
    rows, lines, dropped = [], [], Counter()
    unique = UniqueRows(dropped)
    empty_targets: list[int] = []
    checked, has_references, notes = False, False, TextNotes()
    for lineno, record in iter_records(path, encoding):
        if not checked:
            check_columns(record, columns + [target_column], path)
            checked, has_references = True, references_column in record
        row = notes.check({c: text_value(record.get(c), file=path, row=lineno, field=c) for c in columns}, lineno)
        if not all(row.values()):
            dropped["empty_text"] += 1
            continue
        row[TARGET] = text_value(record.get(target_column), file=path, row=lineno, field=target_column)
        if not row[TARGET]:
            dropped["empty_target"] += 1
            empty_targets.append(lineno)
            continue
        if has_references:
            row[REFERENCES] = text_value(record.get(references_column), file=path, row=lineno, field=references_column)
        if unique.keep(row):
            rows.append(row)
            lines.append(lineno)
    if not checked:
        raise PromptftError("file is empty (no data rows)", file=path)
    if not rows:
        raise PromptftError(f"no usable rows: every row has an empty input or {target_column}", file=path,
                            field=target_column)
    if empty_targets:
        dropped["empty_target_lines"] = empty_targets[:20]  # type: ignore[assignment]
    return Split(name, rows, str(path), lines, notes.report()), dropped


def random_split(rows: list[dict[str, str]], share: float, seed: int) -> tuple[list, list]:
    """Hold out `share` of the rows (at least one, never all), seeded."""
    if len(rows) < 2:
        raise PromptftError(f"need at least 2 rows to hold out a split, found {len(rows)}", field="data.train")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n = min(len(rows) - 1, max(1, round(len(rows) * share)))
    held = set(order[:n])
    return [r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held]


def sample_k(split: Split, k: int, seed: int, *, strict: bool) -> Split:
    """k examples of the split, seeded; `strict` makes a split smaller than k an error (else it is taken whole)."""
    if len(split.rows) < k and strict:
        raise PromptftError(f"few_shot.k={k} but {split.name} has only {len(split.rows)} examples",
                            file=split.source or None, field="data.few_shot.k")
    rng = random.Random(seed)
    return Split(split.name, rng.sample(split.rows, min(k, len(split.rows))), split.source)


def load_generation_splits(data_cfg, resolve: Callable[[str], Path], seed: int) -> PreparedData:
    """Read the configured files, hold out missing splits, apply few-shot sampling."""
    splits: dict[str, Split] = {}
    dropped: dict[str, Any] = {}
    for name in SPLITS:
        value = getattr(data_cfg, name)
        if value:
            if not resolve(value).exists():
                raise PromptftError("file not found", file=resolve(value), field=f"data.{name}")
            splits[name], counts = read_generation_split(resolve(value), name, data_cfg.columns, data_cfg.target_column,
                                                         data_cfg.references_column, data_cfg.encoding)
            dropped[name] = dict(counts)
    notes = {n: s.notes for n, s in splits.items() if s.notes}
    train = splits["train"]
    train.lines = []
    if "test" not in splits:
        train.rows, held = random_split(train.rows, data_cfg.test_size, seed)
        splits["test"] = Split("test", held, f"{train.source} (held out)")
    if "validation" not in splits:
        train.rows, held = random_split(train.rows, data_cfg.validation_size, seed + 1)
        splits["validation"] = Split("validation", held, f"{train.source} (held out)")
    if data_cfg.few_shot:
        fs = data_cfg.few_shot
        splits["train"] = sample_k(splits["train"], fs.k, fs.seed, strict=True)
        splits["validation"] = sample_k(splits["validation"], fs.k, fs.seed, strict=False)
    return PreparedData([], data_cfg.columns, {n: splits[n] for n in SPLITS}, {"dropped": dropped, "notes": notes})


def dropped_summary(report: dict[str, Any]) -> str:
    """'; 3 empty targets dropped' for the prepare status line ('' when none)."""
    n = sum(counts.get("empty_target", 0) for counts in report.get("dropped", {}).values())
    return f"; {n} empty target{'s' if n != 1 else ''} dropped" if n else ""
