"""Awkward but valid input is read correctly; bad input gets exit code 2 and a message naming file, line and fix."""

from __future__ import annotations

import csv
import json
import re
import sys
import tracemalloc
from pathlib import Path

import pytest
from factories import toy_sentiment_rows, write_config, write_csv

from promptft_cli import runs
from promptft_cli.data.reading import (
    MAX_TEXT_CHARS,
    iter_records,
    label_text,
    read_split,
)
from promptft_cli.inference import predict

PACKAGE = Path(__file__).resolve().parent.parent / "promptft_cli"


def cli(capsys, *args: str) -> tuple[int, str]:
    """The console entry in-process, as the shell would run it; returns (exit code, stderr)."""
    from promptft_cli.cli.commands import main

    argv, sys.argv = sys.argv, ["promptft", *args]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    finally:
        sys.argv = argv
    return code, capsys.readouterr().err


def project(tmp_path: Path, model: Path, train_bytes: bytes | None = None, name: str = "train.csv", **sections) -> Path:
    """A config whose train file holds `train_bytes` (default: the toy sentiment rows)."""
    if train_bytes is None:
        write_csv(tmp_path / name, toy_sentiment_rows(40))
    else:
        (tmp_path / name).write_bytes(train_bytes)
    return write_config(tmp_path, model, data={"train": name, **sections.pop("data", {})}, **sections)


def toy_csv(newline: str = "\n", bom: bool = False) -> bytes:
    rows = toy_sentiment_rows(30)
    text = newline.join(["text,label", *(f"{r['text']},{r['label']}" for r in rows)]) + newline
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode()


def prepared(config: Path) -> tuple[list[dict], dict]:
    run_dir = config.parent / "run"
    rows = [json.loads(line) for name in ("train", "validation", "test")
            for line in (run_dir / "data" / f"{name}.jsonl").read_text().splitlines()]
    return rows, runs.read_json(run_dir / runs.REPORT)


# --- awkward but valid input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("newline, bom", [("\r\n", True), ("\r", False), ("\n", True)])
def test_bom_and_any_line_ending_are_read(tmp_path, tiny_encoder, capsys, newline, bom):
    config = project(tmp_path, tiny_encoder, toy_csv(newline, bom))
    code, err = cli(capsys, "prepare", str(config), "--json")
    assert code == 0, err
    rows, _ = prepared(config)
    assert len(rows) == 30 and all(set(r) == {"text", "label"} for r in rows)
    assert not any("\r" in r["text"] for r in rows)


def test_quoted_fields_with_embedded_newlines_keep_their_line_numbers(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b'text,label\n"first line\nsecond line, with a comma",pos\n"plain",neg\r\n"x\r\ny",pos\n')
    records = list(iter_records(path))
    assert [line for line, _ in records] == [2, 4, 5]
    split, _ = read_split(path, "train", ["text"], "label")
    assert [r["text"] for r in split.rows] == ["first line second line, with a comma", "plain", "x y"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "cp1252"])
def test_other_encodings_keep_lines_and_line_numbers(tmp_path, encoding):
    path = tmp_path / "t.csv"
    path.write_bytes("text,label\r\ncaf\u00e9,pos\r\nth\u00e9,neg\r\n".encode(encoding))
    split, _ = read_split(path, "train", ["text"], "label", encoding)
    assert split.rows == [{"text": "caf\u00e9", "label": "pos"}, {"text": "th\u00e9", "label": "neg"}]
    assert split.lines == [2, 3]


def test_numeric_and_empty_texts_are_reported_by_line(tmp_path, tiny_encoder, capsys):
    rows = toy_sentiment_rows(30)
    rows[3]["text"], rows[7]["text"], rows[11]["text"] = "", "12345", "  "
    write_csv(tmp_path / "train.csv", rows)
    config = write_config(tmp_path, tiny_encoder)
    code, err = cli(capsys, "prepare", str(config))
    assert code == 0, err
    _, report = prepared(config)
    assert report["dropped"]["train"]["empty_text"] == 2
    assert report["dropped"]["train"]["empty_text_lines"] == [5, 13]  # header is line 1
    assert report["notes"]["train"] == {"numeric_text": 1, "numeric_text_lines": [9]}


