"""Config: defaults, every section, friendly errors with line numbers, `--set` overrides, save/reload."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from promptft_cli.config import Config, load_config, save_config, validate_config
from promptft_cli.errors import PromptftError

FULL = """\
task: classification
model:
  name: default
  max_length: 64
  pooling: mean
data:
  train: data/train.csv
  validation: data/val.csv
  test: data/test.jsonl
  text_columns: [premise, hypothesis]
  label_column: gold
  validation_size: 0.2
  test_size: 0.3
  few_shot: {k: 4, seed: 7}
  encoding: latin-1
prompt:
  template: "{premise} ? {mask} , {hypothesis}"
  verbalizer: {entailment: "yes", contradiction: ["no", never]}
  combine: max
method:
  name: lora
  r: 4
  alpha: 8
train:
  epochs: 3
  batch_size: 4
  eval_batch_size: 32
  lr: 1.0e-3
  weight_decay: 0.01
  warmup_ratio: 0.1
  grad_accum: 2
  seed: 3
  early_stopping: {patience: 2, metric: macro_f1}
output_dir: out/run1
"""


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path, overrides: list[str] | None = None) -> PromptftError:
    with pytest.raises(PromptftError) as info:
        load_config(path, overrides)
    return info.value


MINIMAL = "data:\n  train: train.csv\n"


def test_defaults_fill_every_section(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL))
    assert cfg.task == "classification"
    assert (cfg.model.name, cfg.model.max_length, cfg.model.trust_remote_code) == ("default", 128, False)
    assert cfg.data.columns == ["text"] and cfg.data.label_column == "label" and cfg.data.few_shot is None
    assert cfg.data.validation is None and cfg.data.test is None
    assert cfg.prompt.template is None and cfg.prompt.resolved_head == "linear"
    assert cfg.method.name == "prompt_tuning" and cfg.method.options.num_virtual_tokens == 20
    t = cfg.train
    assert (t.epochs, t.batch_size, t.lr, t.grad_accum, t.seed) == (10, 16, None, 1, 42)
    assert (t.early_stopping.patience, t.early_stopping.metric) == (5, None)  # None: macro_f1 when imbalanced (tasks/imbalance.py)
    assert cfg.output_dir == "runs/run"


def test_every_section_is_read(tmp_path):
    cfg = load_config(write(tmp_path, FULL))
    assert cfg.model.max_length == 64 and cfg.model.pooling == "mean"
    assert cfg.data.columns == ["premise", "hypothesis"] and cfg.data.label_column == "gold"
    assert cfg.data.few_shot.k == 4 and cfg.data.few_shot.seed == 7 and cfg.data.encoding == "latin-1"
    assert cfg.prompt.verbalizer == {"entailment": "yes", "contradiction": ["no", "never"]}
    assert cfg.prompt.resolved_head == "verbalizer" and cfg.prompt.combine == "max"
    assert cfg.method.name == "lora" and (cfg.method.options.r, cfg.method.options.alpha) == (4, 8)
    assert cfg.method.options.dropout == 0.1  # the method's default for an option not given
    t = cfg.train
    assert (t.epochs, t.batch_size, t.eval_batch_size, t.lr, t.weight_decay) == (3, 4, 32, 1e-3, 0.01)
    assert (t.warmup_ratio, t.grad_accum, t.seed) == (0.1, 2, 3)
    assert (t.early_stopping.patience, t.early_stopping.metric) == (2, "macro_f1")


def test_method_string_form(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL + "method: lora\n"))
    assert cfg.method.name == "lora" and cfg.method.options.r == 8
    assert cfg.dump()["method"] == {"name": "lora", "r": 8, "alpha": 16, "dropout": 0.1, "target_modules": None}


@pytest.mark.parametrize(
    ("text", "field", "row", "suggestion"),
    [
        (MINIMAL + "trian:\n  epochs: 3\n", "trian", 3, "train"),
        (MINIMAL + "train:\n  epochs: 3\n  batchsize: 4\n", "train.batchsize", 5, "batch_size"),
        (MINIMAL + "train:\n  early_stopping:\n    patiense: 2\n", "train.early_stopping.patiense", 5, "patience"),
        ("data:\n  train: t.csv\n  text_colum: review\n", "data.text_colum", 3, "text_column"),
        (MINIMAL + "method:\n  name: lora\n  alpah: 4\n", "method.alpah", 5, "alpha"),
        (MINIMAL + "method:\n  name: prompt_tuning\n  num_virtual_token: 4\n", "method.num_virtual_token", 5,
         "num_virtual_tokens"),
    ],
)
def test_unknown_key_names_the_closest_valid_one(tmp_path, text, field, row, suggestion):
    err = error_of(write(tmp_path, text))
    assert err.field == field and err.row == row and err.file.endswith("config.yaml")
    assert f"did you mean '{suggestion}'" in err.message


def test_option_of_another_method_is_unknown(tmp_path):
    err = error_of(write(tmp_path, MINIMAL + "method:\n  name: head\n  r: 4\n"))
    assert err.field == "method.r" and "unknown key 'r'" in err.message


def test_unknown_method_suggests_a_registered_one(tmp_path):
    err = error_of(write(tmp_path, MINIMAL + "method: lorra\n"))
    assert err.field == "method" and err.row == 3 and "did you mean 'lora'" in err.message


@pytest.mark.parametrize(
    ("text", "field", "row"),
    [
        (MINIMAL + "train:\n  epochs: many\n", "train.epochs", 4),
        (MINIMAL + "train:\n  lr: fast\n", "train.lr", 4),
        (MINIMAL + "train:\n  epochs: 0\n", "train.epochs", 4),
        (MINIMAL + "model:\n  max_length: [1, 2]\n", "model.max_length", 4),
        (MINIMAL + "model:\n  pooling: median\n", "model.pooling", 4),
        (MINIMAL + "model: minilm\n", "model", 3),
        (MINIMAL + "method:\n  name: lora\n  r: lots\n", "method.r", 5),
        (MINIMAL + "train:\n  early_stopping:\n    metric: speed\n", "train.early_stopping.metric", 5),
        ("task: regression\n" + MINIMAL, "task", 1),
    ],
)
def test_wrong_type_names_field_and_line(tmp_path, text, field, row):
    err = error_of(write(tmp_path, text))
    assert err.field == field and err.row == row
    assert "\n" not in str(err)


def test_missing_train_file(tmp_path):
    err = error_of(write(tmp_path, "data:\n  test: test.csv\n"))
    assert err.field == "data.train" and "missing" in err.message
    err = error_of(write(tmp_path, "model:\n  name: default\n"))
    assert err.field == "data" and "missing" in err.message


def test_yaml_syntax_error_reports_its_line(tmp_path):
    err = error_of(write(tmp_path, "data:\n  train: a.csv\ntrain:\n  epochs: [3\n  lr: 1\n"))
    assert "invalid YAML" in err.message and err.row is not None and 4 <= err.row <= 5


def test_empty_missing_and_non_mapping_config(tmp_path):
    assert "empty" in error_of(write(tmp_path, "")).message
    assert "empty" in error_of(write(tmp_path, "# only a comment\n")).message
    assert "not found" in error_of(tmp_path / "nope.yaml").message
    assert "mapping" in error_of(write(tmp_path, "- a\n- b\n")).message


@pytest.mark.parametrize(
    ("overrides", "check"),
    [
        (["train.lr=1e-3"], lambda c: c.train.lr == pytest.approx(1e-3)),
        (["train.epochs=3", "train.batch_size=2"], lambda c: (c.train.epochs, c.train.batch_size) == (3, 2)),
        (["model.trust_remote_code=true"], lambda c: c.model.trust_remote_code is True),
        (["data.text_columns=[premise, hypothesis]"], lambda c: c.data.columns == ["premise", "hypothesis"]),
        (["train.report_to=[tensorboard]"], lambda c: c.train.report_to == ["tensorboard"]),
        (["data.few_shot.k=8"], lambda c: c.data.few_shot.k == 8 and c.data.few_shot.seed == 42),
        (["train.early_stopping.patience=2"], lambda c: c.train.early_stopping.patience == 2),
        (["method.name=lora", "method.r=2"], lambda c: c.method.name == "lora" and c.method.options.r == 2),
        (["method.num_virtual_tokens=5"], lambda c: c.method.options.num_virtual_tokens == 5),
        (["prompt.template={text} It was {mask}."], lambda c: c.prompt.template == "{text} It was {mask}."),
        (["output_dir=elsewhere"], lambda c: c.output_dir == "elsewhere"),
        # Text that one-line YAML would read as a mapping, a list or a set stays text.
        (["method.init_text=Classify the topic: politics or sports?"],
         lambda c: c.method.options.init_text == "Classify the topic: politics or sports?"),
        (["prompt.template={text}"], lambda c: c.prompt.template == "{text}"),
        (["method.init_text=- a list?"], lambda c: c.method.options.init_text == "- a list?"),
        (["prompt.verbalizer={good: [a great film], bad: terrible}"],
         lambda c: c.prompt.verbalizer == {"good": ["a great film"], "bad": "terrible"}),
    ],
)
def test_set_overrides(tmp_path, overrides, check):
    assert check(load_config(write(tmp_path, MINIMAL), overrides))


def test_set_switches_a_string_method(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL + "method: head\n"), ["method.name=lora", "method.alpha=4"])
    assert cfg.method.name == "lora" and cfg.method.options.alpha == 4


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("train.epochs=many", "train.epochs"),
        ("train.epochs=2.5", "train.epochs"),
        ("model.trust_remote_code=maybe", "model.trust_remote_code"),
        ("train.report_to=tensorboard", "train.report_to"),
        ("train.epocs=3", "train.epocs"),
        ("method.r=4", "method.r"),  # the default method (prompt_tuning) has no r
    ],
)
def test_set_values_are_type_checked(tmp_path, override, field):
    err = error_of(write(tmp_path, MINIMAL), [override])
    assert err.field == field


def test_set_needs_key_and_value(tmp_path):
    path = write(tmp_path, MINIMAL)
    assert "KEY=VALUE" in error_of(path, ["train.lr"]).message
    assert "not a section" in error_of(path, ["data.train.x=1"]).message


def test_data_paths_resolve_relative_to_the_config_file(tmp_path, monkeypatch):
    (tmp_path / "project").mkdir()
    path = write(tmp_path / "project", FULL)
    monkeypatch.chdir(tmp_path)  # anywhere but the config's folder
    cfg = load_config(os.path.relpath(path))
    folder = path.parent.resolve()
    assert cfg.path(cfg.data.train) == folder / "data" / "train.csv"
    assert cfg.path(cfg.data.test) == folder / "data" / "test.jsonl"
    assert cfg.run_dir == folder / "out" / "run1"
    assert cfg.path("/abs/file.csv") == Path("/abs/file.csv")


def test_save_config_round_trip(tmp_path):
    cfg = load_config(write(tmp_path, FULL))
    save_config(cfg, tmp_path / "saved.yaml")
    again = load_config(tmp_path / "saved.yaml")
    assert again.dump() == cfg.dump()
    assert again.model_copy(update={"data": cfg.data, "output_dir": cfg.output_dir}) == cfg  # paths now absolute
    assert again.run_dir == cfg.run_dir
    assert yaml.safe_load((tmp_path / "saved.yaml").read_text())["method"]["name"] == "lora"


def test_saved_config_works_from_another_folder(tmp_path):
    """The run directory's config must resolve the same files wherever it is read from."""
    (tmp_path / "models" / "tiny").mkdir(parents=True)
    (tmp_path / "models" / "tiny" / "config.json").write_text("{}")
    cfg = load_config(write(tmp_path, FULL.replace("name: default", "name: models/tiny")))
    save_config(cfg, tmp_path / "out" / "run1" / "config.yaml")
    saved = load_config(tmp_path / "out" / "run1" / "config.yaml")
    from promptft_cli.modeling.loading import resolve_model_path

    assert Path(resolve_model_path(saved.model.name, saved.base_dir)).resolve() == (tmp_path / "models" / "tiny").resolve()
    for split in ("train", "validation", "test"):
        assert saved.path(getattr(saved.data, split)).resolve() == cfg.path(getattr(cfg.data, split)).resolve()


