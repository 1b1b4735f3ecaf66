"""benchmarks/fewshot_suite.py: the README table it prints comes from the cells, best system in bold."""

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
             "sst2/recipe/13": _cell(0.78), "sst2/setfit/13": _cell(0.70), "sst2/lora_trainer/13": _cell(0.60)}
    lines = suite.readme_table(suite.summarize(cells), cells).splitlines()
    assert lines[0].startswith("| data set | zero-shot | promptft recipe | SetFit | Trainer + LoRA |")
    # Data sets in the suite's order; SetFit's higher mean is the one in bold, the gap is paired per seed.
    assert lines[2] == "| SST-2 | – | **78.0 ± 0.0** | 70.0 ± 0.0 | 60.0 ± 0.0 | +8.0 ± 0.0 (ahead on 1/1) | 13 |"
    assert lines[3] == "| SNIPS | 80.0 | 93.0 ± 1.0 | **94.0 ± 1.0** | – | −1.0 ± 2.0 (ahead on 1/2) | 13, 21 |"
