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


def column_value(row: Mapping[str, str], name: str) -> str:
    """The text of column `name` in `row`; errors name the columns the row has."""
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
            pieces.append(column_value(row, part.name))
        elif isinstance(part, Mask):
            pieces.append(mask_token)
        else:
            pieces.append(soft_token * max(part.n, 1))
    return "".join(pieces)


def render_demonstration(template: Template, row: Mapping[str, str], label_word: str) -> str:
    """One LM-BFF demonstration: the template filled with `row`, `label_word` at the mask, soft parts dropped."""
    return fill_text(template, row, mask_token=label_word, soft_token="").strip()


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
    words = label_words(mapping, labels)
    token_ids: dict[str, tuple[tuple[int, ...], ...]] = {}
    warnings: list[str] = []
    owner: dict[tuple[int, ...], str] = {}  # two labels sharing a word could never be told apart
    for label, phrases in words.items():
        per_word = []
        for word in phrases:
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


def label_words(mapping: Mapping[str, str | Sequence[str]], labels: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Each label's words, stripped and deduplicated; a missing, unknown or empty entry is an error naming the verbalizer."""
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

