"""benchmarks/fewshot_suite.py: its tables come from the cells (best in bold, gaps paired by seed); recipe_supervised drops the pool."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _suite():
    spec = importlib.util.spec_from_file_location("fewshot_suite", ROOT / "benchmarks" / "fewshot_suite.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cell(accuracy: float) -> dict:
    return {"accuracy": accuracy, "seconds": 1.0, "peak_rss_mb": 10.0}


def test_readme_table_bolds_the_best_system_and_pairs_the_gap_by_seed():
    suite = _suite()
    cells = {"snips/zero_shot/13": _cell(0.80),
             "snips/recipe/13": _cell(0.94), "snips/recipe/21": _cell(0.92),
             "snips/setfit/13": _cell(0.93), "snips/setfit/21": _cell(0.95),
             "sst2/recipe/13": _cell(0.78), "sst2/recipe_supervised/13": _cell(0.76),
             "sst2/setfit/13": _cell(0.70), "sst2/lora_trainer/13": _cell(0.60)}
    lines = suite.readme_table(suite.summarize(cells), cells).splitlines()
    assert lines[0].startswith("| data set | zero-shot | promptft recipe | recipe, no unlabelled text | SetFit | Trainer + LoRA |")
    # Data sets in the suite's order; SetFit's higher mean is the one in bold, the gap is paired per seed.
    assert lines[2] == "| SST-2 | – | **78.0 ± 0.0** | 76.0 ± 0.0 | 70.0 ± 0.0 | 60.0 ± 0.0 | +8.0 ± 0.0 (ahead on 1/1) | 13 |"
    assert lines[3] == "| SNIPS | 80.0 | 93.0 ± 1.0 | – | **94.0 ± 1.0** | – | −1.0 ± 2.0 (ahead on 1/2) | 13, 21 |"


def test_the_supervised_recipe_is_the_recipe_without_the_unlabelled_pool(tmp_path, monkeypatch):
    """`recipe_supervised` trains the same config minus self-training and the pool; `recipe` keeps both."""
    suite = _suite()
    seen = []

    class Trained:
        metrics = {"accuracy": 1.0}

    def fake_train(cfg, overwrite=False):
        seen.append(cfg)
        return Trained()

    monkeypatch.setattr("promptft_cli.training.loop.train", fake_train)
    monkeypatch.setattr("promptft_cli.progress.configure", lambda **kw: None)  # the cell's global quiet mode stays out of other tests
    files = {name: tmp_path / f"{name}.csv" for name in ("train", "validation", "unlabeled", "test")}
    for name, path in files.items():
        path.write_text("text,label\na,positive\nb,negative\n" if name != "unlabeled" else "text\nc\n")
    for system in ("recipe", "recipe_supervised"):
        suite.run_promptft(system, "sst2", 13, files, tmp_path, [])
    recipe, supervised = seen
    assert recipe.run_dir != supervised.run_dir
    assert recipe.train.self_training is not None and recipe.data.unlabeled == str(files["unlabeled"])
    assert supervised.train.self_training is None and supervised.data.unlabeled is None
    assert supervised.train.lr == recipe.train.lr and supervised.prompt.verbalizer == recipe.prompt.verbalizer


def test_benchmarks_table_pairs_both_recipes_with_setfit():
    suite = _suite()
    cells = {"trec/recipe/13": _cell(0.90), "trec/recipe_supervised/13": _cell(0.85), "trec/setfit/13": _cell(0.88)}
    header, _, row = suite.table(suite.summarize(cells), cells).splitlines()
    assert header.endswith("| recipe − setfit, paired | recipe_supervised − setfit, paired |")
    assert row.endswith("| +2.0 ± 0.0 (ahead on 1/1) | -3.0 ± 0.0 (ahead on 0/1) |")


def test_the_suites_recipe_is_what_label_descriptions_alone_get():
    """The figures README calls "the recipe" must be what a user's config gets by default, not a private variant."""
    from promptft_cli.config import validate_config
    from promptft_cli.prompting.templates import parse_template, template_for

    recipe = _suite().recipe("snips")
    cfg = validate_config({"data": {"train": "x.csv"}, "prompt": {"verbalizer": recipe["prompt"]["verbalizer"]}})
    wanted = {k: v for k, v in recipe["train"].items() if k not in ("self_training", "early_stopping", "eval_batch_size")}
    assert cfg.method.name == recipe["method"]["name"]
    assert {k: getattr(cfg.train, k) for k in wanted} == wanted
    assert cfg.train.early_stopping.patience == recipe["train"]["early_stopping"]["patience"]
    assert template_for(cfg) == parse_template(recipe["prompt"]["template"])  # no template given: the text itself
    assert (cfg.prompt.resolved_head, cfg.prompt.combine) == ("verbalizer", recipe["prompt"]["combine"])
