"""Fuzzing the readers users feed files to: whatever the bytes, the only exception is a PromptftError."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promptft_cli.config import load_config
from promptft_cli.data.reading import read_split
from promptft_cli.errors import PromptftError

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Bytes that reach the interesting states: quotes, delimiters, every newline, BOMs, NUL, invalid UTF-8.
CSV_PIECES = st.sampled_from([b"text", b"label", b",", b"\t", b'"', b'""', b"\n", b"\r\n", b"\r", b"\xef\xbb\xbf",
                              b"\xff\xfe", b"\x00", b"\xe9", b"\xc3", b"a", b" ", b"1", b"1.0", b"=cmd"])
JSON_PIECES = st.sampled_from([b"{", b"}", b"[", b"]", b'"text"', b'"label"', b":", b",", b'"', b"\\", b"\n", b"\r",
                               b"1", b"1.0", b"1e999", b"null", b"true", b"NaN", b"-", b"\xe9", b"\xef\xbb\xbf", b" ",
                               b'{"text": "a", "label": 1}\n', b"9" * 5000])


def _file_bytes(pieces: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=300), st.lists(pieces, max_size=60).map(b"".join))


def _read(content: bytes, suffix: str, encoding: str = "utf-8") -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"data{suffix}"
        path.write_bytes(content)
        try:
            read_split(path, "train", ["text"], "label", encoding)
        except PromptftError:
            pass


@FUZZ
@given(content=_file_bytes(CSV_PIECES), suffix=st.sampled_from([".csv", ".tsv"]),
       encoding=st.sampled_from(["utf-8", "latin-1", "utf-16", "ascii"]))
def test_delimited_reader_raises_only_promptft_errors(content, suffix, encoding):
    _read(content, suffix, encoding)


@FUZZ
@given(content=_file_bytes(JSON_PIECES))
def test_jsonl_reader_raises_only_promptft_errors(content):
    _read(content, ".jsonl")


@FUZZ
@given(content=_file_bytes(st.sampled_from([b"data:", b"train:", b" ", b"\n", b"  ", b"- ", b"{", b"}", b"[", b"]",
                                            b"&a", b"*a", b"!!python/object:os.system", b"x.csv", b"~", b"1", b":", b"\t",
                                            b"model:", b"method: lora", b"epochs: -1", b"\xe9", b"'"])))
def test_config_loader_raises_only_promptft_errors_for_any_bytes(content):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_bytes(content)
        try:
            load_config(path)
        except PromptftError:
            pass


SECTIONS = ["task", "model", "data", "prompt", "method", "train", "output_dir", "trian", 1, None]
KEYS = ["name", "train", "text_column", "epochs", "lr", "few_shot", "k", "early_stopping", "patience", "encoding",
        "verbalizer", "template", "r", "num_virtual_tokens", "seeds", 0, True]
VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
              st.text(max_size=20), st.sampled_from(["lora", "head", "default", "x.csv", "{text} {mask}", "1e-3"])),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.sampled_from(KEYS), children, max_size=4)),
    max_leaves=12,
)


@FUZZ
@given(raw=st.dictionaries(st.sampled_from(SECTIONS), VALUES, max_size=6),
       overrides=st.lists(st.text(alphabet="abcdeilmnorstx._=:-[]{}1 ", max_size=30), max_size=3))
def test_config_loader_raises_only_promptft_errors_for_any_structure(raw, overrides):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        try:
            path.write_text(yaml.safe_dump(raw))
        except (yaml.YAMLError, TypeError, ValueError):
            pytest.skip("not representable as YAML")
        try:
            load_config(path, overrides)
        except PromptftError:
            pass
