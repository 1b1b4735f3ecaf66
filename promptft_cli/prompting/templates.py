"""Prompt templates ("{text} It was {mask}.") and verbalizers (label -> label words), after PET and LM-BFF."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from promptft_cli.errors import PromptftError

if TYPE_CHECKING:
    from promptft_cli.config import Config

TEMPLATE_FIELD = "prompt.template"
VERBALIZER_FIELD = "prompt.verbalizer"
# Escaped braces, {soft:"words"} (its words may hold braces), other placeholders, plain text, stray braces.
_LEXEME = re.compile(r'\{\{|\}\}|\{soft:"[^"]*"\}|\{[^{}]*\}|[^{}]+|[{}]')
_COLUMN_NAME = re.compile(r"[^\W\d]\w*\Z")  # a letter or _, then letters, digits, _
_COUNT = re.compile(r"[0-9]+\Z")
_PROBE = "hello"


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Column:
    name: str


@dataclass(frozen=True)
class Mask:
    pass


@dataclass(frozen=True)
class Soft:
    """`n` trainable vectors; with `init_text`, n is 0 until `resolve_soft` counts the words' tokens."""

    n: int
    init_text: str | None = None


Part = Text | Column | Mask | Soft


@dataclass(frozen=True)
class Template:
    """A parsed prompt template; `source` is exactly what the user wrote."""

    source: str
    parts: tuple[Part, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.name for p in self.parts if isinstance(p, Column)))

    @property
    def has_mask(self) -> bool:
        return any(isinstance(p, Mask) for p in self.parts)

    @property
    def n_soft(self) -> int:
        softs = [p for p in self.parts if isinstance(p, Soft)]
        if any(p.n == 0 for p in softs):
            # A silent 0 here would build a soft prompt of the wrong size.
            raise ValueError('{soft:"words"} is sized by a tokenizer: call resolve_soft(template, tokenizer) first')
        return sum(p.n for p in softs)


def parse_template(source: str) -> Template:
    """Parse template syntax; errors name the character offset of the mistake."""
    if not source.strip():
        raise PromptftError("template is empty; write e.g. '{text} It was {mask}.'", field=TEMPLATE_FIELD)
    parts: list[Part] = []
    mask_at: int | None = None
    for match in _LEXEME.finditer(source):
        lexeme, offset = match.group(), match.start()
        if lexeme == "}":
            raise _syntax_error("unmatched '}'", offset, "write '}}' for a literal brace")
        if lexeme == "{":
            raise _syntax_error("unclosed '{'", offset, "write '{{' for a literal brace")
        if lexeme in ("{{", "}}") or lexeme[0] != "{":
            text = lexeme[0] if lexeme in ("{{", "}}") else lexeme
            if parts and isinstance(parts[-1], Text):
                parts[-1] = Text(parts[-1].text + text)
            else:
                parts.append(Text(text))
            continue
        part = _placeholder(lexeme[1:-1], offset)
        if isinstance(part, Mask):
            if mask_at is not None:
                raise _syntax_error("second {mask}", offset, f"the first is at character {mask_at}; use one")
            mask_at = offset
        parts.append(part)
    return Template(source, tuple(parts))


def template_for(cfg: "Config") -> Template:
    """The configured template, or one that just joins the text columns."""
    source = cfg.prompt.template or " ".join("{%s}" % c for c in cfg.data.columns)
    template = parse_template(source)
    unknown = [c for c in template.columns if c not in cfg.data.columns]
    if unknown:
        raise PromptftError(
            f"template uses column '{unknown[0]}' but the data columns are {cfg.data.columns} "
            "(set data.text_columns)", field="prompt.template")
    return template


def _syntax_error(what: str, offset: int, hint: str | None = None) -> PromptftError:
    return PromptftError(f"{what} at character {offset}" + (f"; {hint}" if hint else ""), field=TEMPLATE_FIELD)


