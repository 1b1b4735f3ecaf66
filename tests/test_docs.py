"""The documentation holds: generated blocks match the schema, every relative link and #anchor resolves,
mkdocs.yml lists every page, and the example configs in docs/prompts.md validate."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

from promptft_cli.config import validate_config
from promptft_cli.prompting.templates import template_for

ROOT = Path(__file__).resolve().parent.parent
_TOOL = ROOT / "tools" / "config_reference.py"
_spec = importlib.util.spec_from_file_location("config_reference", _TOOL)
docs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(docs)

PAGES = sorted((ROOT / "docs").glob("*.md"))
LINKED = [ROOT / "README.md", ROOT / "README.zh-CN.md", ROOT / "BENCHMARKS.md", *PAGES]
_FENCE = re.compile(r"^(```|~~~)")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_INLINE_CODE = re.compile(r"`[^`]*`")


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    out, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            out.append((number, line))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lowercased, punctuation removed, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)  # \w keeps letters of every script (Chinese headings), digits and _
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found, seen = set(), {}
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            base = slug(heading.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
        found.update(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", line))
    return found


def links(path: Path) -> list[tuple[int, str]]:
    return [(number, target) for number, line in prose_lines(path.read_text(encoding="utf-8"))
            for target in _LINK.findall(_INLINE_CODE.sub("", line))]


def test_slugs_follow_github():
    assert slug("Daily use: progress, plots, runs, tracking, scripting") == "daily-use-progress-plots-runs-tracking-scripting"
    assert slug("`{soft:N}` and `{soft:\"words\"}`") == "softn-and-softwords"
    assert slug("The SST-2 recipe: label descriptions, then unlabelled text") == (
        "the-sst-2-recipe-label-descriptions-then-unlabelled-text")
    assert slug("快速上手") == "快速上手"
    assert slug("prompt_tuning · [link](x.md)") == "prompt_tuning--link"


@pytest.mark.parametrize("page", LINKED, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_anchors_resolve(page):
    broken = []
    for number, target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...: not checked offline
            continue
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        if not dest.exists():
            broken.append(f"{page.name}:{number}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{page.name}:{number}: {target} (no heading with anchor #{anchor})")
    assert not broken, "\n".join(broken)


def test_link_checker_catches_breakage(tmp_path):
    page = tmp_path / "a.md"
    (tmp_path / "b.md").write_text("# Real heading\n", encoding="utf-8")
    page.write_text("[ok](b.md#real-heading) [bad](b.md#nope) `[code](missing.md)`\n```\n[x](gone.md)\n```\n",
                    encoding="utf-8")
    assert links(page) == [(1, "b.md#real-heading"), (1, "b.md#nope")]
    assert "nope" not in anchors(tmp_path / "b.md") and "real-heading" in anchors(tmp_path / "b.md")


def nav_pages(nav) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [p for value in nav.values() for p in nav_pages(value)]
    return [p for item in nav for p in nav_pages(item)]


def test_mkdocs_nav_lists_every_page():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    listed = nav_pages(config["nav"])
    assert sorted(listed) == sorted(p.name for p in PAGES)
    assert config["theme"]["name"] == "material" and config.get("docs_dir", "docs") == "docs"


def test_readme_maps_every_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [p.name for p in PAGES if f"docs/{p.name}" not in readme]
    assert not missing, f"README's map of the docs lacks {missing}"
    assert len(readme.splitlines()) <= 260, "README should fit about 250 lines; move detail into docs/"


# --- generated blocks ---


@pytest.mark.parametrize("path", list(docs.TARGETS), ids=lambda p: str(p.relative_to(ROOT)))
def test_generated_blocks_are_current(path):
    text = path.read_text(encoding="utf-8")
    for block in docs.TARGETS[path]:
        assert f"<!-- {block}:start -->" in text and f"<!-- {block}:end -->" in text
    assert docs.render(text) == text, f"{path.name} is stale: run `python tools/config_reference.py`"


def test_reference_lists_every_key_and_method():
    ref = docs.config_reference()
    for key in ("`model.name`", "`data.few_shot.k`", "`train.early_stopping.patience`", "`output_dir`"):
        assert key in ref
    assert "base_dir" not in ref
    table = docs.methods_reference()
    for name in ("full", "head", "bitfit", "prompt_tuning", "p_tuning", "prefix_tuning", "lora"):
        assert f"| `{name}` |" in table


def test_reference_types_read_as_written():
    from typing import Literal

    from promptft_cli.config import EnsembleMember

    assert docs._type_name(Literal["none", "balanced"] | dict[str, float]) == "none / balanced or dict[str, float]"
    assert docs._type_name(list[Literal["tensorboard", "wandb"]]) == "list of tensorboard / wandb"
    assert docs._type_name(list[EnsembleMember] | None) == "list[EnsembleMember] or None"
    assert docs._type_name(dict[str, str | list[str]] | None) == "dict[str, str or list[str]] or None"
    ref = docs.config_reference()
    assert "Union" not in ref and "promptft_cli." not in ref


# --- the example configs of docs/prompts.md ---


def yaml_blocks(path: Path) -> list[tuple[int, str]]:
    blocks, current, start = [], None, 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if current is None and line.strip() == "```yaml":
            current, start = [], number
        elif current is not None and line.strip() == "```":
            blocks.append((start, "\n".join(current)))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


PROMPT_EXAMPLES = yaml_blocks(ROOT / "docs" / "prompts.md")


def test_prompts_page_has_examples():
    assert len(PROMPT_EXAMPLES) >= 8


@pytest.mark.parametrize("start,block", PROMPT_EXAMPLES, ids=[f"line-{s}" for s, _ in PROMPT_EXAMPLES])
def test_prompt_examples_validate(start, block):
    """Each YAML block is a config as it would sit in configs/ (a snippet without `data` gets a train file)."""
    raw = yaml.safe_load(block)
    raw.setdefault("data", {"train": "../sample_data/sentiment.csv"})
    cfg = validate_config(raw)
    template_for(cfg)  # the template parses and names only data columns
    for key in ("train", "validation", "test", "unlabeled"):
        value = getattr(cfg.data, key)
        if value and value.startswith("../sample_data/"):
            assert (ROOT / "configs" / value).exists(), f"line {start}: {value} does not exist"


# What kind of backbone each model named on the page is (the page's examples cannot download them).
_KINDS = {"default": "encoder", "default-lm": "causal", "gpt2": "causal", "roberta-base": "mlm",
          "bert-base-uncased": "mlm", "bert-base-chinese": "mlm"}


@pytest.mark.parametrize("start,block", PROMPT_EXAMPLES, ids=[f"line-{s}" for s, _ in PROMPT_EXAMPLES])
def test_prompt_examples_pass_the_combination_checks(start, block, bert_tokenizer, gpt2_tokenizer):
    """No example is a head × model × template × method combination that promptft refuses at start-up."""
    from promptft_cli.prompting.templates import resolve_soft
    from promptft_cli.prompting.verbalizers import check_combination

    raw = yaml.safe_load(block)
    raw.setdefault("data", {"train": "../sample_data/sentiment.csv"})
    cfg = validate_config(raw)
    family = _KINDS[cfg.model.name]
    kind = family if cfg.prompt.resolved_head == "verbalizer" else "encoder"
    tokenizer = gpt2_tokenizer if family == "causal" else bert_tokenizer
    check_combination(cfg, kind, resolve_soft(template_for(cfg), tokenizer), tokenizer)


def test_template_error_table_quotes_the_code():
    """Each row of docs/prompts.md's template-error table is what parse_template raises for that template."""
    from promptft_cli.errors import PromptftError
    from promptft_cli.prompting.templates import parse_template

    text = (ROOT / "docs" / "prompts.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([\"'])(.*)\1` \| `(.*)` \|$", text, flags=re.M)
    assert len(rows) >= 8
    for _, template, message in rows:
        with pytest.raises(PromptftError) as caught:
            parse_template(template)
        assert message in str(caught.value), template
