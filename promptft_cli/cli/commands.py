"""The command line: each command parses, calls the library, and renders. Nothing heavy is imported here."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Mapping, Optional

import typer

from promptft_cli import __version__
from promptft_cli.errors import GateFailed, Interrupted, PromptftError

app = typer.Typer(
    rich_markup_mode="rich",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Prompt-efficient fine-tuning: templates, verbalizers, soft prompts and LoRA on small data.\n\n"
    "Exit codes: [bold]0[/] ok · [bold]1[/] quality gate failed (evaluate --min-accuracy) · "
    "[bold]2[/] bad input or config · [bold]130[/] interrupted (Ctrl-C; 143 on SIGTERM).\n\n"
    "Every command takes --json for machine-readable output on stdout; progress and messages go to stderr.",
)

ConfigArg = Annotated[Path, typer.Argument(help="YAML config file.", show_default=False)]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", "-s", help="Override a config key, e.g. --set train.lr=1e-3 (repeatable).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout instead of tables.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or status lines.")]
CheckpointOpt = Annotated[Optional[Path], typer.Option(
    "--checkpoint", help="Use this saved checkpoint (e.g. RUN/checkpoints/step-00000100) even if the run is unfinished.")]

QuantizeOpt = Annotated[Optional[str], typer.Option(
    "--quantize", help="int8: dynamic int8 quantization of the Linear layers for CPU inference (refused on GPU).")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"promptft {__version__}")
        raise typer.Exit()


_verbosity = 0


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More log output: -v per-epoch metrics and every library warning, -vv debug.")] = 0,
) -> None:
    global _verbosity
    _verbosity = verbose


@app.command()
def prepare(config: ConfigArg, set_: SetOpt = None, overwrite: Annotated[bool, typer.Option(help="Allow writing into a finished run's directory.")] = False,
            json_out: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Read, clean, split and sample the data; write prepared JSONL and data_report.json to the run directory."""
    from promptft_cli.api import load_config
    from promptft_cli.cli import render
    from promptft_cli.data.prepare import prepare as run_prepare
    from promptft_cli.modeling.loading import load_tokenizer
    from promptft_cli.runs.layout import check_output_dir

    _setup(quiet or json_out)
    cfg = load_config(config, set_)
    check_output_dir(cfg.run_dir, overwrite)
    data = run_prepare(cfg, load_tokenizer(cfg.model, cfg.base_dir), force=True)
    _emit(data.report, json_out, render.data_report)


