"""The HTTP API: routes over a `Backend`, with the dynamic batcher, limits, metrics and draining.

Bodies are parsed here (json + pydantic), not by FastAPI's signature binding, because the input models
depend on the run's text columns and every error must come back in one shape naming the field.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures (`request: Request`) at run time.

import asyncio
import json
import logging
import weakref
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from promptft_cli.serve.backend import Backend, Decoding
from promptft_cli.serve.batching import DynamicBatcher
from promptft_cli.serve.guard import ApiError, Guard
from promptft_cli.serve.metrics import Metrics
from promptft_cli.serve.schemas import Limits, error_body, field_path, request_models

log = logging.getLogger("promptft.serve")
_LIVE: "weakref.WeakSet[ServerState]" = weakref.WeakSet()


@dataclass(frozen=True)
class ServeSettings:
    run_dir: Path
    limits: Limits
    max_batch: int = 32
    max_wait_ms: float = 5.0
    quantize: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "run_dir": str(self.run_dir), "limits": self.limits.to_json()}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> "ServeSettings":
        return cls(**{**raw, "run_dir": Path(raw["run_dir"]), "limits": Limits(**raw["limits"])})


class ServerState:
    """One app's model, batcher and counters; `draining` once SIGTERM arrived."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings, self.metrics = settings, Metrics()
        self.backend: Backend | None = None
        self.models: dict[str, Any] = {}
        self.load_error: str | None = None
        self.draining = False
        self.batcher = DynamicBatcher(self._run, settings.max_batch, settings.max_wait_ms, self.metrics.batch_done)
        _LIVE.add(self)

    def _run(self, rows, decoding):
        return self.backend.run(rows, decoding, self.settings.limits.max_input_tokens)

    def loaded(self, backend: Backend) -> None:
        self.models = request_models(backend.columns, self.settings.limits)
        self.backend = backend
        log.info("serving %s (%s run) on the dynamic batcher: max %d rows, %g ms wait", self.settings.run_dir,
                 backend.task, self.settings.max_batch, self.settings.max_wait_ms)

    def ready(self, task: str) -> Backend:
        if self.backend is None:
            raise ApiError(503, "loading", self.load_error or "the model is still loading; retry when GET /health is 200")
        if self.backend.task != task:
            route = "/v1/classify" if self.backend.task == "classification" else "/v1/generate or /v1/completions"
            raise ApiError(404, "wrong_task", f"this server holds a {self.backend.task} run; use {route}")
        return self.backend


