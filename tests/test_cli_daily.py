"""Daily-use commands end to end: runs, compare, init, config show, evaluate's files, --json, exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_cli import run_main
from test_run_table import RUN_KEYS, fake_run

from promptft_cli import runs
from promptft_cli.cli import commands as cli
from promptft_cli.config import load_config


@pytest.fixture
def run_copy(trained_run, tmp_path):
    return shutil.copytree(trained_run, tmp_path / "lora")


def test_runs_json_and_table(monkeypatch, capsys, tmp_path):
    fake_run(tmp_path / "a")
    fake_run(tmp_path / "b", status="failed")
    code, out, _ = run_main(monkeypatch, capsys, "runs", str(tmp_path), "--json")
    rows = json.loads(out)["runs"]
    assert code == 0 and [r["name"] for r in rows] == ["a", "b"] and set(rows[0]) == RUN_KEYS
    code, out, _ = run_main(monkeypatch, capsys, "runs", str(tmp_path))
    header = next(line for line in out.splitlines() if line.startswith("name"))
    for column in ("task", "model", "method", "head", "k/seeds", "best val", "test acc", "macro-F1", "time", "params", "ckpt", "status"):
        assert column in header
    assert "acc 0.900" in out and "failed" in out and "2.9 KB" in out


def test_compare_json_and_highlighting(monkeypatch, capsys, tmp_path):
    a, b = fake_run(tmp_path / "a", lr=0.01), fake_run(tmp_path / "b", lr=0.002, accuracy=0.9)
    code, out, _ = run_main(monkeypatch, capsys, "compare", str(a), str(b), "--json")
    data = json.loads(out)
    assert code == 0 and data["differences"] == {"train.lr": [0.01, 0.002]} and len(data["runs"]) == 2
    code, out, _ = run_main(monkeypatch, capsys, "compare", str(a), str(b))
    assert "train.lr" in out and "train.epochs" not in out and "config keys are the same" in out
    code, out, _ = run_main(monkeypatch, capsys, "compare", str(a), str(b), "--all")
    assert "train.epochs" in out


def test_init_then_config_show(monkeypatch, capsys, tmp_path):
    target = tmp_path / "topic.yaml"
    code, out, _ = run_main(monkeypatch, capsys, "init", "topic", "-o", str(target), "--json")
    assert code == 0 and json.loads(out) == {"config": str(target), "template": "topic", "run": f"promptft train {target}"}
    code, out, _ = run_main(monkeypatch, capsys, "config", "show", str(target), "--set", "train.epochs=2")
    shown = yaml.safe_load(out)
    assert shown == load_config(target, ["train.epochs=2"]).dump() and shown["train"]["epochs"] == 2
    assert shown["train"]["weight_decay"] == 0.0  # a default the starter does not write is shown too
    code, out, _ = run_main(monkeypatch, capsys, "config", "show", str(target), "--json")
    assert json.loads(out)["method"] == {"name": "full"} and json.loads(out)["train"]["lr"] == 5e-5


@pytest.mark.parametrize("args,message", [
    (["runs", "{tmp}/missing"], "folder not found"),
    (["compare", "{tmp}"], "at least two"),
    (["init", "sentimnt", "-o", "{tmp}/x.yaml"], "did you mean 'sentiment'"),
    (["config", "show", "{tmp}/bad.yaml"], "unknown key 'epochz'"),
    (["config", "show", "{tmp}/bad.yaml", "--set", "train.lr=-1"], "greater than 0"),
])
def test_bad_input_exits_2_with_one_line(monkeypatch, capsys, tmp_path, args, message):
    (tmp_path / "bad.yaml").write_text("data: {train: t.csv}\ntrain: {epochz: 3}\n")
    if "train.lr=-1" in args:
        (tmp_path / "bad.yaml").write_text("data: {train: t.csv}\n")
    code, out, err = run_main(monkeypatch, capsys, *[a.format(tmp=tmp_path) for a in args])
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_evaluate_writes_json_and_plot_side_by_side(monkeypatch, capsys, run_copy, tmp_path):
    from test_plots import assert_png

    code, out, err = run_main(monkeypatch, capsys, "evaluate", str(run_copy), "--json", "--min-accuracy", "0")
    payload = json.loads(out)
    assert code == 0 and payload["files"] == [str(run_copy / "evaluation.json"), str(run_copy / "evaluation_confusion_matrix.png")]
    saved = runs.read_json(run_copy / "evaluation.json")
    assert saved["accuracy"] == payload["accuracy"] == runs.read_json(run_copy / runs.METRICS)["accuracy"]
    assert_png(run_copy / "evaluation_confusion_matrix.png")
    labelled = tmp_path / "holdout.csv"
    labelled.write_text("text,label\nthe movie was great,positive\nit was bad,negative\n")
    code, out, err = run_main(monkeypatch, capsys, "evaluate", str(run_copy), "--data", str(labelled))
    assert code == 0 and (run_copy / "evaluation-holdout.json").is_file() and (run_copy / "evaluation-holdout_confusion_matrix.png").is_file()
    assert runs.read_json(run_copy / "evaluation-holdout.json")["n"] == 2
    code, out, err = run_main(monkeypatch, capsys, "evaluate", str(run_copy), "--min-accuracy", "1.01")
    assert code == 1 and "gate failed" in err


def test_predict_json_summary(monkeypatch, capsys, run_copy, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("text\ngreat film\nawful movie\nit was fine\n")
    code, out, _ = run_main(monkeypatch, capsys, "predict", str(run_copy), str(source), "-o", str(tmp_path / "out.csv"), "--json")
    assert code == 0 and json.loads(out) == {"rows": 3, "output": str(tmp_path / "out.csv")}


def test_train_in_a_pipe_shows_no_bars_and_verbose_shows_epochs(toy_project):
    """A real `promptft -v train` with stderr piped: status and per-epoch log lines, no progress bar."""
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "promptft_cli", "-v", "train", str(toy_project), "--set", "train.epochs=1"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "training head + linear head" in proc.stderr and "epoch 1: accuracy=" in proc.stderr
    assert "━" not in proc.stderr and "ex/s" not in proc.stderr and "\r" not in proc.stderr
    assert "LOAD REPORT" not in proc.stderr and "FutureWarning" not in proc.stderr
    assert "accuracy" in proc.stdout  # the result table


def test_shell_completion_lists_commands_and_starters():
    exe = Path(sys.executable).parent / "promptft"
    if not exe.exists():
        pytest.skip("console script not installed")
    env = {**os.environ, "_PROMPTFT_COMPLETE": "complete_bash", "COMP_WORDS": "promptft co", "COMP_CWORD": "1"}
    assert set(subprocess.run([str(exe)], env=env, capture_output=True, text=True).stdout.split()) == {"compare", "config"}
    env.update(COMP_WORDS="promptft init p", COMP_CWORD="2")
    assert subprocess.run([str(exe)], env=env, capture_output=True, text=True).stdout.split() == ["pair"]


def test_help_documents_exit_codes_and_every_command_has_json(monkeypatch, capsys):
    from typer.testing import CliRunner

    result = CliRunner().invoke(cli.app, ["--help"], env={"COLUMNS": "200"})
    assert "Exit codes" in result.output and "130" in result.output and "--install-completion" in result.output
    commands = ["prepare", "train", "evaluate", "predict", "runs", "compare", "init", ["config", "show"]]
    for command in commands:
        args = command if isinstance(command, list) else [command]
        assert "--json" in CliRunner().invoke(cli.app, [*args, "--help"], env={"COLUMNS": "200"}).output, command


def test_missing_tracker_stops_before_the_run_starts(monkeypatch, capsys, toy_project):
    from promptft_cli.training import tracking

    real = tracking.importlib.util.find_spec
    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda name: None if name == "mlflow" else real(name))
    code, _, err = run_main(monkeypatch, capsys, "train", str(toy_project), "--set", "train.report_to=[mlflow]")
    assert code == 2 and "pip install 'promptft[mlflow]'" in err and "field 'train.report_to'" in err
    assert not (toy_project.parent / "run").exists()
