"""The CLI end to end on the toy project, and every bad input: exit 2, one line naming file, line and field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from factories import toy_sentiment_rows, write_config, write_csv

from promptft_cli.cli import commands as cli


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Call the console entry point as the shell would; returns (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["promptft", *map(str, args)])
    monkeypatch.setattr(cli, "_verbosity", 0)
    with pytest.raises(SystemExit) as exit_:
        cli.main()
        raise SystemExit(0)
    out, err = capsys.readouterr()
    return exit_.value.code or 0, out, err


def error_line(err: str) -> str:
    """The one error line, after checking that nothing else that looks like a failure was printed."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(autouse=True)
def no_plots(monkeypatch):
    """Figures cost seconds per run and are tested in test_plots.py."""
    monkeypatch.setattr("promptft_cli.training.loop.plots.write_run_plots", lambda *a, **k: [])


def test_all_four_commands_on_the_toy_project(monkeypatch, capsys, toy_project, tiny_encoder):
    folder = toy_project.parent
    # A model path relative to the config: evaluate and predict must still find it from the run directory.
    (folder / "models").mkdir()
    (folder / "models" / "tiny").symlink_to(tiny_encoder)
    write_config(folder, Path("models/tiny"), data={"train": "train.csv", "test": "test.csv"})
    monkeypatch.chdir("/")
    code, out, err = run_main(monkeypatch, capsys, "prepare", toy_project)
    assert code == 0 and "prepared data" in out and "train" in out and "Traceback" not in err
    assert (folder / "run" / "data" / "train.jsonl").is_file()

    code, out, err = run_main(monkeypatch, capsys, "train", toy_project, "--set", "train.epochs=1", "--json")
    result = json.loads(out)
    assert code == 0 and set(result) >= {"accuracy", "macro_f1", "per_class", "confusion_matrix", "n", "run_dir"}
    assert result["n"] == 20 and json.loads((folder / "run" / "run.json").read_text())["status"] == "complete"

    code, out, _ = run_main(monkeypatch, capsys, "evaluate", folder / "run")
    assert code == 0 and "accuracy" in out and "confusion matrix" in out and "per class" in out

    write_csv(folder / "new.csv", [{"id": "7", "text": "it was great"}, {"id": "8", "text": "terrible film"}])
    code, out, _ = run_main(monkeypatch, capsys, "predict", folder / "run", folder / "new.csv", "-o", folder / "out.csv")
    assert code == 0 and out == ""
    header = (folder / "out.csv").read_text().splitlines()[0]
    assert header == "id,text,prediction,confidence,prob_negative,prob_positive"

    # A finished run is never replaced silently; --overwrite replaces it.
    code, _, err = run_main(monkeypatch, capsys, "train", toy_project, "--set", "train.epochs=1")
    line = error_line(err)
    assert code == 2 and str(folder / "run") in line and "--overwrite" in line
    code, _, err = run_main(monkeypatch, capsys, "prepare", toy_project)
    assert code == 2 and "--overwrite" in error_line(err)
    code, out, _ = run_main(monkeypatch, capsys, "train", toy_project, "--set", "train.epochs=1", "--overwrite", "--json")
    assert code == 0 and json.loads(out)["n"] == 20


def test_help_and_version_exit_zero(monkeypatch, capsys):
    code, out, _ = run_main(monkeypatch, capsys, "--help")
    assert code == 0 and all(c in out for c in ("prepare", "train", "evaluate", "predict"))
    code, out, _ = run_main(monkeypatch, capsys, "--version")
    assert code == 0 and out.startswith("promptft ")


def test_usage_error_exits_2(monkeypatch, capsys):
    code, _, err = run_main(monkeypatch, capsys, "train")
    assert code == 2 and "Traceback" not in err and "Missing argument" in err


# --- bad input: one case per item of the list ---


def project(tmp_path, model_dir, files: dict[str, str | bytes], **sections) -> Path:
    for name, content in files.items():
        path = tmp_path / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content, encoding="utf-8")
    return write_config(tmp_path, model_dir, **sections)


GOOD_CSV = "text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in toy_sentiment_rows(20))


