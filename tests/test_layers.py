"""Data flows one way: a module imports only from its own layer or lower ones (the order in RULES.md).

Every import counts, at the top of a module and inside functions (a lazy import that reaches up is still
a dependency on a higher layer); only `if TYPE_CHECKING:` blocks are left out, since they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "promptft_cli"

# Lowest first. A name matches a module or a package prefix; the longest match wins.
LAYERS: list[tuple[str, ...]] = [
    ("errors", "progress", "runs.layout", "runs"),  # core (runs/__init__ only re-exports the layout)
    ("config", "methods", "tasks.base"),  # tasks.base: the task registry config validates against (no torch)
    ("prompting",),
    ("modeling",),
    # data sits above modeling: prepare measures token lengths with the model's tokenizer and, for generation,
    # reads the model kind (causal or seq2seq) from the model's config; modeling never reads data files.
    ("data",),
    ("tasks",),
    ("runs.table", "runs.model_card", "runs.generation_card", "runs.plots"),
    ("training",),
    ("inference",),
    ("api",),
    ("cli", "__main__", ""),  # "": the package root, the public face that re-exports the API
]


def layer_of(module: str) -> int:
    """The layer index of a dotted module name relative to the package (`training.loop`, `` for the root)."""
    best, best_len = None, -1
    for index, names in enumerate(LAYERS):
        for name in names:
            if (module == name or (name and module.startswith(name + "."))) and len(name) > best_len:
                best, best_len = index, len(name)
    if best is None:
        raise AssertionError(f"module '{module}' has no layer in tests/test_layers.py; add it to LAYERS")
    return best


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imported_modules(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, imported promptft module relative to the package) for every import of the package in `source`."""
    tree = ast.parse(source)
    skipped = {id(n) for node in ast.walk(tree) if _type_checking_only(node) for b in node.body for n in ast.walk(b)}
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join(["promptft_cli", *[p for p in package if p], *([base] if base else [])])
            for alias in node.names:
                found.append((node.lineno, f"{base}.{alias.name}" if _is_module(f"{base}.{alias.name}") else base))
    return sorted({(line, name.removeprefix("promptft_cli").lstrip(".")) for line, name in found
                   if name == "promptft_cli" or name.startswith("promptft_cli.")})


def _is_module(dotted: str) -> bool:
    parts = dotted.split(".")
    if parts[0] != "promptft_cli":
        return False
    path = PACKAGE.joinpath(*parts[1:])
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _target_layer(imported: str) -> int:
    # `from promptft_cli import __version__` reads the root's own constant, not the API it re-exports.
    return 0 if imported == "" else layer_of(imported)


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    mine = layer_of(module)
    return [f"promptft_cli.{module or '__init__'} (layer {mine}) imports promptft_cli.{name} (layer {_target_layer(name)}) "
            f"at line {line}" for line, name in imported_modules(source, module, is_package) if _target_layer(name) > mine]


def test_no_module_imports_from_a_higher_layer():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found += violations(path.read_text(encoding="utf-8"), module_name(path), path.name == "__init__.py")
    assert not found, "imports that reach up a layer:\n" + "\n".join(found)


@pytest.mark.parametrize("source", [
    "from promptft_cli.inference.predict import Predictor\n",
    "def f():\n    from promptft_cli.inference import evaluate\n",
    "import promptft_cli.training.loop\n",
    "from promptft_cli import inference\n",
    "from ..training import loop\n",
])
def test_a_reaching_up_import_is_reported(source):
    found = violations(source, "modeling.heads")
    assert len(found) == 1 and "promptft_cli.modeling.heads (layer 3) imports promptft_cli." in found[0]


def test_downward_type_checking_and_version_imports_pass():
    source = ("from typing import TYPE_CHECKING\nfrom promptft_cli import __version__, runs\n"
              "from promptft_cli.modeling.heads import pool\nif TYPE_CHECKING:\n    from promptft_cli.cli import render\n")
    assert violations(source, "training.loop") == []
    assert layer_of("runs") < layer_of("runs.table") < layer_of("training.loop") < layer_of("cli.commands")
