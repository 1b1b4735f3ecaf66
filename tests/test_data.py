"""Data: reading CSV/TSV/JSONL with line numbers, cleaning, stratified split, few-shot sampling, label checks."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from promptft_cli.config import DataConfig
from promptft_cli.data.reading import (
    Split,
    iter_records,
    load_splits,
    read_split,
    sample_k_per_class,
    stratified_split,
)
from promptft_cli.errors import PromptftError


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def labelled(n_per_class: dict[str, int]) -> list[dict[str, str]]:
    return [{"text": f"{label} example {i}", "label": label} for label, n in n_per_class.items() for i in range(n)]


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def load(tmp_path: Path, **data) -> object:
    return load_splits(DataConfig(**data), lambda p: tmp_path / p, seed=0)


def raises(fn, *args, **kwargs) -> PromptftError:
    with pytest.raises(PromptftError) as info:
        fn(*args, **kwargs)
    return info.value


# --- reading ---


def test_csv_records_carry_their_line_numbers(tmp_path):
    path = write(tmp_path / "d.csv", 'text,label\nfirst,a\n"two\nlines",b\n\nlast,a\n')
    records = list(iter_records(path))
    assert [line for line, _ in records] == [2, 3, 6]
    assert records[1][1] == {"text": "two\nlines", "label": "b"}


def test_tsv_and_jsonl(tmp_path):
    tsv = write(tmp_path / "d.tsv", "text\tlabel\nhello, world\tpos\n")
    assert list(iter_records(tsv)) == [(2, {"text": "hello, world", "label": "pos"})]
    lines = write(tmp_path / "d.jsonl", '{"text": "a", "label": 1}\n\n{"text": "b", "label": "x"}\n')
    assert list(iter_records(lines)) == [(1, {"text": "a", "label": 1}), (3, {"text": "b", "label": "x"})]


def test_read_split_cleans_and_counts_what_it_drops(tmp_path):
    path = write(tmp_path / "d.csv", 'text,label\n"  so   good\t here ",pos\n   ,neg\nso good here,pos\nso good here,neg\nbad,neg\n')
    split, dropped = read_split(path, "train", ["text"], "label")
    assert split.rows == [{"text": "so good here", "label": "pos"}, {"text": "so good here", "label": "neg"},
                          {"text": "bad", "label": "neg"}]
    assert split.lines == [2, 5, 6]
    assert dropped["empty_text"] == 1 and dropped["duplicate"] == 1 and dropped["empty_text_lines"] == [3]


def test_pair_columns_and_other_label_column(tmp_path):
    path = write(tmp_path / "d.jsonl", jsonl([{"premise": "p", "hypothesis": "h", "gold": "yes", "extra": 1}]))
    split, _ = read_split(path, "train", ["premise", "hypothesis"], "gold")
    assert split.rows == [{"premise": "p", "hypothesis": "h", "label": "yes"}]


def test_missing_column_lists_the_columns_found(tmp_path):
    path = write(tmp_path / "d.csv", "review,sentiment\ngood,pos\n")
    err = raises(read_split, path, "train", ["text"], "sentiment")
    assert err.field == "text" and err.file == str(path) and "columns found: review, sentiment" in err.message
    err = raises(read_split, path, "train", ["review"], "label")
    assert err.field == "label" and "review, sentiment" in err.message


def test_malformed_jsonl_line(tmp_path):
    path = write(tmp_path / "d.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label": \n')
    err = raises(lambda: list(iter_records(path)))
    assert err.row == 2 and err.file == str(path) and "malformed JSON" in err.message


def test_undecodable_bytes_name_line_and_byte_offset(tmp_path):
    path = write(tmp_path / "d.csv", b"text,label\ngood,pos\nbad \xff here,neg\n")
    err = raises(read_split, path, "train", ["text"], "label")
    assert err.row == 3 and "0xff" in err.message and "byte offset 24" in err.message  # 11 + 9 + 4


@pytest.mark.parametrize("content", ["", "text,label\n", "\n\n"])
def test_empty_file(tmp_path, content):
    path = write(tmp_path / "d.csv", content)
    err = raises(read_split, path, "train", ["text"], "label")
    assert err.file == str(path) and "empty" in err.message


def test_empty_jsonl_and_missing_file(tmp_path):
    assert "empty" in raises(read_split, write(tmp_path / "d.jsonl", ""), "train", ["text"], "label").message
    err = raises(read_split, tmp_path / "nope.csv", "train", ["text"], "label")
    assert err.file == str(tmp_path / "nope.csv") and "not found" in err.message


def test_all_texts_empty(tmp_path):
    err = raises(read_split, write(tmp_path / "d.csv", "text,label\n ,a\n,b\n"), "train", ["text"], "label")
    assert "no usable rows" in err.message and "2, 3" in err.message


# --- splitting and sampling ---


def test_stratified_split_is_seeded_and_keeps_every_class():
    rows = labelled({"a": 20, "b": 10, "c": 3})
    keep, held = stratified_split(rows, 0.2, seed=1)
    assert len(keep) + len(held) == len(rows) and not {r["text"] for r in keep} & {r["text"] for r in held}
    assert Counter(r["label"] for r in held) == {"a": 4, "b": 2, "c": 1}
    assert set(r["label"] for r in keep) == {"a", "b", "c"}
    assert stratified_split(rows, 0.2, seed=1) == (keep, held)
    assert stratified_split(rows, 0.2, seed=2)[1] != held


def test_stratified_split_never_empties_a_class_of_one():
    keep, held = stratified_split(labelled({"a": 10, "b": 1}), 0.5, seed=0)
    assert [r["label"] for r in keep].count("b") == 1 and "b" not in [r["label"] for r in held]


def test_missing_validation_and_test_are_held_out_of_train(tmp_path):
    write(tmp_path / "train.jsonl", jsonl(labelled({"a": 30, "b": 20})))
    data = load(tmp_path, train="train.jsonl")
    sizes = {name: len(data[name].rows) for name in ("train", "validation", "test")}
    assert sizes == {"train": 36, "validation": 4, "test": 10}
    texts = [r["text"] for name in ("train", "validation", "test") for r in data[name].rows]
    assert len(texts) == len(set(texts)) == 50
    assert data.labels == ["a", "b"] and all(set(data[n].labels) == {"a", "b"} for n in ("validation", "test"))
    again = load(tmp_path, train="train.jsonl")
    assert again["test"].rows == data["test"].rows


def test_few_shot_takes_k_per_class_seeded(tmp_path):
    split = Split("train", labelled({"a": 10, "b": 6, "c": 4}), "train.csv")
    few = sample_k_per_class(split, 4, seed=3, strict=True)
    assert Counter(few.labels) == {"a": 4, "b": 4, "c": 4}
    assert sample_k_per_class(split, 4, seed=3, strict=True).rows == few.rows
    assert sample_k_per_class(split, 4, seed=4, strict=True).rows != few.rows


def test_few_shot_k_larger_than_a_class_names_it():
    split = Split("train", labelled({"a": 10, "rare": 2}), "train.csv")
    err = raises(sample_k_per_class, split, 3, 0, strict=True)
    assert "'rare'" in err.message and "only 2" in err.message and err.field == "data.few_shot.k"
    assert err.file == "train.csv"
    assert Counter(sample_k_per_class(split, 3, 0, strict=False).labels) == {"a": 3, "rare": 2}


def test_few_shot_through_load_splits(tmp_path):
    write(tmp_path / "train.jsonl", jsonl(labelled({"a": 30, "b": 30})))
    data = load(tmp_path, train="train.jsonl", few_shot={"k": 5, "seed": 1})
    assert Counter(data["train"].labels) == {"a": 5, "b": 5}
    assert len(data["test"].rows) == 12  # the test split is never sampled


# --- label checks ---


@pytest.mark.parametrize("split", ["validation", "test"])
def test_label_not_in_train_names_file_row_and_field(tmp_path, split):
    write(tmp_path / "train.csv", "text,label\na,pos\nb,neg\nc,pos\n")
    other = write(tmp_path / f"{split}.csv", "text,label\nx,pos\ny,neutral\n")
    err = raises(load, tmp_path, train="train.csv", **{split: f"{split}.csv"})
    assert err.file == str(other) and err.row == 3 and err.field == "label"
    assert "'neutral'" in err.message and "neg, pos" in err.message


def test_label_error_names_the_configured_label_column(tmp_path):
    write(tmp_path / "train.csv", "text,sentiment\na,pos\nb,neg\n")
    write(tmp_path / "test.csv", "text,sentiment\ny,neutral\n")
    err = raises(load, tmp_path, train="train.csv", test="test.csv", label_column="sentiment")
    assert err.field == "sentiment" and err.row == 2


def test_fewer_than_two_classes(tmp_path):
    path = write(tmp_path / "train.csv", "text,label\na,pos\nb,pos\nc,pos\n")
    err = raises(load, tmp_path, train="train.csv")
    assert err.file == str(path) and "at least 2 classes" in err.message and "pos" in err.message


def test_numeric_labels_have_one_spelling(tmp_path):
    write(tmp_path / "train.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": 0}\n{"text": "c", "label": 1.0}\n')
    write(tmp_path / "test.csv", "text,label\nx,1\ny,0.0\n")
    data = load(tmp_path, train="train.jsonl", test="test.csv", validation="test.csv")
    assert data.labels == ["0", "1"] and data["test"].labels == ["1", "0"]


def test_label_examples_add_each_description_to_train_after_the_sample(tmp_path, tiny_encoder):
    """data.label_examples: every verbalizer phrase joins train as a row of its label; the sample stays k per class."""
    from factories import toy_sentiment_rows, write_config, write_csv

    from promptft_cli.config import load_config
    from promptft_cli.data.prepare import prepare
    from promptft_cli.modeling.loading import load_tokenizer

    write_csv(tmp_path / "train.csv", toy_sentiment_rows(80))
    verbalizer = {"positive": ["a great film", "great"], "negative": "a terrible film"}
    config = write_config(tmp_path, tiny_encoder, prompt={"verbalizer": verbalizer, "head": "verbalizer"},
                          data={"few_shot": {"k": 4}, "label_examples": True})
    cfg = load_config(config)
    data = prepare(cfg, load_tokenizer(cfg.model, cfg.base_dir))
    rows = data["train"].rows
    assert len(rows) == 2 * 4 + 3 and rows[-3:] == [{"text": "a terrible film", "label": "negative"},
                                                   {"text": "a great film", "label": "positive"},
                                                   {"text": "great", "label": "positive"}]
    assert data.report["label_examples"] == 3
    assert not {r["text"] for r in data["validation"].rows + data["test"].rows} & {"great", "a great film", "a terrible film"}
    saved = [json.loads(line) for line in (cfg.run_dir / "data" / "train.jsonl").read_text().splitlines()]
    assert saved == rows  # what training read, for reruns and demonstrations
    off = prepare(load_config(config, ["data.label_examples=false"]), load_tokenizer(cfg.model, cfg.base_dir))
    assert len(off["train"].rows) == 2 * 4 and "label_examples" not in off.report  # the fingerprint saw the change
