"""What the server runs: a narrow interface over a loaded run, one class per task.

The HTTP layer and the batcher only see `Backend`: `columns`, `max_tokens`, `token_lengths(rows)`,
`info()` and `run(rows, decoding, max_tokens)`, so a test can serve a fake model and a new task is one
class here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

from promptft_cli import runs
from promptft_cli.errors import PromptftError

BIG = 10**9  # "no limit" when measuring an input's untruncated length


@dataclass(frozen=True)
class Decoding:
    """Decoding settings of one generation request (hashable: requests batch only with equal settings)."""

    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()


class Backend(Protocol):
    task: str
    columns: list[str]
    max_tokens: int
    """The run's model.max_length: the most tokens an input can have before it is cut."""

    def token_lengths(self, rows: Sequence[Mapping[str, str]]) -> list[int]: ...

    def info(self) -> dict[str, Any]: ...

    def run(self, rows: Sequence[Mapping[str, str]], decoding: Decoding | None, max_tokens: int) -> list[dict[str, Any]]:
        """One output dict per row, in order; inputs longer than `max_tokens` are cut to it."""
        ...


@dataclass
class ClassifierBackend:
    """A classification run: label, confidence and every label's probability per row."""

    predictor: Any  # inference.predict.Predictor
    run_dir: Path
    quantized: bool = False
    task: str = field(default="classification", init=False)

    @property
    def columns(self) -> list[str]:
        return list(self.predictor.cfg.data.columns)

    @property
    def max_tokens(self) -> int:
        return self.predictor.cfg.model.max_length

    def token_lengths(self, rows: Sequence[Mapping[str, str]]) -> list[int]:
        return _lengths(self.predictor.template, self.predictor.tokenizer, rows)

    def run(self, rows, decoding=None, max_tokens=None) -> list[dict[str, Any]]:
        probs = self.predictor.proba(rows, batch_size=len(rows), max_length=max_tokens)  # one forward pass
        labels = self.predictor.labels
        out = []
        for p in probs:
            best = int(p.argmax())
            out.append({"label": labels[best], "confidence": round(float(p[best]), 6),
                        "probabilities": {label: round(float(v), 6) for label, v in zip(labels, p)}})
        return out

    def info(self) -> dict[str, Any]:
        return {**run_info(self.predictor.cfg, self.run_dir), "labels": list(self.predictor.labels), "quantized": self.quantized}


@dataclass
class GeneratorBackend:
    """A generation run: `generate(rows, decoding, max_tokens)` of the run's generation predictor.

    `generate` returns per row {"generation", "finish_reason" ("stop" | "length"), "completion_tokens"}.
    """

    cfg: Any
    run_dir: Path
    tokenizer: Any
    template: Any
    generate: Any
    defaults: Decoding
    """The run's own decoding settings, used where a request sets none."""
    quantized: bool = False
    task: str = field(default="generation", init=False)

    @property
    def columns(self) -> list[str]:
        return list(self.cfg.data.columns)

    @property
    def max_tokens(self) -> int:
        return self.cfg.model.max_length

    def token_lengths(self, rows):
        return _lengths(self.template, self.tokenizer, rows)

    def run(self, rows, decoding=None, max_tokens=None):
        return self.generate(rows, decoding, max_tokens)

    def info(self) -> dict[str, Any]:
        return {**run_info(self.cfg, self.run_dir), "quantized": self.quantized}


def _lengths(template, tokenizer, rows) -> list[int]:
    """Each row's untruncated length in tokens through the template (columns tokenized in one batched call)."""
    from promptft_cli.prompting.encoding import TemplateEncoder

    return [len(e.input_ids) for e in TemplateEncoder(template, tokenizer).encode(rows, BIG)]


def run_info(cfg, run_dir: Path) -> dict[str, Any]:
    """What /v1/info tells about the run: task, base model, method, template and its recorded metrics."""
    metrics_file = run_dir / runs.METRICS
    metrics = runs.read_json(metrics_file) if metrics_file.exists() else {}
    keep = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) or k in ("test", "validation")}
    return {"task": cfg.task, "base_model": cfg.model.name, "method": cfg.method.name,
            "template": cfg.prompt.template, "columns": list(cfg.data.columns), "max_length": cfg.model.max_length,
            "metrics": keep}


def load_backend(run_dir: Path, quantize: str | None = None) -> Backend:
    """Load a finished run once, as the backend of its task."""
    from promptft_cli.config import load_config

    runs.require_finished(run_dir)
    cfg = load_config(run_dir / runs.CONFIG)
    if cfg.task == "classification":
        from promptft_cli.inference.predict import Predictor

        predictor = Predictor.from_run(run_dir, quantize=quantize)
        return ClassifierBackend(predictor, run_dir, quantized=quantize is not None)
    if cfg.task == "generation":
        from promptft_cli.inference.predict import Predictor

        return generator_backend(Predictor.from_run(run_dir, quantize=quantize), run_dir, quantize is not None)
    raise PromptftError(f"serving '{cfg.task}' runs is not available", field="task")


def generator_backend(predictor, run_dir: Path, quantized: bool = False) -> GeneratorBackend:
    """A generation run's Predictor as a backend: each batch runs with its request's decoding settings.

    The generator reads its settings from `model.decoding` / `model.stop` (set from the run's `generate`
    section); the batcher runs one batch at a time in one thread, so swapping them per batch is safe.
    """
    gen, model, tokenizer = predictor.cfg.generate, predictor.model, predictor.tokenizer
    defaults = Decoding(gen.max_new_tokens, gen.temperature if gen.do_sample else 0.0, gen.top_p, tuple(gen.stop))

    def generate(rows, decoding: Decoding, max_tokens: int | None) -> list[dict[str, Any]]:
        saved = model.decoding, model.stop
        model.decoding, model.stop = {**saved[0], **_sampling(decoding, gen.top_k)}, list(decoding.stop)
        try:
            outputs = predictor.proba(rows, batch_size=len(rows), max_length=max_tokens)
        finally:
            model.decoding, model.stop = saved
        results = []
        for generated in outputs:
            text = generated.texts[0]
            # Counted by re-tokenizing the text (the generator returns texts): decoding and encoding again can
            # merge or split a token, so this is capped at the limit; fewer tokens: EOS or a stop string ended it.
            n = min(len(tokenizer(text, add_special_tokens=False)["input_ids"]), decoding.max_new_tokens)
            results.append({"generation": text, "completion_tokens": n,
                            "finish_reason": "length" if n >= decoding.max_new_tokens else "stop"})
        return results

    return GeneratorBackend(predictor.cfg, run_dir, tokenizer, predictor.template, generate, defaults, quantized)


def _sampling(decoding: Decoding, top_k: int) -> dict[str, Any]:
    settings: dict[str, Any] = {"max_new_tokens": decoding.max_new_tokens, "num_return_sequences": 1}
    if decoding.temperature > 0:
        return {**settings, "do_sample": True, "temperature": decoding.temperature, "top_p": decoding.top_p,
                "top_k": top_k, "num_beams": 1}
    return {**settings, "do_sample": False, "temperature": None, "top_p": None, "top_k": None}
