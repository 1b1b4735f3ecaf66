"""Dynamic batching: rows of concurrent requests gathered into one forward pass, answered per request.

One collector task on the event loop takes requests off a queue until `max_batch` rows are waiting or
`max_wait_ms` passed since the first; the model then runs in one worker thread, so the event loop keeps
accepting requests (and answering /health) meanwhile, and what arrives during a forward pass forms the
next batch. Rows are sorted by token length before they are cut into batches (less padding), and every
request gets its own rows back in its own order. Requests with different decoding settings never share
a forward pass.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Mapping, Sequence

RunFn = Callable[[Sequence[Mapping[str, str]], Any], list[dict[str, Any]]]


@dataclass
class _Request:
    rows: Sequence[Mapping[str, str]]
    lengths: Sequence[int]
    key: Hashable
    future: asyncio.Future
    results: list[Any] = field(init=False)
    missing: int = field(init=False)

    def __post_init__(self) -> None:
        self.results = [None] * len(self.rows)
        self.missing = len(self.rows)


class DynamicBatcher:
    """`await submit(rows, lengths, key)` → one result per row, computed together with concurrent requests."""

    def __init__(self, run: RunFn, max_batch: int = 32, max_wait_ms: float = 5.0,
                 on_batch: Callable[[int, float], None] | None = None) -> None:
        self.run, self.max_batch, self.max_wait = run, max_batch, max_wait_ms / 1000
        self.on_batch = on_batch
        self.recent_sizes: deque[int] = deque(maxlen=1000)
        """Rows of the latest forward passes (what tests and /metrics look at)."""
        self._queue: asyncio.Queue[_Request] | None = None
        self._task: asyncio.Task | None = None
        # One thread: forward passes run one after another (torch already uses every core inside one).
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="promptft-model")

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._collect())

    async def stop(self) -> None:
        """Finish what is queued, then stop (uvicorn has already let in-flight requests complete)."""
        if self._task is not None:
            while self._queue is not None and not self._queue.empty():
                await asyncio.sleep(0.01)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def submit(self, rows: Sequence[Mapping[str, str]], lengths: Sequence[int], key: Hashable = None) -> list[Any]:
        if self._queue is None:
            raise RuntimeError("the batcher is not started")
        request = _Request(rows, lengths, key, asyncio.get_running_loop().create_future())
        await self._queue.put(request)
        return await request.future

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            waiting = [await self._queue.get()]
            rows = len(waiting[0].rows)
            deadline = loop.time() + self.max_wait
            while rows < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    try:
                        nxt = await asyncio.wait_for(self._queue.get(), left)
                    except asyncio.TimeoutError:
                        break
                waiting.append(nxt)
                rows += len(nxt.rows)
            await self._answer(waiting)

    async def _answer(self, waiting: list[_Request]) -> None:
        by_key: dict[Hashable, list[tuple[_Request, int]]] = {}
        for request in waiting:
            by_key.setdefault(request.key, []).extend((request, i) for i in range(len(request.rows)))
        loop = asyncio.get_running_loop()
        for key, items in by_key.items():
            items.sort(key=lambda item: item[0].lengths[item[1]])
            for start in range(0, len(items), self.max_batch):
                chunk = items[start : start + self.max_batch]
                batch = [request.rows[i] for request, i in chunk]
                began = time.perf_counter()
                try:
                    outputs = await loop.run_in_executor(self._executor, self.run, batch, key)
                except Exception as exc:  # answered as 500 by the endpoint; the server keeps serving
                    for request in {id(r): r for r, _ in chunk}.values():
                        if not request.future.done():
                            request.future.set_exception(exc)
                    continue
                self._record(len(batch), time.perf_counter() - began)
                for (request, i), output in zip(chunk, outputs):
                    request.results[i] = output
                    request.missing -= 1
                    if request.missing == 0 and not request.future.done():
                        request.future.set_result(request.results)

    def _record(self, rows: int, seconds: float) -> None:
        self.recent_sizes.append(rows)
        if self.on_batch is not None:
            self.on_batch(rows, seconds)
