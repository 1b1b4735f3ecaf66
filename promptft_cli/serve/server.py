"""`promptft serve`: check the run and the flags, then run uvicorn (app.py drains on SIGTERM).

Imported only by the serve command (uvicorn is the optional `serve` extra). The run is checked here,
before the port opens (a wrong path or flag is one line and exit 2); the model itself loads in the
background once the server listens, so GET /health answers 503 until it is ready.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import uvicorn

from promptft_cli import runs
from promptft_cli.errors import PromptftError
from promptft_cli.serve.app import ServeSettings
from promptft_cli.serve.schemas import Limits

SETTINGS_ENV = "PROMPTFT_SERVE_SETTINGS"
SERVED_TASKS = ("classification", "generation")


def settings_for(run_dir: Path, *, max_batch: int, max_wait_ms: float, quantize: str | None,
                 max_input_tokens: int | None, on_long_input: str, **limits) -> ServeSettings:
    """Validated settings for serving `run_dir`; raises PromptftError naming the flag that cannot work."""
    from promptft_cli.config import load_config
    from promptft_cli.inference.quantize import check_quantize

    runs.require_finished(run_dir)
    cfg = load_config(run_dir / runs.CONFIG)
    if cfg.task not in SERVED_TASKS:
        raise PromptftError(f"serving '{cfg.task}' runs is not supported", field="task")
    check_quantize(quantize, cfg)
    if on_long_input not in ("reject", "truncate"):
        raise PromptftError(f"--on-long-input must be reject or truncate, not '{on_long_input}'", field="--on-long-input")
    longest = cfg.model.max_length
    if max_input_tokens is not None and max_input_tokens > longest:
        raise PromptftError(f"--max-input-tokens {max_input_tokens} is over the run's model.max_length {longest}, "
                            "the longest input the model was trained to read", field="--max-input-tokens")
    return ServeSettings(run_dir.resolve(), Limits(max_input_tokens or longest, on_long_input, **limits),
                         max_batch, max_wait_ms, quantize)


def run_server(settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
               log_level: str = "info", graceful_seconds: int = 30) -> None:
    """Serve until SIGTERM/Ctrl-C; `workers` processes each load the model and share the port."""
    os.environ[SETTINGS_ENV] = json.dumps(settings.to_json())  # read by every worker's app factory
    uvicorn.run("promptft_cli.serve.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level=log_level, timeout_graceful_shutdown=graceful_seconds)