def test_json_numbers_as_text_are_kept_as_digits(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": 42, "label": "a"}\n{"text": "fine", "label": "b"}\n{"text": null, "label": "b"}\n')
    split, dropped = read_split(path, "train", ["text"], "label")
    assert [r["text"] for r in split.rows] == ["42", "fine"]
    assert split.notes == {"numeric_text": 1, "numeric_text_lines": [1]} and dropped["empty_text_lines"] == [3]


def test_labels_given_as_numbers_or_strings_are_one_class(tmp_path, tiny_encoder, capsys):
    lines = [{"text": f"example {i}", "label": lab} for i, lab in enumerate([1, "1", 1.0, "1.0", 0, "0", 0.0, " 0 "] * 3)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (tmp_path / "test.csv").write_text("text,label\nanother,1.0\nyet another,0\n")
    config = write_config(tmp_path, tiny_encoder, data={"train": "train.jsonl", "test": "test.csv"})
    code, err = cli(capsys, "prepare", str(config))
    assert code == 0, err
    _, report = prepared(config)
    assert report["labels"] == ["0", "1"]
    assert [label_text(v) for v in (1, "1", 1.0, "1.0", "+1", "1e0", True, "01", 0.5, "0.50", "pos")] == \
        ["1", "1", "1", "1", "1", "1", "true", "01", "0.5", "0.5", "pos"]


def test_very_long_texts_are_cut_and_counted(tmp_path, tiny_encoder, capsys):
    rows = toy_sentiment_rows(30)
    rows[2]["text"] = "great " * (MAX_TEXT_CHARS // 5)
    write_csv(tmp_path / "train.csv", rows)
    config = write_config(tmp_path, tiny_encoder)
    code, err = cli(capsys, "prepare", str(config), "--json")
    assert code == 0, err
    kept, report = prepared(config)
    assert max(len(r["text"]) for r in kept) <= MAX_TEXT_CHARS
    note = report["notes"]["train"]
    assert note[f"text_cut_at_{MAX_TEXT_CHARS}_chars"] == 1 and note[f"text_cut_at_{MAX_TEXT_CHARS}_chars_lines"] == [4]
    tokens = [s["tokens"] for s in report["splits"].values()]
    assert sum(t["truncated"] for t in tokens) >= 1  # cut again to model.max_length tokens, and counted


def test_latin1_file_reads_with_data_encoding(tmp_path, tiny_encoder, capsys):
    body = "text,label\n" + "".join(f"caf\u00e9 number {i},{'pos' if i % 2 else 'neg'}\n" for i in range(30))
    config = project(tmp_path, tiny_encoder, body.encode("latin-1"), data={"encoding": "latin-1"})
    code, err = cli(capsys, "prepare", str(config))
    assert code == 0, err
    assert prepared(config)[0][0]["text"].startswith("caf\u00e9")


# --- bad input: exit 2 and one line naming the problem -------------------------------------------------------

BAD_INPUTS = {
    "non-UTF-8 byte": (b"text,label\nfine,pos\ncaf\xe9,neg\n", "train.csv",
                       r"train\.csv:3: cannot decode byte 0xe9 at byte offset 23 as utf-8 \(set data\.encoding, e\.g\. latin-1\)"),
    "UTF-16 file": ("text,label\nfine,pos\n".encode("utf-16"), "train.csv",
                    r"train\.csv:1: file is UTF-16 \(it starts with a UTF-16 byte-order mark\), not utf-8"),
    "cut inside a character": (b"text,label\nfine,pos\ncaf\xc3", "train.csv", r"file ends inside a multi-byte character"),
    "every text empty": (b"text,label\n,pos\n  ,neg\n", "train.csv",
                         r"train\.csv: field 'text': no usable rows: all 2 rows have an empty text \(lines 2, 3\)"),
    "text is a JSON object": (b'{"text": "ok", "label": "a"}\n{"text": {"a": 1}, "label": "b"}\n', "train.jsonl",
                              r"train\.jsonl:2: field 'text': text must be a string, got a JSON object"),
    "label is a JSON list": (b'{"text": "ok", "label": ["a"]}\n', "train.jsonl",
                             r"train\.jsonl:1: field 'label': a label must be a string or a number"),
    "empty label": (b"text,label\nfine,pos\nalso fine,\n", "train.csv", r"train\.csv:3: field 'label': empty label"),
    "JSON nested too deep": (b'{"text": "ok", "label": "a"}\n' + b"[" * 100_000 + b"\n", "train.jsonl",
                             r"train\.jsonl:2: malformed JSON line \(RecursionError"),
    "more fields than the header": (b"text,label\nfine,pos\nnot, quoted,neg\n", "train.csv",
                                    r"train\.csv:3: 3 fields but the header has 2 \(quote fields containing the delimiter\)"),
    "quote never closed": (b'text,label\nfine,pos\n"never closed,neg\nmore,pos\n', "train.csv",
                           r"train\.csv:3: malformed CSV \(unexpected end of data; a quote opened here is never closed\)"),
    "binary file as data": (bytes(range(256)) * 4, "train.csv", r"cannot decode byte 0x80 at byte offset 128 as utf-8"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_training_input_exits_2_with_a_clear_message(tmp_path, tiny_encoder, capsys, case):
    content, name, message = BAD_INPUTS[case]
    config = project(tmp_path, tiny_encoder, content, name=name)
    code, err = cli(capsys, "prepare", str(config))
    assert code == 2
    assert re.search(message, err), err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_unknown_encoding_names_the_setting(tmp_path, tiny_encoder, capsys):
    config = project(tmp_path, tiny_encoder, data={"encoding": "klingon"})
    code, err = cli(capsys, "prepare", str(config))
    assert code == 2 and "field 'data.encoding': unknown encoding 'klingon'" in err


# --- predict: hostile cells, encodings, streaming ------------------------------------------------------------


def test_predict_escapes_formulas_and_reports_odd_rows(trained_run, tmp_path, capsys):
    src = tmp_path / "in.csv"
    src.write_text('text,=HYPERLINK("http://x")\n=cmd|calc,a\n+1,b\n-2,c\n@SUM(A1),d\n,e\n"long ' + "x " * 300 + '",f\n')
    out = tmp_path / "out.csv"
    code, err = cli(capsys, "predict", str(trained_run), str(src), "-o", str(out))
    assert code == 0, err
    with out.open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][:2] == ["text", "'=HYPERLINK(\"http://x\")"]
    assert [r[0] for r in rows[1:5]] == ["'=cmd|calc", "'+1", "'-2", "'@SUM(A1)"]
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)
    err = " ".join(err.split())  # rich wraps status lines at the terminal width
    assert "wrote 6 predictions" in err and "1 empty texts (line 6)" in err and "numeric texts (lines 3, 4)" in err
    assert "1 inputs truncated to model.max_length tokens" in err


def test_predict_non_utf8_input_names_byte_and_option(trained_run, tmp_path, capsys):
    src = tmp_path / "in.csv"
    src.write_bytes(b"text\nfine\ncr\xe8me br\xfbl\xe9e\n")
    code, err = cli(capsys, "predict", str(trained_run), str(src), "-o", str(tmp_path / "out.jsonl"))
    assert code == 2
    assert "in.csv:3: cannot decode byte 0xe8 at byte offset 12 as utf-8 (pass --encoding, e.g. --encoding latin-1)" in err
    assert not (tmp_path / "out.jsonl").exists()  # nothing half-written
    code, err = cli(capsys, "predict", str(trained_run), str(src), "-o", str(tmp_path / "out.jsonl"), "--encoding", "latin-1")
    assert code == 0, err
    assert json.loads((tmp_path / "out.jsonl").read_text().splitlines()[1])["text"] == "cr\u00e8me br\u00fbl\u00e9e"


def test_predict_missing_column_and_bad_stdin(trained_run, tmp_path, capsys, monkeypatch):
    src = tmp_path / "in.csv"
    src.write_text("sentence\nhello\n")
    code, err = cli(capsys, "predict", str(trained_run), str(src))
    assert code == 2 and "in.csv:2: field 'text': missing column 'text'; columns found: sentence" in err

    class Stdin:
        buffer = __import__("io").BytesIO(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')

    monkeypatch.setattr(sys, "stdin", Stdin)
    code, err = cli(capsys, "predict", str(trained_run), "-")
    assert code == 2 and "<stdin>:2: cannot decode byte 0xe9 at byte offset 28 as utf-8" in err


def test_reading_a_large_input_is_streamed(tmp_path):
    """A few MB through the reader: memory stays flat, so a 1 GB file is read the same way."""
    path = tmp_path / "big.csv"
    block = "".join(f"row {i}: {'some words to read ' * 100},{i}\n" for i in range(125))
    with path.open("w") as fh:
        fh.write("text,id\n")
        for _ in range(12):
            fh.write(block)
    assert path.stat().st_size > 2_500_000
    tracemalloc.start()
    n = sum(1 for _ in predict.read_inputs(str(path), ["text"]))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert n == 1500
    assert peak < 1_000_000, f"reader held {peak} bytes at once"


def test_predictions_pull_inputs_one_chunk_at_a_time(monkeypatch):
    pulled = []

    def inputs():
        for i in range(10_000):
            pulled.append(i)
            yield {"text": f"row {i}"}, {"text": f"row {i}"}

    from promptft_cli.tasks.classification import ClassificationTask

    class FakePredictor:
        labels = ["a", "b"]
        task = ClassificationTask()

        def proba(self, rows, batch_size=None):
            import numpy as np

            return np.tile([0.25, 0.75], (len(rows), 1))

    monkeypatch.setattr(predict, "CHUNK_ROWS", 100)
    stream = predict.predictions(FakePredictor(), inputs())
    first = next(stream)
    assert first["prediction"] == "b" and len(pulled) == 100


def test_csv_safe_covers_every_formula_start():
    for cell in ("=1+1", "+1", "-1", "@x", "\tx", "\rx"):
        assert predict.csv_safe(cell) == "'" + cell
    assert predict.csv_safe("fine") == "fine" and predict.csv_safe(-1.5) == -1.5


# --- safe loading: no code runs from files we read -----------------------------------------------------------

UNSAFE = {
    r"torch\.load\((?![^)]*weights_only=True)": "torch.load without weights_only=True",
    r"yaml\.load\(": "yaml.load (use yaml.safe_load)",
    r"yaml\.unsafe_load|yaml\.full_load": "an unsafe YAML loader",
    r"trust_remote_code=True": "trust_remote_code=True hard-coded (it must come from the config)",
    r"pickle\.loads?\(|dill\.|joblib\.load": "pickle-based loading",
    r"(?<![\w.])(eval|exec)\(": "eval/exec",
}


def test_no_unsafe_loading_in_the_package():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for pattern, what in UNSAFE.items():
            for match in re.finditer(pattern, text):
                found.append(f"{path.name}:{text[:match.start()].count(chr(10)) + 1}: {what}")
    assert not found, "\n".join(found)
    assert "weights_only=True" in (PACKAGE / "training" / "checkpoints.py").read_text()  # the check above has something to check


def test_config_pointing_at_a_model_file_reads_it_only_as_data(tmp_path, tiny_encoder, capsys):
    weights = next(tiny_encoder.glob("*.safetensors"))
    config = write_config(tmp_path, tiny_encoder, data={"train": str(weights)})
    code, err = cli(capsys, "prepare", str(config))
    assert code == 2 and str(weights) in err and "Traceback" not in err


# --- no silent fallbacks (issue 11): each guess became an error naming the file/field, or a warning saying it --


def test_unknown_data_extension_is_an_error_not_csv(tmp_path, tiny_encoder, capsys):
    config = project(tmp_path, tiny_encoder, name="train.txt")
    code, err = cli(capsys, "prepare", str(config))
    assert code == 2 and "unknown data file extension '.txt'; use .csv, .tsv (.tab) or .jsonl" in err
    assert str(tmp_path / "train.txt") in err and "Traceback" not in err


def test_unknown_output_extension_is_an_error_not_csv(trained_run, tmp_path, capsys):
    write_csv(tmp_path / "new.csv", [{"text": "it was great"}])
    out = tmp_path / "out.xlsx"
    code, err = cli(capsys, "predict", str(trained_run), str(tmp_path / "new.csv"), "-o", str(out))
    assert code == 2 and "unknown output extension '.xlsx'; use .csv, .tsv or .jsonl" in err
    assert str(out) in err and "--output" in err and not out.exists()


def _model_with_architecture(tmp_path: Path, source: Path, architectures) -> Path:
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(source, folder)
    hf = json.loads((folder / "config.json").read_text())
    hf.pop("architectures", None)
    if architectures:
        hf["architectures"] = architectures
    (folder / "config.json").write_text(json.dumps(hf))
    return folder


def test_unknown_architecture_is_an_error_not_an_encoder(tmp_path, tiny_encoder, capsys):
    model = _model_with_architecture(tmp_path, tiny_encoder, ["BertForSequenceClassification"])
    config = project(tmp_path, model, prompt={"verbalizer": {"positive": "great", "negative": "bad"}})
    code, err = cli(capsys, "train", str(config))
    assert code == 2 and "architecture BertForSequenceClassification is not a masked LM, a causal LM or a plain encoder" in err
    assert "field 'model.name'" in err and "prompt.head: linear" in err


def test_no_architecture_is_assumed_an_encoder_with_a_warning(tmp_path, tiny_encoder):
    from promptft_cli.config import load_config
    from promptft_cli.modeling.loading import model_kind

    model = _model_with_architecture(tmp_path, tiny_encoder, None)
    cfg = load_config(project(tmp_path, model, prompt={"verbalizer": {"positive": "great", "negative": "bad"}}))
    with _captured("promptft.models") as records:
        assert model_kind(cfg.model, "verbalizer", cfg.base_dir) == "encoder"
    assert any("names no architecture; assuming a plain encoder" in r for r in records)


def test_missing_pad_token_is_an_error_not_id_0(tmp_path, tiny_gpt2, capsys):
    import shutil

    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    folder = tmp_path / "model"
    shutil.copytree(tiny_gpt2, folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).unlink(missing_ok=True)
    backend = Tokenizer(models.BPE(vocab={chr(c): i for i, c in enumerate(range(32, 127))}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.Split(" ", "isolated")
    PreTrainedTokenizerFast(tokenizer_object=backend).save_pretrained(folder)  # no pad, eos or unk
    config = project(tmp_path, folder, prompt={"head": "linear"})
    code, err = cli(capsys, "prepare", str(config))
    assert code == 2 and "the tokenizer has no pad, end-of-sequence or unknown token to pad batches with" in err
    assert "field 'model.name'" in err and "Traceback" not in err


def test_pad_token_stand_in_is_a_warning(tmp_path, tiny_gpt2, capsys):
    config = project(tmp_path, tiny_gpt2, prompt={"head": "linear"})
    code, err = cli(capsys, "prepare", str(config))
    assert code == 0 and "the tokenizer has no pad token; padding with '<|endoftext|>'" in err


@pytest.mark.parametrize("head, reader", [("linear", "linear head"), ("verbalizer", "similarity head")])
def test_mask_in_a_template_for_a_head_that_ignores_it_is_an_error(tmp_path, tiny_encoder, capsys, head, reader):
    config = project(tmp_path, tiny_encoder, prompt={"template": "{text} It was {mask}.", "head": head,
                                                    "verbalizer": {"positive": "great", "negative": "bad"}})
    code, err = cli(capsys, "train", str(config))
    assert code == 2 and f"the {reader}" in err and "ignores {mask}; remove it from the template" in err
    assert "field 'prompt.template'" in err


class _captured:
    """Messages logged on `name` inside the block (promptft's CLI handler may not be installed in a test)."""

    def __init__(self, name: str) -> None:
        import logging

        self.logger, self.records = logging.getLogger(name), []
        self.handler = logging.Handler()
        self.handler.emit = lambda record: self.records.append(record.getMessage())

    def __enter__(self):
        self.logger.addHandler(self.handler)
        return self.records

    def __exit__(self, *exc):
        self.logger.removeHandler(self.handler)
