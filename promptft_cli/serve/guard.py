"""The ASGI layer in front of every route: request ids, body size, draining, metrics and the last-resort 500.

Pure ASGI rather than Starlette's BaseHTTPMiddleware: the body has to be counted as it streams in (a
chunked upload has no Content-Length), and an exception must become a 500 here instead of propagating.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from promptft_cli.serve.schemas import error_body

log = logging.getLogger("promptft.serve")
ROUTES = ("/v1/classify", "/v1/generate", "/v1/completions", "/health", "/v1/info", "/metrics")


class ApiError(Exception):
    """An answer other than 200: status, error type, message and the offending field."""

    def __init__(self, status: int, kind: str, message: str, field: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.field, self.extra = status, kind, message, field, extra


class Guard:
    def __init__(self, app, state) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        rid = uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = rid
        endpoint = scope["path"] if scope["path"] in ROUTES else "other"
        began, status = time.perf_counter(), [0]
        metrics = self.state.metrics

        async def send_tracked(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        metrics.in_flight += 1
        try:
            if self.state.draining and endpoint != "/metrics":
                return await _reply(send_tracked, 503, error_body(
                    "shutting_down", "the server is shutting down; retry on another replica", None, rid), close=True)
            if scope["method"] == "POST":
                body = await _read_body(receive, self.state.settings.limits.max_body_bytes, _declared_length(scope))
                if body is None:
                    limit = self.state.settings.limits.max_body_bytes
                    return await _reply(send_tracked, 413, error_body(
                        "body_too_large", f"the request body is over {limit} bytes", "body", rid), close=True)
                receive = _replay(body, receive)
            await self.app(scope, receive, send_tracked)
        except Exception:
            log.exception("request %s (%s %s) failed", rid, scope["method"], scope["path"])
            if not status[0]:  # nothing sent yet (a started response cannot be replaced)
                await _reply(send_tracked, 500, error_body(
                    "internal_error", f"internal error; request id {rid} is in the server log", None, rid))
        finally:
            metrics.in_flight -= 1
            metrics.request_done(endpoint, status[0] or 500, time.perf_counter() - began)


def _declared_length(scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _read_body(receive, limit: int, declared: int | None) -> bytes | None:
    """The whole body, or None as soon as it is known to be over `limit` (declared or streamed)."""
    if declared is not None and declared > limit:
        return None
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive):
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _reply(send, status: int, payload: dict, close: bool = False) -> None:
    data = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
