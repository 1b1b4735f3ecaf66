"""The command line: each command parses, calls the library, and renders. Nothing heavy is imported here."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from promptft_cli import __version__
from promptft_cli.errors import GateFailed, PromptftError

app = typer.Typer(
    rich_markup_mode="rich",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Prompt-efficient fine-tuning: templates, verbalizers, soft prompts and LoRA on small data.\n\n"
    "Exit codes: 0 ok, 1 quality gate failed, 2 bad input or config, 130 interrupted.",
)

ConfigArg = Annotated[Path, typer.Argument(help="YAML config file.", show_default=False)]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", "-s", help="Override a config key, e.g. --set train.lr=1e-3 (repeatable).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout instead of tables.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or status lines.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"promptft {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")] = False,
) -> None:
    pass


@app.command()
def prepare(config: ConfigArg, set_: SetOpt = None, overwrite: Annotated[bool, typer.Option(help="Allow writing into a finished run's directory.")] = False,
            json_out: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Read, clean, split and sample the data; write prepared JSONL and data_report.json to the run directory."""
    from promptft_cli import render
    from promptft_cli.config import load_config
    from promptft_cli.prepare import prepare as run_prepare
    from promptft_cli.runs import check_output_dir

    _setup(quiet or json_out)
    cfg = load_config(config, set_)
    check_output_dir(cfg.run_dir, overwrite)
    data = run_prepare(cfg, force=True)
    _emit(data.report, json_out, render.data_report)


@app.command()
def train(config: ConfigArg, set_: SetOpt = None,
          overwrite: Annotated[bool, typer.Option(help="Replace a finished run in output_dir.")] = False,
          json_out: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Train per the config (preparing data if needed), keep the best checkpoint, and test it."""
    from promptft_cli import render
    from promptft_cli.config import load_config
    from promptft_cli.train import train as run_train

    _setup(quiet or json_out)
    cfg = load_config(config, set_)
    result = run_train(cfg, overwrite=overwrite)
    _emit({"run_dir": str(result.run_dir), **result.metrics}, json_out, render.metrics)


@app.command()
def evaluate(
    target: Annotated[Path, typer.Argument(help="A run directory, or a config file (its output_dir is used).", show_default=False)],
    data: Annotated[Optional[Path], typer.Option(help="Labelled CSV/TSV/JSONL to score instead of the run's test split.")] = None,
    min_accuracy: Annotated[Optional[float], typer.Option(help="Exit 1 when accuracy is below this (for CI gates).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Examples per forward pass.")] = None,
    set_: SetOpt = None, json_out: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Accuracy, macro-F1, per-class scores and the confusion matrix of a trained run."""
    from promptft_cli import render
    from promptft_cli.evaluate import evaluate_target

    _setup(quiet or json_out)
    metrics, _ = evaluate_target(target, data, set_, batch_size)
    _emit(metrics, json_out, render.metrics)
    if min_accuracy is not None and metrics["accuracy"] < min_accuracy:
        raise GateFailed(f"accuracy {metrics['accuracy']:.4f} is below --min-accuracy {min_accuracy}")


@app.command()
def predict(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory.", show_default=False)],
    input: Annotated[str, typer.Argument(help="CSV/TSV/JSONL file, or - for JSONL on stdin.", show_default=False)],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output file: .csv, .tsv or .jsonl (default: JSONL on stdout).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Examples per forward pass.")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Label new rows: keeps the input columns and adds prediction, confidence and prob_<label>."""
    from promptft_cli.predict import Predictor, predictions, read_inputs, write_predictions
    from promptft_cli.progress import status

    _setup(quiet or output is None)
    predictor = Predictor.from_run(run_dir)
    cfg = predictor.cfg
    n = write_predictions(predictions(predictor, read_inputs(input, cfg.data.columns, cfg.data.encoding), batch_size), output)
    status(f"wrote {n} predictions to {output}")


def _setup(quiet: bool) -> None:
    import os
    import warnings

    from promptft_cli.progress import set_quiet

    set_quiet(quiet)
    # Library chatter (weight-loading bars, deprecation notes) means nothing to our users.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*[Tt]oken type ids are not supported.*")


def _emit(payload: dict[str, Any], as_json: bool, table) -> None:
    if as_json:
        sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    else:
        table(payload)


def main() -> None:
    """Console entry: library errors become one line and exit 2; a failed gate exits 1; Ctrl-C 130."""
    try:
        app(standalone_mode=False)
    except PromptftError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(exc.exit_code)
    except GateFailed as exc:
        typer.secho(f"gate failed: {exc}", fg="yellow", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.secho("interrupted", fg="yellow", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except Exception as exc:  # click usage errors arrive here in standalone_mode=False
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(2)
        raise
