"""LM-BFF demonstrations: filled training examples of each label added to every input.

Each input gets `per_class` examples of every label from the training set, each rendered with the
same template and its label's word at the mask (`{text} It was great.`), in label order. Masked LMs
and encoders read them after the input (`[CLS] input [SEP] demo [SEP] demo [SEP]`, as in LM-BFF);
causal LMs read them before it, since they score the label as the continuation of the input.

- `random` draws the demonstrations with a seed and the row's own text, so a row gets the same ones
  in training, evaluation and prediction, wherever it sits in its split;
- `similar` takes the training examples nearest to the input by the cosine of the pretrained
  backbone's pooled embeddings (LM-BFF uses SBERT, which is what the embedded MiniLM is).

A row is never its own demonstration (training rows are compared by their text). The input always
gets its full share of `model.max_length`; demonstrations fill what is left, cut longest first, and
are dropped from the end when even their template would not fit.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from promptft_cli.errors import PromptftError
from promptft_cli.prompting.templates import (
    Mask,
    Soft,
    Template,
    Text,
    _special_tokens_around,
    encode,
    fit_lengths,
    render_demonstration,
)

if TYPE_CHECKING:
    import numpy as np

    from promptft_cli.config import Config
    from promptft_cli.prompting.encoding import EncodedSplit

Embedder = Callable[[list[str]], "np.ndarray"]
_UNLIMITED = 1_000_000


def from_config(cfg: "Config", train_rows: Sequence[Mapping[str, str]], labels: Sequence[str], *,
                causal: bool, embed: Embedder | None) -> "Demonstrations | None":
    """The configured demonstrations drawn from `train_rows`, or None when `prompt.demonstrations` is not set.

    `causal`: the model reads them before the input; `embed` (texts -> unit vectors) is what `select: similar`
    compares by. The modeling layer supplies both (see modeling/embedding.py): this module loads no model.
    """
    settings = cfg.prompt.demonstrations
    if settings is None:
        return None
    if settings.select == "similar" and embed is None:
        raise PromptftError("demonstrations select 'similar' needs an embedder", field="prompt.demonstrations.select")
    return Demonstrations([dict(r) for r in train_rows], list(labels), cfg.data.columns, label_words(cfg, labels),
                          settings.per_class, settings.select, cfg.train.seed, causal,
                          embed if settings.select == "similar" else None)


def run_training_rows(run_dir: Path) -> list[dict[str, Any]]:
    """The training split a run saved, where its demonstrations come from (drawn again as in training)."""
    from promptft_cli import runs

    path = run_dir / runs.DATA / "train.jsonl"
    if not path.is_file():
        raise PromptftError("the run's training split, where its demonstrations come from, is missing", file=path)
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def label_words(cfg: "Config", labels: Sequence[str]) -> dict[str, str]:
    """The word each label's demonstrations show: its first verbalizer word, else the label itself."""
    verbalizer = {str(k): v for k, v in (cfg.prompt.verbalizer or {}).items()}
    words = {}
    for label in labels:
        if verbalizer and label not in verbalizer:
            raise PromptftError(f"no words for label '{label}', which its demonstrations need", field="prompt.verbalizer")
        value = verbalizer.get(label, label)
        words[label] = value if isinstance(value, str) else value[0]
    return words


def demonstration_template(template: Template) -> Template:
    """The template with a mask at its end when it has none (a causal LM continues there)."""
    if template.has_mask:
        return template
    return Template(template.source + " {mask}", (*template.parts, Text(" "), Mask()))


def _filled(template: Template, word: str) -> Template:
    """The demonstration template of one label: the word at the mask, soft prompts dropped, texts merged."""
    parts: list[Any] = []
    for part in demonstration_template(template).parts:
        part = Text(word) if isinstance(part, Mask) else part
        if isinstance(part, Soft):
            continue
        if isinstance(part, Text) and parts and isinstance(parts[-1], Text):
            parts[-1] = Text(parts[-1].text + part.text)
        else:
            parts.append(part)
    return replace(template, parts=tuple(parts))