def test_validate_config_without_a_file():
    cfg = validate_config({"data": {"train": "x.csv"}, "method": "bitfit"})
    assert isinstance(cfg, Config) and cfg.method.name == "bitfit"
    with pytest.raises(PromptftError) as info:
        validate_config({"data": {"train": "x.csv"}, "extra": 1})
    assert info.value.field == "extra" and info.value.row is None


def test_yaml_boolean_label_word_gets_a_quoting_hint(tmp_path):
    """YAML reads an unquoted yes/no as a boolean: a common verbalizer word for pair tasks."""
    err = error_of(write(tmp_path, MINIMAL + "prompt:\n  verbalizer:\n    entailment: yes\n"))
    assert err.field == "prompt.verbalizer.entailment" and err.row == 5
    assert "quote" in err.message


SHIPPED = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_config_is_valid(path):
    cfg = load_config(path)
    assert cfg.output_dir.startswith("../runs/")


@pytest.mark.parametrize("path", [p for p in SHIPPED if "shared/data" in p.read_text()], ids=lambda p: p.name)
def test_real_data_configs_read_the_shared_data_and_say_how_to_run(path):
    """Configs on the benchmark data read ../shared/data next to the checkout (never a copy in the repo)."""
    raw = yaml.safe_load(path.read_text())
    assert path.read_text().splitlines()[0] == f"# promptft train configs/{path.name}"
    shared = path.parent.parent.parent / "shared" / "data"
    for split in ("train", "validation", "test"):
        if split in raw["data"]:
            assert raw["data"][split].startswith("../../shared/data/")
            if shared.is_dir():  # the data is there on the project machines, not in a fresh clone
                assert (path.parent / raw["data"][split]).is_file()


