"""Generation end to end through the CLI on a tiny GPT-2: train, evaluate, predict, gates, and every bad input."""

from __future__ import annotations

import csv
import json

import pytest
import yaml
from factories import toy_translation_rows, write_csv
from test_cli import error_line, run_main

from promptft_cli import runs


@pytest.fixture(autouse=True)
def no_plots(monkeypatch):
    monkeypatch.setattr("promptft_cli.training.loop.plots.write_run_plots", lambda *a, **k: [])


def project(tmp_path, model, **sections):
    write_csv(tmp_path / "train.csv", toy_translation_rows(24))
    rows = [{**r, "references": f"{r['target']} ||| {r['target']} ja"} for r in toy_translation_rows(6, seed=1)]
    write_csv(tmp_path / "test.csv", rows)
    cfg = {"task": "generation", "model": {"name": str(model), "max_length": 24, "max_target_length": 8},
           "data": {"train": "train.csv", "test": "test.csv", "text_column": "source"},
           "prompt": {"template": "translate: {source} =>"}, "method": {"name": "lora", "r": 2},
           "train": {"epochs": 2, "batch_size": 8, "lr": 0.01}, "generate": {"max_new_tokens": 4}, "output_dir": "run"}
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) and key != "method" else value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_generators):
    """One tiny LoRA generation run through the library entry (shared by the evaluate/predict tests)."""
    from promptft_cli.config import load_config
    from promptft_cli.training.loop import train

    config = project(tmp_path_factory.mktemp("gen-run"), tiny_generators["gpt2"])
    return config, train(load_config(config))


def test_train_writes_a_complete_generation_run(trained):
    config, result = trained
    run_dir = result.run_dir
    metrics = runs.read_json(run_dir / runs.METRICS)
    assert {"bleu", "chrf", "rouge1", "rouge2", "rougeL", "exact_match", "signatures"} <= set(metrics)
    assert metrics["max_references"] == 2 and "nrefs:2" in metrics["signatures"]["bleu"]
    assert len(metrics["per_example"]["chrf"]) == metrics["n"] == 6
    history = [json.loads(line) for line in (run_dir / runs.HISTORY).read_text().splitlines()]
    assert any("val_chrf" in h for h in history) and any("loss" in h and "step" in h for h in history)
    card = (run_dir / "README.md").read_text()
    assert "pipeline_tag: text-generation" in card and "chrF++" in card
    assert (run_dir / runs.CHECKPOINT / "adapter_model.safetensors").exists()


def test_evaluate_reproduces_the_test_metrics_and_gates(monkeypatch, capsys, trained):
    config, result = trained
    code, out, err = run_main(monkeypatch, capsys, "evaluate", result.run_dir, "--json", "--min-metric", "chrf=0")
    assert code == 0, err
    scored = json.loads(out)
    assert scored["chrf"] == pytest.approx(result.metrics["chrf"])  # the reloaded run generates the same text
    code, _, err = run_main(monkeypatch, capsys, "evaluate", result.run_dir, "--min-metric", "chrf=101")
    assert code == 1 and "below --min-metric chrf=101" in err


def test_predict_adds_generation_columns(monkeypatch, capsys, trained, tmp_path):
    config, result = trained
    write_csv(tmp_path / "in.csv", [{"id": "1", "source": "the cat sleeps"}, {"id": "2", "source": "a house"}])
    out_file = tmp_path / "out.csv"
    code, _, err = run_main(monkeypatch, capsys, "predict", result.run_dir, tmp_path / "in.csv", "-o", out_file,
                            "--set", "generate.num_beams=2", "--set", "generate.num_return_sequences=2")
    assert code == 0, err
    rows = list(csv.DictReader(out_file.open(encoding="utf-8")))
    assert [r["id"] for r in rows] == ["1", "2"] and set(rows[0]) == {"id", "source", "generation", "generation_2"}
    code, out, err = run_main(monkeypatch, capsys, "predict", result.run_dir, tmp_path / "in.csv")
    assert code == 0 and [set(json.loads(line)) for line in out.splitlines()] == [{"id", "source", "generation"}] * 2


def test_cli_train_then_zero_shot_evaluate_of_a_config(monkeypatch, capsys, tmp_path, tiny_generators):
    config = project(tmp_path, tiny_generators["t5"], method={"name": "prompt_tuning", "num_virtual_tokens": 2,
                                                              "init": "random"}, train={"epochs": 1})
    code, out, err = run_main(monkeypatch, capsys, "evaluate", config, "--json")
    assert code == 0, err
    assert json.loads(out)["zero_shot"] is True and not (tmp_path / "run" / runs.METRICS).exists()
    code, out, err = run_main(monkeypatch, capsys, "train", config, "--json", "--overwrite")
    assert code == 0, err
    assert "chrf" in json.loads(out) and runs.RunInfo.load(tmp_path / "run").status == "complete"


BAD = [
    ({"data": {"target_column": "german"}}, "missing column 'german'; columns found: source, target", "german"),
    ({"prompt": {"template": "{source} It was {mask}."}}, "mask", "prompt.template"),
    ({"generate": {"num_beams": 0}}, "greater than or equal to 1", "generate.num_beams"),
    ({"generate": {"do_sample": True, "temperature": 0}}, "temperature must be > 0", "generate.temperature"),
    ({"generate": {"max_new_tokens": 200}}, "positions", "generate.max_new_tokens"),
    ({"train": {"early_stopping": {"metric": "accuracy"}}}, "not a validation metric", "train.early_stopping.metric"),
    ({"method": {"name": "head"}}, "classification head", "method.name"),
]


@pytest.mark.parametrize("sections,message,field", BAD, ids=[b[2] for b in BAD])
def test_bad_input_is_one_line_naming_the_field(monkeypatch, capsys, tmp_path, tiny_generators, sections, message, field):
    config = project(tmp_path, tiny_generators["gpt2"], **sections)
    code, _, err = run_main(monkeypatch, capsys, "train", config)
    line = error_line(err)
    assert code == 2 and message in line and f"field '{field}'" in line
    assert not (tmp_path / "run" / runs.CHECKPOINT).exists()


def test_encoder_only_model_is_rejected(monkeypatch, capsys, tmp_path, tiny_encoder):
    code, _, err = run_main(monkeypatch, capsys, "train", project(tmp_path, tiny_encoder))
    line = error_line(err)
    assert code == 2 and "cannot generate" in line and "field 'model.name'" in line


def test_unknown_gate_metric_exits_2(monkeypatch, capsys, trained):
    _, result = trained
    for option in (["--min-metric", "accuracy=0.5"], ["--min-accuracy", "0.5"], ["--min-metric", "bleu"]):
        code, _, err = run_main(monkeypatch, capsys, "evaluate", result.run_dir, *option)
        assert code == 2 and option[0] in error_line(err)