def _placeholder(body: str, offset: int) -> Part:
    name, colon, arg = body.partition(":")
    name, arg, shown = name.strip(), arg.strip(), "{" + body + "}"
    if not name:
        raise _syntax_error(f"empty placeholder {shown}", offset, "name a column like {text}, or write {{}} for braces")
    if name == "soft":
        return _soft(arg, bool(colon), shown, offset)
    if colon:
        raise _syntax_error(f"unexpected argument in {shown}", offset, "only {soft:...} takes one")
    if name == "mask":
        return Mask()
    if not _COLUMN_NAME.match(name):
        raise _syntax_error(f"bad column name {shown}", offset, "column names use letters, digits and _")
    return Column(name)


def _soft(arg: str, has_arg: bool, shown: str, offset: int) -> Soft:
    if not has_arg:
        return Soft(1)
    if len(arg) >= 2 and arg[0] == arg[-1] == '"':
        if not arg[1:-1].strip():
            raise _syntax_error(f"{shown} has no words to initialise from", offset)
        return Soft(0, arg[1:-1])
    if _COUNT.match(arg) and int(arg) >= 1:
        return Soft(int(arg))
    raise _syntax_error(f"bad soft prompt {shown}", offset, 'write {soft:5} for 5 vectors (N >= 1) or {soft:"It was"}')


def resolve_soft(template: Template, tokenizer) -> Template:
    """Size each {soft:"words"} part as one vector per token of its words under this tokenizer."""
    parts = tuple(
        replace(p, n=len(_init_ids(p.init_text, tokenizer))) if isinstance(p, Soft) and p.init_text else p
        for p in template.parts
    )
    return replace(template, parts=parts)


def soft_init_ids(template: Template, tokenizer) -> list[int | None]:
    """Per soft vector, the vocabulary id whose embedding initialises it (None: random init)."""
    ids: list[int | None] = []
    for part in template.parts:
        if isinstance(part, Soft):
            ids.extend(_init_ids(part.init_text, tokenizer) if part.init_text else [None] * part.n)
    return ids


def _init_ids(words: str, tokenizer) -> list[int]:
    ids = tokenizer(words, add_special_tokens=False)["input_ids"]
    if not ids:
        raise PromptftError(f'{{soft:"{words}"}} becomes no tokens with this tokenizer', field=TEMPLATE_FIELD)
    return ids


def _column_value(row: Mapping[str, str], name: str) -> str:
    if name not in row:
        available = ", ".join(row)
        raise PromptftError(f"prompt.template uses column '{name}' but the row has only: {available}", field=name)
    value = row[name]
    if not isinstance(value, str):
        raise PromptftError(f"column '{name}' holds {type(value).__name__}, not text", field=name)
    return value


def fill_text(template: Template, row: Mapping[str, str], mask_token: str = "[MASK]", soft_token: str = "") -> str:
    """The template as plain text, for logs, the model card and sentence-embedding heads."""
    pieces = []
    for part in template.parts:
        if isinstance(part, Text):
            pieces.append(part.text)
        elif isinstance(part, Column):
            pieces.append(_column_value(row, part.name))
        elif isinstance(part, Mask):
            pieces.append(mask_token)
        else:
            pieces.append(soft_token * max(part.n, 1))
    return "".join(pieces)


def render_demonstration(template: Template, row: Mapping[str, str], label_word: str) -> str:
    """One LM-BFF demonstration: the template filled with `row`, `label_word` at the mask, soft parts dropped."""
    return fill_text(template, row, mask_token=label_word, soft_token="").strip()


@dataclass
class Encoded:
    """One row's ids; soft_positions hold placeholder ids whose embeddings the model replaces."""

    input_ids: list[int]
    mask_position: int | None  # index in input_ids of the mask token
    soft_positions: list[int]  # indices in input_ids of the soft-prompt vectors, in order
    truncated: bool  # some column text was cut to fit max_length