@app.command()
def train(config: ConfigArg, set_: SetOpt = None,
          overwrite: Annotated[bool, typer.Option(help="Replace a finished run in output_dir.")] = False,
          resume: Annotated[bool, typer.Option(help="Continue an interrupted run from its newest complete checkpoint.")] = False,
          json_out: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Train per the config (preparing data if needed), keep the best checkpoint, and test it."""
    from promptft_cli import api
    from promptft_cli.cli import render

    _setup(quiet or json_out)
    cfg = api.load_config(config, set_)
    if cfg.data.few_shot and cfg.data.few_shot.seeds:  # the few-shot protocol: one run per seed
        _emit(api.train_seeds(cfg, overwrite=overwrite, resume=resume), json_out, render.seed_summary)
        return
    result = api.train(cfg, overwrite=overwrite, resume=resume)
    from promptft_cli.training import distributed

    distributed.finish()
    if distributed.is_main():  # launched on N processes, the result is printed once
        _emit({"run_dir": str(result.run_dir), "train_seconds": result.train_seconds, **result.metrics}, json_out, render.metrics)


@app.command()
def evaluate(
    target: Annotated[Path, typer.Argument(help="A run directory, or a config file (its output_dir is used).", show_default=False)],
    data: Annotated[Optional[Path], typer.Option(help="Labelled CSV/TSV/JSONL to score instead of the run's test split.")] = None,
    min_accuracy: Annotated[Optional[float], typer.Option(help="Exit 1 when accuracy is below this (for CI gates).")] = None,
    min_metric: Annotated[Optional[list[str]], typer.Option(
        "--min-metric", help="NAME=VALUE: exit 1 when the metric is below VALUE, e.g. bleu=25 or macro_f1=0.8 (repeatable).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Examples per forward pass.")] = None,
    checkpoint: CheckpointOpt = None,
    set_: SetOpt = None, json_out: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Test metrics of a trained run (zero-shot for a config without one): accuracy, macro-F1, per-class scores and the
    confusion matrix for classification; BLEU, chrF++, ROUGE and exact match for generation."""
    from promptft_cli import api
    from promptft_cli.cli import render
    from promptft_cli.inference.evaluate import gate_failures, quality_bars, run_dir_of
    from promptft_cli.inference.seeds import evaluate_seeds, multi_seed_dir

    _setup(quiet or json_out)
    bars = quality_bars(_task_of(target, set_), min_metric or [], min_accuracy)  # a bad bar fails before any work
    parent = multi_seed_dir(target, set_) if checkpoint is None else None
    if parent is not None:  # a few-shot protocol run: every seed evaluated, reported as mean ± std
        summary = evaluate_seeds(parent, data, batch_size)
        files = _write_evaluation(summary, parent, data)
        _emit({**summary, "files": [str(f) for f in files]}, json_out, render.seed_summary)
        metrics = summary
    else:
        metrics = api.evaluate(target, data, batch_size=batch_size, checkpoint=checkpoint, overrides=set_)
        run_dir = run_dir_of(target, set_)
        files = _write_evaluation(metrics, run_dir, data)
        _emit({**metrics, "files": [str(f) for f in files]}, json_out, render.metrics)
    failed = gate_failures(metrics, bars)
    if failed:
        raise GateFailed("; ".join(failed))


@app.command()
def predict(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory, or a config file (its run; zero-shot when it has none).", show_default=False)],
    input: Annotated[str, typer.Argument(help="CSV/TSV/JSONL file, or - for JSONL on stdin.", show_default=False)],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output file: .csv, .tsv or .jsonl (default: JSONL on stdout).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Examples per forward pass.")] = None,
    checkpoint: CheckpointOpt = None,
    encoding: Annotated[Optional[str], typer.Option(help="Text encoding of INPUT (default: the run's data.encoding).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="With -o: print {rows, output} as JSON (without -o, stdout is already JSONL).")] = False,
    quantize: QuantizeOpt = None,
    set_: SetOpt = None, quiet: QuietOpt = False,
) -> None:
    """Label new rows: keeps the input columns and adds prediction, confidence and prob_<label>.

    Under torchrun / accelerate launch each process scores its share and one output file is written in input order.
    """
    from promptft_cli.inference.predict import (
        InputStats,
        Predictor,
        output_format,
        predictions,
        read_inputs,
        write_predictions,
    )
    from promptft_cli.inference.sharded import predict_sharded
    from promptft_cli.progress import status, track
    from promptft_cli.training import distributed

    _setup(quiet or output is None or json_out)
    output_format(output)  # a mistyped -o extension fails before the model loads
    distributed.quiet_replicas()
    predictor = Predictor.for_target(run_dir, checkpoint, set_, quantize)
    cfg, stats = predictor.cfg, InputStats()
    inputs = read_inputs(input, cfg.data.columns, encoding or cfg.data.encoding, stats)
    if distributed.world_size() > 1:
        n = predict_sharded(predictor, inputs, output, batch_size, track)
        distributed.finish()
    else:
        n = write_predictions(track(predictions(predictor, inputs, batch_size), "predict"), output)
    stats.truncated = predictor.truncated
    if distributed.is_main():
        status(f"wrote {n} predictions to {output}" + stats.summary())
        if json_out and output is not None:
            _emit({"rows": n, "output": str(output)}, True, None)


@app.command()
def serve(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory.", show_default=False)],
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 exposes it to the network).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    max_batch: Annotated[int, typer.Option(min=1, help="Most rows in one forward pass (dynamic batching).")] = 32,
    max_wait_ms: Annotated[float, typer.Option(min=0, help="Longest wait for more requests before a forward pass.")] = 5.0,
    workers: Annotated[int, typer.Option(min=1, help="Processes, each with its own copy of the model, sharing the port.")] = 1,
    quantize: QuantizeOpt = None,
    max_input_tokens: Annotated[Optional[int], typer.Option(min=1, help="Longest input in tokens (default: the run's model.max_length).")] = None,
    on_long_input: Annotated[str, typer.Option(help="reject: a longer input is a 422; truncate: cut and marked truncated.")] = "reject",
    max_inputs: Annotated[int, typer.Option(min=1, help="Most inputs per request.")] = 64,
    max_body_bytes: Annotated[int, typer.Option(min=1, help="Largest request body; larger ones get 413.")] = 1_000_000,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Generation runs: the most new tokens a request may ask for.")] = 256,
) -> None:
    """Serve a run over HTTP (FastAPI + uvicorn): /v1/classify or /v1/generate and /v1/completions, /health, /metrics."""
    try:
        from promptft_cli.serve.server import run_server, settings_for
    except ImportError as exc:
        raise PromptftError(f"serving needs the serve extra ({exc.name} is missing): pip install 'promptft[serve]'") from None

    _setup(False)
    settings = settings_for(run_dir, max_batch=max_batch, max_wait_ms=max_wait_ms, quantize=quantize,
                            max_input_tokens=max_input_tokens, on_long_input=on_long_input, max_inputs=max_inputs,
                            max_body_bytes=max_body_bytes, max_new_tokens=max_new_tokens)
    run_server(settings, host, port, workers)


@app.command("search-verbalizer")
def search_verbalizer(
    config: ConfigArg,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the proposed `prompt.verbalizer:` block (YAML) to this file.")] = None,
    words: Annotated[int, typer.Option(min=1, max=20, help="Label words per label in the proposed block.")] = 3,
    top: Annotated[int, typer.Option(min=1, max=30, help="Candidates per label in the ranked table.")] = 10,
    set_: SetOpt = None, json_out: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Propose label words from the train split (LM-BFF label search; n-grams for the similarity head), ranked."""
    from promptft_cli.cli import render
    from promptft_cli.config import load_config
    from promptft_cli.inference.label_search import search, verbalizer_yaml
    from promptft_cli.runs.layout import write_text_atomic

    _setup(quiet or json_out)
    found = search(load_config(config, set_), words, top)
    found["yaml"] = verbalizer_yaml(found["verbalizer"])
    if output is not None:
        write_text_atomic(output, found["yaml"])
        found["output"] = str(output)
    _emit(found, json_out, render.label_search)


@app.command("runs")
def list_runs(
    folder: Annotated[Path, typer.Argument(help="Folder to search for run directories (recursively).")] = Path("runs"),
    json_out: JsonOpt = False,
) -> None:
    """Table of the runs under FOLDER: method, head, k/seeds, validation and test scores, time, size, status."""
    from promptft_cli.cli import render
    from promptft_cli.runs.table import list_runs as collect

    rows = collect(folder)
    _emit({"runs": [r.to_json() for r in rows]}, json_out, lambda _: render.runs_table(rows, str(folder)))


@app.command()
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="Two or more run directories.", show_default=False)],
    show_all: Annotated[bool, typer.Option("--all", help="Also list the config keys that are the same in every run.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Runs side by side: scores (best in green) and the config keys that differ (in yellow)."""
    from promptft_cli.cli import render
    from promptft_cli.runs.table import compare_runs

    cmp = compare_runs(run_dirs)
    _emit(cmp.to_json(), json_out, lambda _: render.comparison(cmp, show_all))


def _starter_names(incomplete: str) -> list[str]:
    from promptft_cli.cli.starters import names

    return [n for n in names() if n.startswith(incomplete)]


@app.command()
def init(
    template: Annotated[str, typer.Argument(help="Starter: sentiment, topic, pair, zero-shot, translation or data-to-text.", autocompletion=_starter_names)] = "sentiment",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Config file to write (default: TEMPLATE.yaml here).")] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing file.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Write a commented starter config (sentiment, topic, pair task, zero-shot, translation, data-to-text) that runs as written."""
    from promptft_cli.cli import starters

    path = starters.write(template, output or Path(f"{template}.yaml"), force)
    command = starters.STARTERS[template].command
    _emit({"config": str(path), "template": template, "run": f"{command} {path}"}, json_out,
          lambda p: typer.echo(f"wrote {p['config']}; next: {p['run']}  (`promptft config show {path}` shows every setting)"))


config_app = typer.Typer(help="Inspect configs.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show(config: ConfigArg, set_: SetOpt = None, json_out: JsonOpt = False) -> None:
    """Print the resolved config (every default filled in, --set applied) as YAML, or JSON with --json."""
    import yaml

    from promptft_cli.api import load_config

    resolved = load_config(config, set_).dump()
    if json_out:
        _emit(resolved, True, None)
    else:
        typer.echo(yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True), nl=False)


def _write_evaluation(metrics: Mapping[str, Any], run_dir: Path, data: Optional[Path]) -> list[Path]:
    from promptft_cli.inference.evaluate import write_evaluation
    from promptft_cli.progress import status

    try:
        files = write_evaluation(metrics, run_dir, data)
    except OSError as exc:  # a read-only shared run: the numbers on stdout still count
        status(f"[yellow]could not save the evaluation files in {run_dir}: {exc.strerror or exc}[/]")
        return []
    status(f"saved {', '.join(f.name for f in files)} in {run_dir}")
    return files


def _task_of(target: Path, overrides: list[str] | None) -> str:
    """The task of a run directory or config (for checking gates before evaluating)."""
    from promptft_cli import runs
    from promptft_cli.config import load_config

    config = target / runs.CONFIG if target.is_dir() else target
    if target.is_dir() and not config.exists():
        from promptft_cli.inference.seeds import multi_seed_dir

        parent = multi_seed_dir(target, overrides)
        seeds = sorted(parent.glob(f"*/{runs.CONFIG}")) if parent else []
        config = seeds[0] if seeds else config
    return load_config(config, None if target.is_dir() else overrides).task if config.exists() else "classification"


def _setup(quiet: bool) -> None:
    from promptft_cli.progress import configure

    # Progress on/off, log level from -v, and library chatter that means nothing to users filtered out.
    configure(quiet=quiet, verbosity=_verbosity)


def _emit(payload: dict[str, Any], as_json: bool, table) -> None:
    if as_json:
        sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    else:
        table(payload)


def main() -> None:
    """Console entry: library errors become one line and exit 2; a failed gate exits 1; Ctrl-C 130."""
    try:
        code = app(standalone_mode=False)
        if code == 130:  # Typer turns Ctrl-C into this return value when not standalone
            raise KeyboardInterrupt
        if isinstance(code, int) and code:
            sys.exit(code)
    except PromptftError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(exc.exit_code)
    except GateFailed as exc:
        typer.secho(f"gate failed: {exc}", fg="yellow", err=True)
        sys.exit(1)
    except Interrupted as exc:
        typer.secho(f"interrupted: {exc}", fg="yellow", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.secho("interrupted", fg="yellow", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except Exception as exc:  # click usage errors arrive here in standalone_mode=False
        # By class name: typer >= 0.24 raises those of its own vendored click copy, not click's.
        if any(cls.__name__ == "ClickException" for cls in type(exc).__mro__):
            exc.show()
            sys.exit(2)
        raise
