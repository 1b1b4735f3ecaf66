"""Inference at scale: `--quantize int8` (serve and predict) and `predict` sharded over 2 launched processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import error_line, run_main

from promptft_cli.errors import PromptftError
from promptft_cli.inference.predict import Predictor
from promptft_cli.inference.sharded import merge_parts

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["it was great", "terrible film , bad", "a good movie", "bad bad", "the film was fantastic", "not good", "meh"]


def test_int8_quantizes_every_linear_and_keeps_the_answers(trained_run):
    from torch import nn

    floating, quantized = Predictor.from_run(trained_run), Predictor.from_run(trained_run, quantize="int8")
    kinds = {type(m).__name__ for m in quantized.model.modules()}
    assert "DynamicQuantizedLinear" in kinds or "Linear" in kinds
    assert not any(type(m) is nn.Linear for m in quantized.model.modules())  # LoRA merged, then quantized
    rows = [{"text": t} for t in TEXTS]
    p, q = floating.proba(rows), quantized.proba(rows)
    assert (p.argmax(1) == q.argmax(1)).mean() >= 0.85
    assert abs(p - q).max() < 0.1


def test_quantize_refusals_say_why(trained_run, monkeypatch):
    with pytest.raises(PromptftError, match="unknown quantization 'int4'") as err:
        Predictor.from_run(trained_run, quantize="int4")
    assert err.value.field == "--quantize"
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(PromptftError, match="CPU inference"):
        Predictor.from_run(trained_run, quantize="int8")


def test_predict_cli_with_int8(monkeypatch, capsys, trained_run, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    code, _, _ = run_main(monkeypatch, capsys, "predict", trained_run, source, "-o", tmp_path / "out.jsonl",
                          "--quantize", "int8")
    assert code == 0
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == TEXTS and all("prediction" in r for r in rows)
    code, _, err = run_main(monkeypatch, capsys, "predict", trained_run, source, "--quantize", "fp4")
    assert code == 2 and "unknown quantization" in error_line(err)


def test_parts_merge_back_into_input_order(tmp_path):
    parts = [tmp_path / f"p{r}" for r in range(3)]
    for r, part in enumerate(parts):
        part.write_text("".join(json.dumps({"i": i}) + "\n" for i in range(r, 7, 3)))
    assert [row["i"] for row in merge_parts(parts)] == list(range(7))


def _gloo_available() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_gloo_available()


@pytest.mark.multiprocess
@pytest.mark.skipif(not _gloo_available(), reason="torch.distributed with the gloo backend is unavailable")
def test_two_process_predict_writes_one_file_in_input_order(trained_run, tmp_path, monkeypatch, capsys):
    from factories import write_csv

    source = write_csv(tmp_path / "in.csv", [{"id": str(i), "text": t} for i, t in enumerate(TEXTS * 3)])  # 21: odd
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    out = tmp_path / "out" / "pred.csv"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "promptft_cli", "predict", str(trained_run), str(source), "-o", str(out), "--batch-size", "4"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in out.parent.iterdir()) == ["pred.csv"]  # the parts are gone

    code, _, _ = run_main(monkeypatch, capsys, "predict", trained_run, source, "-o", tmp_path / "single.csv")
    assert code == 0
    assert out.read_text() == (tmp_path / "single.csv").read_text()
    assert out.read_text().count("\n") == 22
