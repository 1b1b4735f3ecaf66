"""benchmarks/generation.py hands promptft configs that validate, and the reference the same job."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from promptft_cli.config import validate_config

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("row", ["zero_shot", "zero_shot_3_demos", "prompt_tuning", "prefix_tuning", "lora", "full"])
def test_every_benchmark_row_is_a_valid_promptft_config(tmp_path, row):
    bench = _load("generation")
    plan = {**bench.QUICK, **bench.LENGTHS}
    files = {s: str(tmp_path / f"{s}.csv") for s in ("train", "validation", "test")}
    cfg = validate_config(bench.promptft_config({"row": row, "files": files, "plan": plan, "work": str(tmp_path / row)}))
    assert cfg.task == "generation" and cfg.model.name == "default-lm" and cfg.prompt.chat
    assert cfg.train.lr == bench.LR.get(row, 1e-3) and cfg.generate.max_new_tokens == plan["max_new_tokens"]
    assert (cfg.prompt.demonstrations is not None) == (row == "zero_shot_3_demos")


def test_subsets_are_seeded_and_disjoint(tmp_path):
    import csv

    bench = _load("generation")
    data = tmp_path / "multi30k"
    data.mkdir()
    for split, n in (("train", 50), ("test", 20)):
        with open(data / f"{split}.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["source", "target"])
            writer.writerows([f"{split} {i}", f"ziel {i}"] for i in range(n))
    plan = {**bench.QUICK, **bench.LENGTHS}
    first = bench.write_subsets(data, tmp_path / "a", plan)
    again = bench.write_subsets(data, tmp_path / "b", plan)
    rows = {k: bench.read_pairs(v) for k, v in first.items()}
    assert rows == {k: bench.read_pairs(v) for k, v in again.items()}
    assert len(rows["train"]) == plan["train_size"] and len(rows["validation"]) == plan["val_size"]
    assert not {r["source"] for r in rows["train"]} & {r["source"] for r in rows["validation"]}
    assert [r["source"] for r in rows["test"]] == [f"test {i}" for i in range(plan["test_size"])]  # the first rows
    assert list(rows["throughput"][0]) == ["source"]


def test_reference_prompt_puts_demonstrations_as_earlier_turns():
    ref = _load("reference_generation")

    class Tok:
        def apply_chat_template(self, messages, add_generation_prompt, tokenize):
            return "|".join(f"{m['role']}:{m['content']}" for m in messages) + ("|assistant:" if add_generation_prompt else "")

        def __call__(self, text, add_special_tokens):
            return {"input_ids": list(text)}

    args = ref.parse_args(["--method", "zero_shot", "--train", "t", "--validation", "v", "--test", "x", "--max-length", "1000"])
    text = "".join(ref.prompt_ids(Tok(), args, "A dog.", [{"source": "A cat.", "target": "Eine Katze."}]))
    assert text == ("user:Translate English to German: A cat.|assistant:Eine Katze.|"
                    "user:Translate English to German: A dog.|assistant:")
