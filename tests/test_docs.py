"""The README's generated blocks must match the schema and the method registry."""

import importlib.util
from pathlib import Path

_TOOL = Path(__file__).resolve().parent.parent / "tools" / "config_reference.py"
_spec = importlib.util.spec_from_file_location("config_reference", _TOOL)
docs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(docs)


def test_readme_reference_is_current():
    text = docs.README.read_text(encoding="utf-8")
    assert docs.render(text) == text, "README is stale: run `python tools/config_reference.py`"


def test_reference_lists_every_key_and_method():
    ref = docs.config_reference()
    for key in ("`model.name`", "`data.few_shot.k`", "`train.early_stopping.patience`", "`output_dir`"):
        assert key in ref
    assert "base_dir" not in ref
    table = docs.methods_reference()
    for name in ("full", "head", "bitfit", "prompt_tuning", "p_tuning", "prefix_tuning", "lora"):
        assert f"| `{name}` |" in table
