"""Predict: CSV→CSV, JSONL→JSONL, stdin→stdout; input columns kept, probabilities added, unfinished runs refused."""

from __future__ import annotations

import csv
import io
import json
import shutil
import sys

import pytest
from test_cli import error_line, run_main

from promptft_cli import runs
from promptft_cli.errors import PromptftError
from promptft_cli.inference.predict import Predictor, csv_safe

ADDED = ["prediction", "confidence", "prob_negative", "prob_positive"]
TEXTS = ["it was great", "this film is terrible . a long , long , dull and boring review of it", "bad", "good good"]


@pytest.fixture(scope="module")
def predictor(trained_run):
    return Predictor.from_run(trained_run)


def check_row(row: dict, predictor) -> None:
    probs = [float(row[f"prob_{label}"]) for label in predictor.labels]
    assert sum(probs) == pytest.approx(1, abs=1e-5)
    assert row["prediction"] == predictor.labels[probs.index(max(probs))]
    assert float(row["confidence"]) == pytest.approx(max(probs), abs=1e-6)


def test_predictor_order_and_batching(predictor):
    """Length-sorted batches must not reorder results: each row scored alone gives the same answer."""
    rows = [{"text": t} for t in TEXTS]
    together = predictor.proba(rows, batch_size=3)
    for row, probs in zip(rows, together):
        assert predictor.proba([row], batch_size=1)[0] == pytest.approx(probs, abs=1e-5)
    assert predictor.labels == ["negative", "positive"]


def test_csv_to_csv_keeps_input_columns(monkeypatch, capsys, trained_run, predictor, tmp_path):
    source = tmp_path / "in.csv"
    with source.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "text", "source"])
        writer.writerows([[i, t, "=HYPERLINK()" if i == 1 else "web"] for i, t in enumerate(TEXTS)])
    code, out, _ = run_main(monkeypatch, capsys, "predict", trained_run, source, "-o", tmp_path / "out.csv")
    assert code == 0 and out == ""
    with (tmp_path / "out.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["id", "text", "source", *ADDED]
    assert [r["text"] for r in rows] == TEXTS and [r["id"] for r in rows] == ["0", "1", "2", "3"]
    assert rows[1]["source"] == "'=HYPERLINK()"  # a formula is neutralised, not run by a spreadsheet
    for row in rows:
        check_row(row, predictor)


def test_jsonl_to_jsonl(monkeypatch, capsys, trained_run, predictor, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": t, "meta": {"n": i}}) + "\n" for i, t in enumerate(TEXTS)))
    code, _, _ = run_main(monkeypatch, capsys, "predict", trained_run, source, "-o", tmp_path / "out.jsonl",
                          "--batch-size", "2")
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert code == 0 and len(rows) == len(TEXTS)
    assert list(rows[0]) == ["text", "meta", *ADDED] and rows[2]["meta"] == {"n": 2}
    for row in rows:
        check_row(row, predictor)


def test_rescoring_a_predictions_file_keeps_its_columns(monkeypatch, capsys, trained_run, predictor, tmp_path):
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    assert run_main(monkeypatch, capsys, "predict", trained_run, tmp_path / "in.jsonl", "-o", first)[0] == 0
    assert run_main(monkeypatch, capsys, "predict", trained_run, first, "-o", second)[0] == 0
    before = [json.loads(line) for line in first.read_text().splitlines()]
    after = [json.loads(line) for line in second.read_text().splitlines()]
    assert list(after[0]) == ["text", *(f"input_{c}" for c in ADDED), *ADDED]
    assert [r["input_prediction"] for r in after] == [r["prediction"] for r in before]


def test_stdin_to_stdout(monkeypatch, capsys, trained_run, predictor):
    lines = "".join(json.dumps({"text": t}) + "\n" for t in TEXTS)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(lines.encode())))
    code, out, err = run_main(monkeypatch, capsys, "predict", trained_run, "-")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["text"] for r in rows] == TEXTS and "Traceback" not in err
    for row in rows:
        check_row(row, predictor)


def test_predict_input_problems(monkeypatch, capsys, trained_run, tmp_path):
    (tmp_path / "in.csv").write_text("review\nnice\n")
    code, _, err = run_main(monkeypatch, capsys, "predict", trained_run, tmp_path / "in.csv")
    line = error_line(err)
    assert code == 2 and "in.csv:" in line and "field 'text'" in line and "columns found: review" in line
    code, _, err = run_main(monkeypatch, capsys, "predict", trained_run, tmp_path / "none.csv")
    assert code == 2 and "none.csv" in error_line(err)


@pytest.mark.parametrize("status", ["running", "failed", "interrupted"])
def test_unfinished_run_is_refused(trained_run, tmp_path, status):
    run_dir = shutil.copytree(trained_run, tmp_path / "run")
    runs.RunInfo.mark(run_dir, status, "stopped")
    with pytest.raises(PromptftError, match=f"run is {status}, not complete") as info:
        Predictor.from_run(run_dir)
    assert info.value.file == str(run_dir)


def test_run_without_run_json_is_refused(trained_run, tmp_path):
    run_dir = shutil.copytree(trained_run, tmp_path / "run")
    (run_dir / runs.RUN_INFO).unlink()
    with pytest.raises(PromptftError, match="not a finished run"):
        Predictor.from_run(run_dir)


def test_csv_safe():
    assert [csv_safe(v) for v in ["=1+1", "+x", "-2", "@a", "plain", 3]] == ["'=1+1", "'+x", "'-2", "'@a", "plain", 3]
