"""The config reference (docs/configuration.md) and the method table (README.md, docs/methods.md), generated
from the schema and the method registry so they never drift.

`python tools/config_reference.py` rewrites the marked blocks in those files; `--check` exits 1 when one is
stale, and tests/test_docs.py checks they are current.
"""

from __future__ import annotations

import re
import sys
import types
import typing
from pathlib import Path

from pydantic import BaseModel

from promptft_cli.config import Config, MethodConfig
from promptft_cli.methods import METHODS

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CONFIGURATION = ROOT / "docs" / "configuration.md"
METHODS_PAGE = ROOT / "docs" / "methods.md"


def _type_name(annotation) -> str:
    """A field's type as a reader writes it: `a / b` for choices, `X or Y` for unions, `list of ...`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return " / ".join(str(value) for value in args)
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(arg) for arg in args if arg is not type(None)]
        return " or ".join(names + (["None"] if type(None) in args else []))
    if origin is list:
        inner = args[0]
        return f"list of {_type_name(inner)}" if typing.get_origin(inner) is typing.Literal else f"list[{_type_name(inner)}]"
    if origin is dict:
        return f"dict[{_type_name(args[0])}, {_type_name(args[1])}]"
    return getattr(annotation, "__name__", str(annotation))


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows = []
    for name, info in model.model_fields.items():
        if name == "base_dir" or info.exclude:
            continue
        key = f"{prefix}{name}"
        sub = next((a for a in (info.annotation, *typing.get_args(info.annotation))
                    if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if sub is MethodConfig:
            rows.append(f"| `{key}.name` | name of a method in [methods.md](methods.md#the-methods) | `prompt_tuning` | The training method; its options sit beside `name`. |")
            continue
        if sub is not None:
            rows.extend(_rows(sub, key + "."))
            continue
        value = info.default_factory() if info.default_factory is not None else info.default
        default = "required" if info.is_required() else f"`{value}`"
        desc = (info.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{key}` | {_type_name(info.annotation)} | {default} | {desc} |")
    return rows


def config_reference() -> str:
    head = "| key | type | default | meaning |\n|---|---|---|---|\n"
    return head + "\n".join(_rows(Config, ""))


def methods_reference() -> str:
    lines = ["| method | what is trained | default lr | options (default) |", "|---|---|---|---|"]
    for m in METHODS.values():
        opts = "; ".join(f"`{k}` ({f.default}): {f.description}" for k, f in m.options.model_fields.items()) or "none"
        lines.append(f"| `{m.name}` | {m.summary} | {m.default_lr:g} | {opts} |")
    return "\n".join(lines)


BLOCKS = {"config-reference": config_reference, "methods": methods_reference}
# Which file holds which generated block; each must hold every block listed for it.
TARGETS = {CONFIGURATION: ("config-reference",), README: ("methods",), METHODS_PAGE: ("methods",)}


def render(text: str) -> str:
    """`text` with every marked block it contains regenerated."""
    for name, make in BLOCKS.items():
        pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
        text = pattern.sub(lambda m: m.group(1) + make() + "\n" + m.group(2), text)
    return text


if __name__ == "__main__":
    stale = []
    for path in TARGETS:
        text = path.read_text(encoding="utf-8")
        new = render(text)
        if new != text:
            stale.append(path)
            if "--check" not in sys.argv:
                path.write_text(new, encoding="utf-8")
    sys.exit(1 if stale and "--check" in sys.argv else 0)