def encode(
    template: Template, row: Mapping[str, str], tokenizer, max_length: int, *, soft_token_id: int | None = None
) -> Encoded:
    """Token ids for one row, with the tokenizer's specials, columns cut longest-first to fit max_length."""
    template = resolve_soft(template, tokenizer)
    if template.has_mask and tokenizer.mask_token_id is None:
        raise PromptftError(
            "the model's tokenizer has no mask token; remove {mask} or use a masked LM (BERT, RoBERTa)",
            field=TEMPLATE_FIELD,
        )
    # The placeholder id never reaches the model (its embedding is swapped), any valid id will do.
    soft_id = next((i for i in (soft_token_id, tokenizer.unk_token_id, tokenizer.pad_token_id) if i is not None), 0)
    pieces = _tokenize_parts(template, row, tokenizer, soft_id)
    front, back = _special_tokens_around(tokenizer)
    fixed = len(front) + len(back) + sum(len(ids) for part, ids in pieces if not isinstance(part, Column))
    if fixed > max_length:
        raise PromptftError(
            f"template needs {fixed} tokens but model.max_length is {max_length}; shorten the template or raise it",
            field=TEMPLATE_FIELD,
        )
    columns = [i for i, (part, _) in enumerate(pieces) if isinstance(part, Column)]
    lengths = [len(pieces[i][1]) for i in columns]
    kept = fit_lengths(lengths, max_length - fixed)
    for i, keep in zip(columns, kept):
        pieces[i] = (pieces[i][0], pieces[i][1][:keep])
    input_ids, mask_position, soft_positions = list(front), None, []
    for part, ids in pieces:
        if isinstance(part, Mask):
            mask_position = len(input_ids)
        elif isinstance(part, Soft):
            soft_positions.extend(range(len(input_ids), len(input_ids) + len(ids)))
        input_ids.extend(ids)
    input_ids.extend(back)
    return Encoded(input_ids, mask_position, soft_positions, truncated=kept != lengths)


def _piece_texts(template: Template, row: Mapping[str, str]) -> list[str | None]:
    """The string each Text/Column part is tokenized from (None for Mask/Soft).

    Byte-level BPE (GPT-2, RoBERTa) glues a space to the word after it ("Ġgreat"), so a Text's
    trailing whitespace belongs to what follows: a non-empty Column gets it as a leading space, while
    a mask, a soft prompt, an empty column or the end of the template drops it (the label word
    brings its own space: build the verbalizer with leading_space=True). The first part loses its
    leading whitespace. WordPiece and SentencePiece ignore these spaces, so the rule is harmless there.
    """
    parts = template.parts
    texts: list[str | None] = [
        p.text if isinstance(p, Text) else _column_value(row, p.name) if isinstance(p, Column) else None
        for p in parts
    ]
    for i, part in enumerate(parts):
        if isinstance(part, Text):
            body = texts[i].rstrip()
            if i + 1 < len(parts) and isinstance(parts[i + 1], Column) and texts[i + 1]:
                texts[i + 1] = texts[i][len(body) :] + texts[i + 1]
            texts[i] = body
    if texts and texts[0] is not None:
        texts[0] = texts[0].lstrip()
    return texts


def _tokenize_parts(template: Template, row: Mapping[str, str], tokenizer, soft_id: int) -> list[tuple[Part, list]]:
    pieces = []
    for part, text in zip(template.parts, _piece_texts(template, row)):
        if isinstance(part, Mask):
            ids = [tokenizer.mask_token_id]
        elif isinstance(part, Soft):
            ids = [soft_id] * part.n
        elif not text:
            ids = []
        else:
            # A "[MASK]" or "<|endoftext|>" inside the data must stay text, not become a special token.
            from_data = isinstance(part, Column)
            ids = tokenizer(text, add_special_tokens=False, split_special_tokens=from_data)["input_ids"]
        pieces.append((part, list(ids)))
    return pieces