# --- the task registry decides `task` and the early-stopping metrics ---


def test_task_and_stopping_metric_come_from_the_task_registry(tmp_path, monkeypatch):
    from promptft_cli.tasks import base

    err = error_of(write(tmp_path, "task: ranking\n" + MINIMAL))
    assert err.field == "task" and "choose one of: classification, generation" in err.message
    assert load_config(write(tmp_path, MINIMAL)).train.early_stopping.metric is None  # the loop picks it from the data
    err = error_of(write(tmp_path, MINIMAL + "train:\n  early_stopping:\n    metric: ndcg\n"))
    assert err.field == "train.early_stopping.metric" and "accuracy, macro_f1, loss" in err.message
    # One registry line makes a task (and its metrics) valid, and its metrics accepted.
    monkeypatch.setitem(base.TASKS, "ranking", base.TaskSpec(("ndcg", "loss"), "nowhere:Ranking"))
    cfg = load_config(write(tmp_path, "task: ranking\n" + MINIMAL))
    assert cfg.task == "ranking"
    assert load_config(write(tmp_path, "task: ranking\n" + MINIMAL), ["train.early_stopping.metric=loss"])
    err = error_of(write(tmp_path, "task: ranking\n" + MINIMAL + "train:\n  early_stopping:\n    metric: accuracy\n"))
    assert err.field == "train.early_stopping.metric" and "ndcg, loss" in err.message


