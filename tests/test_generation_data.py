"""Generation data: target column, empty targets, references, few-shot sampling, the prepare report."""

from __future__ import annotations

import pytest
from factories import toy_translation_rows, write_csv

from promptft_cli.config import validate_config
from promptft_cli.data.generation import load_generation_splits
from promptft_cli.data.prepare import prepare
from promptft_cli.errors import PromptftError


def config(tmp_path, model, **data):
    cfg = validate_config({"task": "generation", "model": {"name": str(model), "max_length": 32, "max_target_length": 4},
                           "data": {"train": "train.csv", "text_column": "source", **data},
                           "prompt": {"template": "translate: {source} =>"}, "output_dir": "run"})
    cfg.base_dir = tmp_path
    return cfg


def test_missing_target_column_lists_the_columns_found(tmp_path, tiny_generators):
    write_csv(tmp_path / "train.csv", [{"source": "a", "german": "b"}])
    with pytest.raises(PromptftError, match="missing column 'target'; columns found: source, german") as err:
        load_generation_splits(config(tmp_path, tiny_generators["gpt2"]).data, lambda p: tmp_path / p, 1)
    assert err.value.field == "target" and err.value.file.endswith("train.csv")


def test_empty_targets_are_dropped_and_counted(tmp_path, tiny_generators):
    rows = toy_translation_rows(20)
    rows[3]["target"] = rows[7]["target"] = " "
    write_csv(tmp_path / "train.csv", rows)
    data = prepare(config(tmp_path, tiny_generators["gpt2"]))
    assert data.report["dropped"]["train"]["empty_target"] == 2
    assert data.report["dropped"]["train"]["empty_target_lines"] == [5, 9]  # header is line 1
    assert sum(len(data[s].rows) for s in ("train", "validation", "test")) == 18


def test_prepare_reports_target_lengths_and_the_share_truncated(tmp_path, tiny_generators):
    write_csv(tmp_path / "train.csv", toy_translation_rows(20))
    report = prepare(config(tmp_path, tiny_generators["gpt2"])).report
    targets = report["splits"]["train"]["target_tokens"]
    assert report["max_target_length"] == 4
    assert targets["max"] > 4 and 0 < targets["truncated_share"] <= 1  # " die katze" + end is over 4 tokens
    assert (tmp_path / "run" / "data_report.json").exists()


def test_references_are_kept_and_few_shot_samples_k_examples_in_all(tmp_path, tiny_generators):
    rows = [{**r, "references": f"{r['target']} ||| eine {r['target']}"} for r in toy_translation_rows(30)]
    write_csv(tmp_path / "train.csv", rows)
    data = load_generation_splits(config(tmp_path, tiny_generators["gpt2"], few_shot={"k": 5, "seed": 3}).data,
                                  lambda p: tmp_path / p, 1)
    assert len(data["train"].rows) == 5  # k in all: generation has no classes
    assert " ||| " in data["train"].rows[0]["references"]
    again = load_generation_splits(config(tmp_path, tiny_generators["gpt2"], few_shot={"k": 5, "seed": 3}).data,
                                   lambda p: tmp_path / p, 1)
    assert again["train"].rows == data["train"].rows  # seeded


def _encode(model, tokenizer_cfg, rows, **prompt):
    from promptft_cli.modeling.generator import generator_kind, load_generation_tokenizer
    from promptft_cli.tasks.generation import encoder_for

    cfg = validate_config({"task": "generation", "model": {"name": str(model), "max_length": 120},
                           "data": {"train": "train.csv", "text_column": "source"},
                           "prompt": {"template": "translate: {source} =>", **prompt}})
    kind = generator_kind(cfg.model)
    tokenizer = load_generation_tokenizer(cfg.model, kind)
    return tokenizer, encoder_for(cfg, tokenizer, kind, tokenizer_cfg)(rows)


def test_chat_wraps_the_rendered_prompt_in_the_chat_template(tiny_generators):
    rows = toy_translation_rows(2)
    tokenizer, split = _encode(tiny_generators["llama"], None, rows, chat=True)
    text = tokenizer.decode(split.input_ids[0])
    assert text.startswith("<s>user: translate: the cat") and text.endswith("assistant:")
    assert tokenizer.decode(split.targets[0]) == "die katze</s>"  # no space glued on after the chat prompt


def test_demonstrations_put_k_solved_examples_before_the_input(tiny_generators):
    pool, rows = toy_translation_rows(9), toy_translation_rows(3, seed=5)
    tokenizer, split = _encode(tiny_generators["gpt2"], pool, rows, demonstrations={"per_class": 2})
    text = tokenizer.decode(split.input_ids[0])
    assert text.count("=>") == 3 and text.endswith(f"translate: {rows[0]['source']} =>")
    shown = text.split("\n\n")[:2]
    assert all(any(s == f"translate: {p['source']} => {p['target']}" for p in pool) for s in shown)
    _, again = _encode(tiny_generators["gpt2"], pool, rows, demonstrations={"per_class": 2})
    assert again.input_ids == split.input_ids  # the same demonstrations for a row every time
    _, own = _encode(tiny_generators["gpt2"], pool, pool[:1], demonstrations={"per_class": 8})
    assert tokenizer.decode(own.input_ids[0]).count(pool[0]["source"]) == 1  # never the row itself