def _special_tokens_around(tokenizer) -> tuple[list[int], list[int]]:
    """Ids the tokenizer puts before and after one sequence ([CLS] ... [SEP] for BERT, none for GPT-2)."""
    # transformers 5 fast tokenizers lost build_inputs_with_special_tokens (and 4.x's generic one
    # ignores the post-processor), so compare a probe encoded with and without specials instead.
    bare = tokenizer(_PROBE, add_special_tokens=False)["input_ids"]
    full = tokenizer(_PROBE, add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return list(full[:start]), list(full[start + len(bare) :])
    raise PromptftError("cannot tell which special tokens this tokenizer adds around a text", field="model.name")


def fit_lengths(lengths: list[int], budget: int) -> list[int]:
    """Token counts fitting `budget`, cut from the longest first (like "longest_first"): a template's columns,
    or the demonstrations added to an input. The spare tokens of the common cap go to the first ones still cut."""
    if sum(lengths) <= budget:
        return list(lengths)
    # Cutting one token at a time from the longest column ends with every column at min(len, cap)
    # or cap + 1; bisect for the cap instead of looping over thousands of tokens.
    low, high = 0, max(lengths)
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if sum(min(n, mid) for n in lengths) <= budget else (low, mid - 1)
    spare = budget - sum(min(n, low) for n in lengths)
    kept = []
    for n in lengths:
        extra = 1 if n > low and spare > 0 else 0
        spare -= extra
        kept.append(min(n, low) + extra)
    return kept


@dataclass(frozen=True)
class Verbalizer:
    """Label words per label, tokenized; a label is scored by its words' log-probability at the mask."""

    labels: tuple[str, ...]
    words: dict[str, tuple[str, ...]]
    token_ids: dict[str, tuple[tuple[int, ...], ...]]
    warnings: tuple[str, ...]
    """Words the tokenizer splits into several tokens or does not know."""


def build_verbalizer(
    mapping: Mapping[str, str | Sequence[str]], labels: Sequence[str], tokenizer, *, leading_space: bool = False
) -> Verbalizer:
    """Tokenize each label's words; `leading_space` for byte-level BPE, where the word follows a space."""
    words = _label_words(mapping, labels)
    token_ids: dict[str, tuple[tuple[int, ...], ...]] = {}
    warnings: list[str] = []
    owner: dict[tuple[int, ...], str] = {}  # two labels sharing a word could never be told apart
    for label, label_words in words.items():
        per_word = []
        for word in label_words:
            ids = tuple(tokenizer((" " if leading_space else "") + word, add_special_tokens=False)["input_ids"])
            if not ids:
                raise PromptftError(f"label '{label}': '{word}' becomes no tokens", field=VERBALIZER_FIELD)
            if owner.setdefault(ids, label) != label:
                raise PromptftError(
                    f"labels '{owner[ids]}' and '{label}' share '{word}'; give each label its own words",
                    field=VERBALIZER_FIELD,
                )
            warnings.extend(_word_warnings(label, word, ids, tokenizer))
            per_word.append(ids)
        token_ids[label] = tuple(per_word)
    return Verbalizer(tuple(words), words, token_ids, tuple(warnings))


def _label_words(mapping: Mapping[str, str | Sequence[str]], labels: Sequence[str]) -> dict[str, tuple[str, ...]]:
    given = {str(key): value for key, value in mapping.items()}  # YAML reads `1: good` with an int key
    missing = [label for label in labels if label not in given]
    unknown = [key for key in given if key not in labels]
    if missing or unknown:
        problems = [f"no words for label(s) {', '.join(missing)}"] if missing else []
        problems += [f"unknown label(s) {', '.join(unknown)} (labels are: {', '.join(labels)})"] if unknown else []
        raise PromptftError("; ".join(problems), field=VERBALIZER_FIELD)
    words = {}
    for label in labels:
        raw = given[label]
        listed = list(raw) if isinstance(raw, (list, tuple)) else [raw]
        if not listed or not all(isinstance(w, str) and w.strip() for w in listed):
            raise PromptftError(
                f"label '{label}' needs one or more non-empty words, got {raw!r}", field=VERBALIZER_FIELD
            )
        words[label] = tuple(dict.fromkeys(w.strip() for w in listed))
    return words


def _word_warnings(label: str, word: str, ids: tuple[int, ...], tokenizer) -> list[str]:
    warnings = []
    if tokenizer.unk_token_id is not None and tokenizer.unk_token_id in ids:
        unknown = f"the tokenizer does not know '{word}' (it becomes {tokenizer.unk_token}); pick another word"
        warnings.append(f"label '{label}': {unknown}")
    if len(ids) > 1:
        pieces = ", ".join(tokenizer.convert_ids_to_tokens(list(ids)))
        split = f"'{word}' splits into {len(ids)} tokens ({pieces}); scored by mean log-probability"
        warnings.append(f"label '{label}': {split}")
    return warnings

