"""Batched encoding (TemplateEncoder) gives exactly the ids of the per-row encoder it replaced, on varied templates."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_templates import render

from promptft_cli.errors import PromptftError
from promptft_cli.prompting.encoding import Encoded, TemplateEncoder, encode, encode_rows
from promptft_cli.prompting.templates import Column, Mask, Soft, Template, Text, parse_template, resolve_soft

# --- the per-row encoder as it was before batching (promptft_cli/prompting/templates.py at fad9fcd) ----------
# Kept verbatim as the reference the batched encoder must reproduce: six-odd tokenizer calls per row.


def reference_encode(template: Template, row, tokenizer, max_length: int, *, soft_token_id=None) -> Encoded:
    template = resolve_soft(template, tokenizer)
    if template.has_mask and tokenizer.mask_token_id is None:
        raise PromptftError("the model's tokenizer has no mask token; remove {mask} or use a masked LM (BERT, RoBERTa)")
    soft_id = next((i for i in (soft_token_id, tokenizer.unk_token_id, tokenizer.pad_token_id) if i is not None), 0)
    pieces = _tokenize_parts(template, row, tokenizer, soft_id)
    front, back = _special_tokens_around(tokenizer)
    fixed = len(front) + len(back) + sum(len(ids) for part, ids in pieces if not isinstance(part, Column))
    if fixed > max_length:
        raise PromptftError(
            f"template needs {fixed} tokens but model.max_length is {max_length}; shorten the template or raise it")
    columns = [i for i, (part, _) in enumerate(pieces) if isinstance(part, Column)]
    lengths = [len(pieces[i][1]) for i in columns]
    kept = _fit_lengths(lengths, max_length - fixed)
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


def _piece_texts(template: Template, row) -> list:
    parts = template.parts
    texts = [p.text if isinstance(p, Text) else row[p.name] if isinstance(p, Column) else None for p in parts]
    for i, part in enumerate(parts):
        if isinstance(part, Text):
            body = texts[i].rstrip()
            if i + 1 < len(parts) and isinstance(parts[i + 1], Column) and texts[i + 1]:
                texts[i + 1] = texts[i][len(body):] + texts[i + 1]
            texts[i] = body
    if texts and texts[0] is not None:
        texts[0] = texts[0].lstrip()
    return texts


def _tokenize_parts(template: Template, row, tokenizer, soft_id: int) -> list:
    pieces = []
    for part, text in zip(template.parts, _piece_texts(template, row)):
        if isinstance(part, Mask):
            ids = [tokenizer.mask_token_id]
        elif isinstance(part, Soft):
            ids = [soft_id] * part.n
        elif not text:
            ids = []
        else:
            from_data = isinstance(part, Column)
            ids = tokenizer(text, add_special_tokens=False, split_special_tokens=from_data)["input_ids"]
        pieces.append((part, list(ids)))
    return pieces


def _special_tokens_around(tokenizer):
    bare = tokenizer("hello", add_special_tokens=False)["input_ids"]
    full = tokenizer("hello", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start: start + len(bare)] == bare:
            return list(full[:start]), list(full[start + len(bare):])
    raise AssertionError("no probe")


def _fit_lengths(lengths, budget):
    if sum(lengths) <= budget:
        return list(lengths)
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


# --- strategies -------------------------------------------------------------------------------------------

_WORDS = ["It", "was", "the", "movie", "good", ".", ":", "?", "Review", "{", "}", "{}", "電影", "很好", "[MASK]",
          "<|endoftext|>", "fantastic"]
_spaces = st.sampled_from(["", " ", "  ", "\n", " \t"])
_text = st.lists(st.sampled_from(_WORDS), min_size=1, max_size=4).map(" ".join)
_template_text = st.tuples(_spaces, _text, _spaces).map("".join) | _spaces.filter(bool)  # literal braces, bare spaces
_parts = st.lists(
    st.one_of(st.builds(Text, _template_text), st.builds(Column, st.sampled_from(["a", "b", "c"])),
              st.builds(Soft, st.integers(1, 3)), st.just(Soft(0, "It was"))),
    min_size=1, max_size=7,
)
_value = st.one_of(
    st.just(""), _spaces,  # empty and whitespace-only texts
    st.tuples(_spaces, st.lists(st.sampled_from(_WORDS), max_size=40).map(" ".join), _spaces).map("".join),
    st.text(max_size=40),  # anything, CJK and control characters included
    st.text("電影很好看不錯", min_size=20, max_size=60),  # long CJK, no spaces
)
_row = st.fixed_dictionaries({"a": _value, "b": _value, "c": _value})
EQUIV = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _template(parts, mask_at) -> Template:
    if mask_at is not None:
        parts = parts[:mask_at] + [Mask()] + parts[mask_at:]
    source = render(parts)
    assume(source.strip())
    return parse_template(source)


def reference_or_error(template, row, tokenizer, max_length, **kw):
    try:
        return reference_encode(template, row, tokenizer, max_length, **kw)
    except PromptftError as exc:
        return str(exc).split(";")[0]


def check_batched_equals_per_row(tokenizer, template, rows, max_length, soft_token_id=None):
    expected = [reference_or_error(template, row, tokenizer, max_length, soft_token_id=soft_token_id) for row in rows]
    errors = {e for e in expected if isinstance(e, str)}
    if errors:  # the template alone does not fit: the same error, for every row
        with pytest.raises(PromptftError, match=re.escape(errors.pop())):
            TemplateEncoder(template, tokenizer, soft_token_id=soft_token_id).encode(rows, max_length)
        return
    encoder = TemplateEncoder(template, tokenizer, soft_token_id=soft_token_id)
    assert encoder.encode(rows, max_length) == expected
    assert [encode(template, row, tokenizer, max_length, soft_token_id=soft_token_id) for row in rows] == expected
    if soft_token_id is None:  # encode_rows, fresh and from prepare's column ids, and the lengths prepare reports
        tokens = encoder.tokenize(rows)
        for split in (encode_rows(rows, template, tokenizer, max_length),
                      encode_rows(rows, template, tokenizer, max_length, tokens=tokens)):
            assert split.input_ids == [e.input_ids for e in expected]
            assert split.mask_positions == [e.mask_position for e in expected]
            assert split.soft_positions == [e.soft_positions for e in expected]
            assert split.truncated == sum(e.truncated for e in expected)
        assert [encoder.length(t) for t in tokens] == [
            len(reference_encode(template, row, tokenizer, 100_000).input_ids) for row in rows]


@EQUIV
@given(parts=_parts, mask_at=st.none() | st.integers(0, 7), rows=st.lists(_row, min_size=1, max_size=5),
       max_length=st.integers(1, 48))
def test_batched_equals_per_row_bert(bert_tokenizer, parts, mask_at, rows, max_length):
    check_batched_equals_per_row(bert_tokenizer, _template(parts, mask_at), rows, max_length)


@EQUIV
@given(parts=_parts, rows=st.lists(_row, min_size=1, max_size=5), max_length=st.integers(1, 64),
       soft_token_id=st.none() | st.just(7))
def test_batched_equals_per_row_gpt2(gpt2_tokenizer, parts, rows, max_length, soft_token_id):
    # Byte-level BPE is where tokenizing a piece alone differs from in context (the leading "Ġ").
    check_batched_equals_per_row(gpt2_tokenizer, _template(parts, None), rows, max_length, soft_token_id)


@pytest.mark.parametrize("source", [
    "{a} It was {mask}.", "  Review: {a} {{literal}} {b}\n{mask} ", "{soft:2}{a}{b}{soft}", '{soft:"It was"} {c} {a} {mask}',
    "{a}", " {a} {a} {mask}",
])
def test_examples_with_truncation(bert_tokenizer, gpt2_tokenizer, source):
    long = "the movie was good " * 30
    rows = [{"a": long, "b": "電影很好 " * 10, "c": ""}, {"a": "", "b": " ", "c": "a [MASK] b"}, {"a": "x", "b": long, "c": long}]
    for tokenizer in (bert_tokenizer, gpt2_tokenizer):
        template = parse_template(source if tokenizer is bert_tokenizer else source.replace("{mask}", "!"))
        for max_length in (12, 40, 512):
            check_batched_equals_per_row(tokenizer, template, rows, max_length)


def test_constants_tokenized_once_columns_in_one_call(bert_tokenizer):
    """The point of the encoder: a constant number of tokenizer calls, whatever the number of rows."""
    calls = []

    class Counting:
        def __getattr__(self, name):
            return getattr(bert_tokenizer, name)

        def __call__(self, text, **kw):
            calls.append(text)
            return bert_tokenizer(text, **kw)

    encoder = TemplateEncoder(parse_template('{soft:"It was"} Review: {a} and {b} . {mask}'), Counting())
    setup_calls = len(calls)
    encoder.encode([{"a": f"good {i}", "b": "bad"} for i in range(100)], 32)
    assert len(calls) == setup_calls + 1 and len(calls[-1]) == 200


def test_missing_column_is_reported(bert_tokenizer):
    with pytest.raises(PromptftError, match="uses column 'b'") as caught:
        TemplateEncoder(parse_template("{a} {b}"), bert_tokenizer).encode([{"a": "x", "b": "y"}, {"a": "x"}], 16)
    assert caught.value.field == "b"


def test_a_first_run_tokenizes_each_row_once(toy_project, monkeypatch):
    """prepare tokenizes every split; training cuts those ids instead of tokenizing the split a second time."""
    from promptft_cli.config import load_config
    from promptft_cli.training.loop import setup

    tokenized, tokenize = [], TemplateEncoder.tokenize
    monkeypatch.setattr(TemplateEncoder, "tokenize", lambda self, rows: tokenized.append(tokenize(self, rows)) or tokenized[-1])
    first = setup(load_config(toy_project))
    assert sum(map(len, tokenized)) == sum(len(split.rows) for split in first.data.splits.values())
    tokenized.clear()
    again = setup(load_config(toy_project))  # prepared files read back: each split is tokenized once, in setup
    assert sum(map(len, tokenized)) == sum(len(again.data[name].rows) for name in ("train", "validation", "test"))
    assert again.encoded == first.encoded