@pytest.mark.parametrize(
    ("files", "sections", "file", "row", "field", "words"),
    [
        pytest.param({}, {"data": {"train": "nope.csv"}}, "nope.csv", None, "data.train", "not found", id="missing-file"),
        pytest.param({"train.csv": ""}, {}, "train.csv", None, None, "empty", id="empty-file"),
        pytest.param({"train.csv": "review,label\ngood,pos\n"}, {}, "train.csv", 1, "text", "columns found: review, label",
                     id="missing-text-column"),
        pytest.param({"train.csv": "text,sentiment\ngood,pos\n"}, {}, "train.csv", 1, "label", "columns found: text, sentiment",
                     id="missing-label-column"),
        pytest.param({"train.jsonl": '{"text": "a", "label": "x"}\n{"text": "b", "label": "y"\n'},
                     {"data": {"train": "train.jsonl"}}, "train.jsonl", 2, None, "malformed JSON", id="malformed-jsonl"),
        pytest.param({"train.csv": b"text,label\ngood,pos\nbad\xe9,neg\n"}, {}, "train.csv", 3, None, "byte offset 23",
                     id="undecodable-bytes"),
        pytest.param({"train.csv": GOOD_CSV, "test.csv": "text,label\nit was ok,neutral\n"},
                     {"data": {"train": "train.csv", "test": "test.csv"}}, "test.csv", 2, "label", "'neutral'",
                     id="label-not-in-train"),
        pytest.param({"train.csv": GOOD_CSV, "validation.csv": "text,label\nfine,positive\nmeh,neutral\n"},
                     {"data": {"train": "train.csv", "validation": "validation.csv"}}, "validation.csv", 3, "label",
                     "'neutral'", id="validation-label-not-in-train"),
        pytest.param({"train.csv": "text,label\na,pos\nb,pos\nc,pos\nd,pos\ne,pos\n"}, {}, "train.csv", None, "label",
                     "at least 2 classes", id="one-class"),
        pytest.param({"train.csv": GOOD_CSV}, {"data": {"train": "train.csv", "few_shot": {"k": 50}}}, "train.csv", None,
                     "data.few_shot.k", "only", id="few-shot-k-too-large"),
        pytest.param({"train.csv": GOOD_CSV}, {"trainn": {"epochs": 1}}, "config.yaml", "trainn:", "trainn", "did you mean 'train'",
                     id="unknown-config-key"),
        pytest.param({"train.csv": GOOD_CSV}, {"train": {"epochs": "many"}}, "config.yaml", "  epochs:", "train.epochs", "integer",
                     id="wrong-value-type"),
        pytest.param({"train.csv": GOOD_CSV}, {"model": {"name": "./no-such-model"}}, "no-such-model", None, "model.name",
                     "does not exist", id="model-path-missing"),
    ],
)
@pytest.mark.parametrize("command", ["prepare", "train"])
def test_bad_input_is_one_line_and_exit_2(monkeypatch, capsys, tmp_path, tiny_encoder, files, sections, file, row,
                                          field, words, command):
    config = project(tmp_path, tiny_encoder, files, **sections)
    code, out, err = run_main(monkeypatch, capsys, command, config)
    line = error_line(err)
    assert code == 2 and out == ""
    assert file in line and words in line
    if isinstance(row, str):  # the line of the config key that starts with `row`
        row = next(i for i, text in enumerate(config.read_text().splitlines(), 1) if text.startswith(row))
    if row is not None:
        assert f"{file}:{row}:" in line
    if field is not None:
        assert f"field '{field}'" in line
    if command == "train" and (tmp_path / "run" / "run.json").exists():  # nothing claims to be finished
        assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "failed"


def test_bad_override_on_the_command_line(monkeypatch, capsys, toy_project):
    code, _, err = run_main(monkeypatch, capsys, "train", toy_project, "--set", "train.lr=fast")
    assert code == 2 and "field 'train.lr'" in error_line(err)
    code, _, err = run_main(monkeypatch, capsys, "train", toy_project, "--set", "train.lr")
    assert code == 2 and "KEY=VALUE" in error_line(err)


def test_missing_config_file(monkeypatch, capsys, tmp_path):
    code, _, err = run_main(monkeypatch, capsys, "train", tmp_path / "nope.yaml")
    assert code == 2 and "nope.yaml" in error_line(err)


def test_evaluate_and_predict_need_a_finished_run(monkeypatch, capsys, tmp_path):
    code, _, err = run_main(monkeypatch, capsys, "evaluate", tmp_path)
    assert code == 2 and "not a finished run" in error_line(err)
    (tmp_path / "in.csv").write_text("text\nhello\n")
    code, _, err = run_main(monkeypatch, capsys, "predict", tmp_path / "missing-run", tmp_path / "in.csv")
    assert code == 2 and "missing-run" in error_line(err)


@pytest.mark.parametrize(
    ("config_text", "words"),
    [("data:\n  train: t.csv\ntrian: {}\n", "did you mean 'train'"), ("data: [\n", "invalid YAML")],
)
def test_real_process_prints_one_line_without_traceback(tmp_path, config_text, words):
    config = tmp_path / "config.yaml"
    config.write_text(config_text)
    proc = subprocess.run([sys.executable, "-m", "promptft_cli", "train", str(config)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: {config}:") and words in proc.stderr


def test_prepare_and_train_with_label_examples(monkeypatch, capsys, toy_project):
    """--set data.label_examples=true: prepare reports the added descriptions, train learns from them too."""
    verbalizer = "prompt.verbalizer={positive: [a great film, lovely], negative: [an awful film]}"
    args = ["--set", verbalizer, "--set", "prompt.head=verbalizer", "--set", "data.label_examples=true"]
    code, out, err = run_main(monkeypatch, capsys, "prepare", toy_project, *args)
    assert code == 0 and "3 label descriptions added as examples" in out, err
    code, out, _ = run_main(monkeypatch, capsys, "prepare", toy_project, *args, "--json", "--overwrite")
    report = json.loads(out)
    assert report["label_examples"] == 3 and report["splits"]["train"]["rows"] == 72 + 3  # 80 rows less the held-out validation 10 %
    code, out, _ = run_main(monkeypatch, capsys, "train", toy_project, *args, "--set", "train.epochs=1", "--json", "--overwrite")
    assert code == 0 and json.loads(out)["n"] == 20
    rows = [json.loads(line) for line in (toy_project.parent / "run" / "data" / "train.jsonl").read_text().splitlines()]
    assert {"text": "an awful film", "label": "negative"} in rows