def _drain_on_signals() -> None:
    """Chain onto the server's SIGTERM/SIGINT handlers (uvicorn installs them before start-up, in every worker).

    uvicorn then stops accepting connections and waits for in-flight requests; requests still arriving on
    open connections meanwhile get 503, and /health turns 503, so a load balancer takes the replica out.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():  # e.g. under a test client: no signals
        return
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if callable(previous) and not getattr(previous, "drains", False):
            def handler(signum, frame, previous=previous):
                begin_drain()
                previous(signum, frame)

            handler.drains = True
            signal.signal(sig, handler)


def begin_drain() -> None:
    """SIGTERM: every app in this process answers new requests with 503 while in-flight ones finish."""
    for state in list(_LIVE):
        state.draining = True


def create_app(settings: ServeSettings, load: Callable[[], Backend] | None = None, backend: Backend | None = None):
    """The FastAPI app: serves `backend`, or calls `load` in a thread at start-up (GET /health is 503 until done)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, PlainTextResponse

    state = ServerState(settings)

    @asynccontextmanager
    async def lifespan(app):
        _drain_on_signals()
        state.batcher.start()
        task = None
        if backend is not None:
            state.loaded(backend)
        elif load is not None:
            task = asyncio.create_task(_load(state, load))
        yield
        if task is not None:
            task.cancel()
        await state.batcher.stop()

    app = FastAPI(title="promptft serve", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.serve = state
    app.add_middleware(Guard, state=state)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        rid = request.state.request_id
        return JSONResponse(error_body(exc.kind, exc.message, exc.field, rid, **exc.extra), status_code=exc.status)

    @app.get("/health")
    async def health():
        if state.draining:
            return JSONResponse({"status": "shutting_down"}, status_code=503)
        if state.backend is None:
            return JSONResponse({"status": "failed" if state.load_error else "loading", "error": state.load_error},
                                status_code=503)
        return {"status": "ok", "task": state.backend.task}

    @app.get("/v1/info")
    async def info():
        if state.backend is None:
            raise ApiError(503, "loading", "the model is still loading")
        s = state.settings
        return {**state.backend.info(), "serving": {"max_batch": s.max_batch, "max_wait_ms": s.max_wait_ms,
                                                    "quantize": s.quantize, "limits": s.limits.to_json()}}

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(state.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.post("/v1/classify")
    async def classify(request: Request):
        state.ready("classification")
        body = await _parse(request, state.models["classify"])
        rows = [r.model_dump(by_alias=True) for r in body.inputs]
        outputs, cut = await _score(state, request, rows, None, "inputs")
        return {"outputs": [{**o, "truncated": c} for o, c in zip(outputs, cut)]}

    @app.post("/v1/generate")
    async def generate(request: Request):
        backend = state.ready("generation")
        body = await _parse(request, state.models["generate"])
        rows = [r.model_dump(by_alias=True) for r in body.inputs]
        decoding = _decoding(backend, body.max_new_tokens, body.temperature, body.top_p, body.stop)
        outputs, cut = await _score(state, request, rows, decoding, "inputs")
        return {"outputs": [{**_stopped(o, decoding), "truncated": c} for o, c in zip(outputs, cut)]}

    @app.post("/v1/completions")
    async def completions(request: Request):
        from promptft_cli.serve.completions import completion_response

        backend = state.ready("generation")
        body = await _parse(request, state.models["completions"])
        if len(backend.columns) != 1:
            raise ApiError(400, "unsupported", f"this run reads {len(backend.columns)} text columns "
                           f"({', '.join(backend.columns)}); a single prompt cannot fill them: use /v1/generate", "prompt")
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        stop = [body.stop] if isinstance(body.stop, str) else body.stop
        decoding = _decoding(backend, body.max_tokens, body.temperature, body.top_p, stop)
        rows = [{backend.columns[0]: p} for p in prompts for _ in range(body.n)]
        outputs, cut = await _score(state, request, rows, decoding, "prompt")
        lengths = backend.token_lengths([{backend.columns[0]: p} for p in prompts])
        return completion_response(request.state.request_id, settings.run_dir.name,
                                   [_stopped(o, decoding) for o in outputs], cut, lengths, body.n,
                                   settings.limits.max_input_tokens)

    return app


async def _load(state: ServerState, load: Callable[[], Backend]) -> None:
    try:
        state.loaded(await asyncio.to_thread(load))
    except Exception as exc:  # the server stays up and says why on /health
        state.load_error = f"loading the run failed: {exc}"
        log.exception("loading %s failed", state.settings.run_dir)


async def _parse(request, model):
    from pydantic import ValidationError

    raw = await request.body()
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}", "body") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [{"field": field_path(e["loc"]), "message": e["msg"]} for e in exc.errors()]
        first = errors[0]
        raise ApiError(422, "invalid_request", f"{first['field']}: {first['message']}", first["field"],
                       errors=errors) from None


async def _score(state: ServerState, request, rows, decoding, field: str):
    """Outputs for `rows` through the batcher, with each row's `truncated` flag; applies the token limit."""
    limits = state.settings.limits
    lengths = await asyncio.to_thread(state.backend.token_lengths, rows)
    over = [i for i, n in enumerate(lengths) if n > limits.max_input_tokens]
    if over and limits.on_long_input == "reject":
        i = over[0]
        raise ApiError(422, "input_too_long", f"{field}[{i}] has {lengths[i]} tokens; the limit is "
                       f"{limits.max_input_tokens} (the server was started with --on-long-input reject)", f"{field}[{i}]",
                       too_long=over)
    try:
        outputs = await state.batcher.submit(rows, lengths, decoding)
    except Exception:
        rid = request.state.request_id
        log.exception("request %s failed in the model", rid)
        raise ApiError(500, "internal_error", f"the model failed on this request (request id {rid} in the server "
                       "log); the server keeps serving") from None
    return outputs, [n > limits.max_input_tokens for n in lengths]


def _decoding(backend, max_new_tokens, temperature, top_p, stop) -> Decoding:
    default = backend.defaults
    return Decoding(max_new_tokens=max_new_tokens or default.max_new_tokens,
                    temperature=default.temperature if temperature is None else float(temperature),
                    top_p=default.top_p if top_p is None else float(top_p),
                    stop=tuple(stop) if stop else default.stop)


def _stopped(output: dict[str, Any], decoding: Decoding) -> dict[str, Any]:
    """Cut a generation at the first stop string (a backend may stop early itself; this makes it exact)."""
    text = output["generation"]
    cuts = [text.find(s) for s in decoding.stop if s in text]
    if not cuts:
        return output
    return {**output, "generation": text[: min(cuts)], "finish_reason": "stop"}


def app_from_env():
    """uvicorn factory for `promptft serve` (one per worker process): settings come from the environment."""
    import os

    from promptft_cli.serve.backend import load_backend
    from promptft_cli.serve.server import SETTINGS_ENV

    settings = ServeSettings.from_json(json.loads(os.environ[SETTINGS_ENV]))
    return create_app(settings, load=lambda: load_backend(settings.run_dir, settings.quantize))