@dataclass
class Demonstrations:
    """The training rows that serve as demonstrations, and how each input's are chosen and encoded."""

    pool: list[dict[str, str]]
    labels: list[str]
    columns: list[str]
    words: dict[str, str]
    per_class: int = 1
    select: str = "random"
    seed: int = 42
    before: bool = False
    """Put the demonstrations before the input (causal LMs) instead of after it."""
    embed: Embedder | None = None
    """Texts → L2-normalised vectors; needed by `similar`."""
    _pool_vectors: Any = field(default=None, repr=False)
    _bodies: dict[Template, dict[int, list[int]]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._keys = [self.key(r) for r in self.pool]
        self._by_label = {label: [i for i, r in enumerate(self.pool) if r["label"] == label] for label in self.labels}
        if self.select == "similar" and self.embed is None:
            raise ValueError("select='similar' needs an embed function")

    def key(self, row: Mapping[str, str]) -> tuple[str, ...]:
        return tuple(row[c] for c in self.columns)

    def choose(self, rows: Sequence[Mapping[str, str]]) -> list[list[int]]:
        """Per row, the pool indices of its demonstrations, in label order; never the row itself."""
        if self.select == "similar":
            return self._nearest(rows)
        return [self._sample(row) for row in rows]

    def texts(self, row: Mapping[str, str], template: Template) -> list[str]:
        """The row's demonstrations as text, for logs and for reading what the model sees."""
        return [render_demonstration(demonstration_template(template), self.pool[j], self.words[self.pool[j]["label"]])
                for j in self.choose([row])[0]]

    def _sample(self, row: Mapping[str, str]) -> list[int]:
        key = self.key(row)
        # Seeded by the row's text, not its position, so the same row always gets the same demonstrations.
        rng = random.Random(f"{self.seed}\x1f{json.dumps(key)}")
        chosen: list[int] = []
        for label in self.labels:
            candidates = self._by_label[label]
            # One extra, in case the row itself is drawn (rows are unique within a split).
            drawn = rng.sample(candidates, min(self.per_class + 1, len(candidates)))
            chosen += [j for j in drawn if self._keys[j] != key][: self.per_class]
        return chosen

    def _nearest(self, rows: Sequence[Mapping[str, str]]) -> list[list[int]]:
        import numpy as np

        if self._pool_vectors is None:
            self._pool_vectors = self.embed([self._text(r) for r in self.pool])
        queries = self.embed([self._text(r) for r in rows])
        chosen = []
        for row, query in zip(rows, queries):
            key, sims, picks = self.key(row), self._pool_vectors @ query, []
            for label in self.labels:
                idx = np.asarray(self._by_label[label], dtype=int)
                if not len(idx):
                    continue
                top = idx[np.lexsort((idx, -sims[idx]))][: self.per_class + 1]  # most similar first, ties by index
                picks += [int(j) for j in top if self._keys[j] != key][: self.per_class]
            chosen.append(picks)
        return chosen

    def _text(self, row: Mapping[str, str]) -> str:
        return " ".join(row[c] for c in self.columns)

    def encode_rows(self, rows: Sequence[Mapping[str, str]], template: Template, tokenizer, max_length: int,
                    label_index: Mapping[str, int] | None = None) -> "EncodedSplit":
        """Like `batching.encode_rows`, with each row's demonstrations in the room the input leaves."""
        from promptft_cli.prompting.encoding import EncodedSplit, encode_rows

        plain = encode_rows(rows, template, tokenizer, max_length, label_index)
        enc = _Encoder(template, tokenizer, self)
        input_ids, masks, softs = [], [], []
        for i, picks in enumerate(self.choose(rows)):
            ids = plain.input_ids[i]
            bodies = enc.fit(picks, max_length - len(ids))
            mask, soft = plain.mask_positions[i], plain.soft_positions[i]
            if self.before:
                # [BOS] demo sep demo sep input: the model continues right after the input, as without them.
                block = [t for body in bodies for t in body + enc.sep]
                ids = ids[: len(enc.front)] + block + ids[len(enc.front):]
                mask = None if mask is None else mask + len(block)
                soft = [p + len(block) for p in soft]
            else:
                # input [SEP] demo [SEP] demo [SEP]; tokenizers without specials get a newline between.
                lead = [] if enc.back else enc.sep
                ids = ids + [t for body in bodies for t in lead + body + enc.back]
            input_ids.append(ids)
            masks.append(mask)
            softs.append(soft)
        return EncodedSplit(input_ids, masks, softs, plain.labels, plain.truncated)


class _Encoder:
    """Token ids of demonstrations under one template and tokenizer; full-length ones are cached."""

    def __init__(self, template: Template, tokenizer, demos: Demonstrations) -> None:
        self.tokenizer, self.demos = tokenizer, demos
        self.front, self.back = _special_tokens_around(tokenizer)
        self.sep = self.back or tokenizer("\n", add_special_tokens=False)["input_ids"]
        self.templates = {label: _filled(template, word) for label, word in demos.words.items()}
        empty = {c: "" for c in demos.columns}
        # Tokens of a demonstration besides its text; a share below this + 1 would show no example at all.
        self.fixed = {label: len(self._encode(t, empty, _UNLIMITED)) for label, t in self.templates.items()}
        self.has_text = any(t.columns for t in self.templates.values())
        cache = demos._bodies.setdefault(template, {})  # type: ignore[arg-type]
        self.full: dict[int, list[int]] = cache

    def fit(self, picks: list[int], budget: int) -> list[list[int]]:
        """The demonstrations that fit `budget`, each cut (its text only) to a fair share of it."""
        picks = list(picks)
        while picks:
            lengths = [len(self.body(j)) + len(self.sep) for j in picks]
            shares = fit_lengths(lengths, budget)  # cut longest first, as the input's columns are
            bodies = [self.body(j) if share >= n else self.cut(j, share - len(self.sep))
                      for j, n, share in zip(picks, lengths, shares)]
            if all(b is not None for b in bodies):
                return bodies  # type: ignore[return-value]
            picks.pop()  # a share too small to show an example: fewer demonstrations, larger shares
        return []

    def body(self, j: int) -> list[int]:
        if j not in self.full:
            row = self.demos.pool[j]
            self.full[j] = self._encode(self.templates[row["label"]], row, _UNLIMITED)
        return self.full[j]

    def cut(self, j: int, room: int) -> list[int] | None:
        row = self.demos.pool[j]
        if room < self.fixed[row["label"]] + self.has_text:
            return None
        return self._encode(self.templates[row["label"]], row, room)

    def _encode(self, template: Template, row: Mapping[str, str], room: int) -> list[int]:
        ids = encode(template, row, self.tokenizer, room + len(self.front) + len(self.back)).input_ids
        return ids[len(self.front): len(ids) - len(self.back)]