def test_label_descriptions_alone_get_the_recipe():
    """Only data + label descriptions on the embedded MiniLM: full fine-tuning at 5e-5 (docs/few-shot.md), not prompt tuning."""
    raw = {"data": {"train": "x.csv"}, "prompt": {"verbalizer": {"a": "an apple", "b": "a banana"}}}
    cfg = validate_config(raw)
    assert (cfg.method.name, cfg.train.lr, cfg.prompt.resolved_head) == ("full", 5e-5, "verbalizer")
    assert (cfg.train.warmup_ratio, cfg.train.early_stopping.patience) == (0.1, 10)
    named = validate_config({**raw, "method": "lora"})
    assert (named.method.name, named.train.lr) == ("lora", None)
    assert (named.train.warmup_ratio, named.train.early_stopping.patience) == (0.06, 5)
    assert validate_config({"data": {"train": "x.csv"}}).method.name == "prompt_tuning"


def test_naming_full_with_label_descriptions_still_gets_the_recipes_train_values():
    """`method: full` + descriptions is the recipe's combination: its measured values fill only what is unset."""
    raw = {"data": {"train": "x.csv"}, "prompt": {"verbalizer": {"a": "an apple", "b": "a banana"}}, "method": "full"}
    cfg = validate_config(raw)
    assert (cfg.train.lr, cfg.train.warmup_ratio, cfg.train.early_stopping.patience) == (5e-5, 0.1, 10)
    own = validate_config({**raw, "train": {"lr": 1e-4, "warmup_ratio": 0.0, "early_stopping": {"patience": 2}}})
    assert (own.train.lr, own.train.warmup_ratio, own.train.early_stopping.patience) == (1e-4, 0.0, 2)
    assert validate_config({**raw, "train": {"epochs": 3}}).train.lr == 5e-5
    # Another backbone, or the linear head, was not measured: the generic defaults stay.
    other = validate_config({**raw, "model": {"name": "some/encoder"}})
    assert (other.train.lr, other.train.warmup_ratio, other.train.early_stopping.patience) == (None, 0.06, 5)
    linear = validate_config({**raw, "prompt": {**raw["prompt"], "head": "linear"}})
    assert (linear.train.lr, linear.train.early_stopping.patience) == (None, 5)
    # The filled-in values are part of the resolved config, so a saved run reloads with the same ones.
    dumped = validate_config(cfg.dump())
    assert (dumped.train.lr, dumped.train.warmup_ratio, dumped.train.early_stopping.patience) == (5e-5, 0.1, 10)


def test_label_examples_need_descriptions_and_one_text_column():
    base = {"data": {"train": "x.csv", "label_examples": True}}
    with pytest.raises(PromptftError, match="set prompt.verbalizer") as exc:
        validate_config(base)
    assert exc.value.field == "data.label_examples"
    pair = {"data": {**base["data"], "text_columns": ["premise", "hypothesis"]}, "prompt": {"verbalizer": {"a": "yes", "b": "no"}}}
    with pytest.raises(PromptftError, match=r"one text column .* 2 \(premise, hypothesis\)"):
        validate_config(pair)
    assert validate_config({**base, "prompt": {"verbalizer": {"a": "an apple", "b": "a banana"}}}).data.label_examples
