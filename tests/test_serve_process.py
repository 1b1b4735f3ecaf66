"""`promptft serve` as a real uvicorn process on a free 127.0.0.1 port: readiness, load, batching, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, run_dir: Path, *flags: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "promptft_cli", "serve", str(run_dir), "--port",
                                      str(self.port), *flags], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.health: list[int] = []

    def wait_ready(self, timeout: float = 90) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            assert self.proc.poll() is None, self.proc.stdout.read()
            try:
                status = httpx.get(self.url + "/health", timeout=2).status_code
                self.health.append(status)
                if status == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError("server not ready")

    def metrics(self) -> str:
        return httpx.get(self.url + "/metrics", timeout=5).text

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


async def classify_many(url: str, n: int, concurrency: int) -> list[tuple[int, list[str], list[str]]]:
    """`n` requests of 1-3 rows from `concurrency` clients; each result: (status, texts sent, labels echoed)."""
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        async def one(i):
            texts = [("it was great " if (i + j) % 2 else "terrible bad film ") * (1 + (i + j) % 4) for j in range(1 + i % 3)]
            async with sem:
                r = await client.post("/v1/classify", json={"inputs": [{"text": t} for t in texts]})
            return r.status_code, texts, r.json().get("outputs", [])

        return await asyncio.gather(*(one(i) for i in range(n)))


@pytest.fixture(scope="module")
def server(trained_run):
    # One server for the whole module (a start costs seconds): a long batching wait, so that the SIGTERM test
    # can catch requests in flight; the load test's 32 clients fill each batch before it runs anyway.
    s = Server(trained_run, "--max-batch", "256", "--max-wait-ms", "1000")
    try:
        s.wait_ready()
        yield s
    finally:
        s.stop()


def test_health_is_503_while_loading_then_200(server):
    assert 503 in server.health and server.health[-1] == 200  # the port opens before the model is loaded
    info = httpx.get(server.url + "/v1/info").json()
    assert info["task"] == "classification" and info["serving"]["max_batch"] == 256


def test_bounded_load_has_no_errors_keeps_order_and_batches(server):
    results = asyncio.run(classify_many(server.url, 300, 32))
    assert [status for status, _, _ in results] == [200] * 300
    # Each request gets its own rows back in its own order: the same text always gets the same answer.
    seen: dict[str, str] = {}
    for _, texts, outputs in results:
        assert len(outputs) == len(texts)
        for text, out in zip(texts, outputs):
            assert seen.setdefault(text, out["label"]) == out["label"]
    text = server.metrics()
    passes, rows = metric(text, "promptft_batch_rows_count"), metric(text, "promptft_batch_rows_sum")
    assert rows >= sum(len(t) for _, t, _ in results) and passes < 300  # forward passes merged requests
    assert metric(text, 'promptft_batch_rows_bucket{le="1"}') < passes
    assert 'status="500"' not in text


def test_bad_input_over_http_is_a_json_error(server):
    r = httpx.post(server.url + "/v1/classify", content=b"{oops", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_json"
    r = httpx.post(server.url + "/v1/classify", json={"inputs": [{"text": "x"}] * 65})
    assert r.status_code == 422 and r.json()["error"]["field"] == "inputs"


def test_sigterm_finishes_accepted_requests_then_exits(server):  # last: it stops the module's server
    s, in_flight = server, []

    async def scenario():
        pending = asyncio.ensure_future(classify_many(s.url, 12, 12))
        for _ in range(200):  # until all 12 sit in the batcher (its 1 s wait holds them)
            await asyncio.sleep(0.02)
            in_flight.append(metric(await asyncio.to_thread(s.metrics), "promptft_requests_in_flight"))
            if in_flight[-1] >= 13:  # the 12, and this /metrics request
                break
        s.proc.send_signal(signal.SIGTERM)
        return await pending

    results = asyncio.run(scenario())
    assert in_flight[-1] >= 13
    assert [status for status, _, _ in results] == [200] * 12
    assert all(len(outputs) == len(texts) for _, texts, outputs in results)
    assert s.proc.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has drained
    with pytest.raises(httpx.TransportError):  # no longer listening
        httpx.get(s.url + "/health", timeout=2)
