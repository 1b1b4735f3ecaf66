"""The model card of a generation run (model_card.py writes the classification one)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from promptft_cli import __version__, runs
from promptft_cli.runs.model_card import model_table

if TYPE_CHECKING:
    from promptft_cli.config import Config

PIPELINE = {"causal": "text-generation", "seq2seq": "text2text-generation"}
_METRIC_NAMES = (("bleu", "BLEU"), ("chrf", "chrF++"), ("rouge1", "ROUGE-1"), ("rouge2", "ROUGE-2"),
                 ("rougeL", "ROUGE-L"), ("exact_match", "exact match"))


def render(name: str, cfg: "Config", info: runs.RunInfo, report: dict, metrics: dict, run_dir: Path,
           base: str, on_hub: bool) -> str:
    method = cfg.method.name
    kind = report.get("kind", "causal")
    peft = (run_dir / runs.CHECKPOINT / "adapter_config.json").exists()
    parts = [
        _front_matter(name, base if on_hub else None, method, peft, PIPELINE.get(kind, "text-generation"), metrics),
        f"# {name}\n\nA {'causal' if kind == 'causal' else 'sequence-to-sequence'} text generator trained with "
        f"[promptft](https://pypi.org/project/promptft/) {__version__}: method `{method}` on top of `{base}`.\n",
        _model_section(cfg, info, base, run_dir),
        _data_section(report),
        _results_section(metrics, run_dir),
        _usage_section(name, cfg, peft),
    ]
    return "\n".join(p for p in parts if p)


def _front_matter(name: str, hub_base: str | None, method: str, peft: bool, pipeline: str, metrics: dict) -> str:
    meta: dict[str, Any] = {}
    if hub_base:
        meta["base_model"] = hub_base
    meta["library_name"] = "peft" if peft else "promptft"
    meta["pipeline_tag"] = pipeline
    meta["tags"] = ["promptft", method.replace("_", "-"), pipeline]
    if metrics:
        meta["model-index"] = [{"name": name, "results": [{
            "task": {"type": pipeline, "name": pipeline.replace("-", " ").title()},
            "metrics": [{"type": key.lower(), "value": round(metrics[key], 4), "name": f"test {label}"}
                        for key, label in _METRIC_NAMES if key in metrics]}]}]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


def _model_section(cfg: "Config", info: runs.RunInfo, base: str, run_dir: Path) -> str:
    from promptft_cli.methods import METHODS

    method = cfg.method.name
    options = ", ".join(f"{k}={v}" for k, v in cfg.method.options.model_dump().items()) or "none"
    summary = METHODS[method].summary
    gen = cfg.generate
    decoding = (f"{'sampling' if gen.do_sample else 'beam search' if gen.num_beams > 1 else 'greedy'}, "
                f"{gen.num_beams} beam(s), up to {gen.max_new_tokens} new tokens")
    rows = [
        ("base model", f"`{base}`"), ("method", f"`{method}` — {summary} (options: {options})"),
        ("template", f"`{cfg.prompt.template}`" + (" in the chat template" if cfg.prompt.chat else "")),
        ("target column", f"`{cfg.data.target_column}`"),
        ("max length", f"{cfg.model.max_length} prompt / {cfg.model.max_target_length} target tokens"),
        ("decoding", decoding),
    ]
    return model_table(rows, info, run_dir)


def _data_section(report: dict) -> str:
    splits = report.get("splits")
    if not splits:
        return ""
    lines = ["## Data\n", "| split | rows | prompt tokens p50 / p95 / max | target tokens p50 / p95 / max | source |",
             "|---|---|---|---|---|"]
    for split, s in splits.items():
        t, g = s.get("tokens", {}), s.get("target_tokens", {})
        source = Path(str(s.get("source") or "-")).name
        lines.append(f"| {split} | {s.get('rows')} | {t.get('p50')} / {t.get('p95')} / {t.get('max')} | "
                     f"{g.get('p50')} / {g.get('p95')} / {g.get('max')} | {source} |")
    return "\n".join(lines) + "\n"


def _results_section(metrics: dict, run_dir: Path) -> str:
    if not metrics:
        return ""
    scores = ", ".join(f"{label} {metrics[key]:.4f}" for key, label in _METRIC_NAMES if key in metrics)
    lines = ["## Results\n", f"Test split, best checkpoint (epoch {metrics.get('best_epoch', '-')}), "
             f"{metrics.get('n')} examples: **{scores}** (BLEU and chrF++ on sacreBLEU's 0-100 scale, the others 0-1).\n"]
    for metric, signature in (metrics.get("signatures") or {}).items():
        lines.append(f"- {metric} signature: `{signature}`")
    from promptft_cli.runs.plots import CURVES

    figure = f"\n![curves]({CURVES})\n" if (run_dir / CURVES).exists() else ""
    return "\n".join(lines) + "\n" + figure


def _usage_section(name: str, cfg: "Config", peft: bool) -> str:
    columns = cfg.data.columns
    text = ["## How to use\n", "```bash",
            f"promptft predict {name} input.csv -o generations.csv   # adds a generation column",
            f"promptft evaluate {name} --data references.csv          # BLEU, chrF++, ROUGE, exact match",
            "```\n", f"Input columns: {', '.join(columns)}."]
    if peft:
        text.append(f'The adapter in `checkpoint/` loads with `PeftModel.from_pretrained(base, "{name}/checkpoint")`; '
                    "prompt-learning methods generate correctly through promptft (virtual tokens after left padding).")
    return "\n".join(text) + "\n"
