"""GET /metrics: counters and histograms in the Prometheus text format (version 0.0.4).

Written here rather than through prometheus_client: five metrics, one process each, and the format is
a few lines; with `--workers K` every worker process answers with its own numbers (scrape each, or sum).
"""

from __future__ import annotations

import threading
from collections import defaultdict

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.total += value
        self.n += 1

    def lines(self, name: str, labels: str) -> list[str]:
        sep = "," if labels else ""
        out = [f'{name}_bucket{{{labels}{sep}le="{_num(b)}"}} {c}' for b, c in zip(self.buckets, self.counts)]
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.n}')
        brace = f"{{{labels}}}" if labels else ""
        return out + [f"{name}_sum{brace} {self.total:.6f}", f"{name}_count{brace} {self.n}"]


class Metrics:
    """What the server counts: requests and errors by endpoint and status, latency, batch sizes, in-flight requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.latency: dict[str, Histogram] = {}
        self.batch_size = Histogram(BATCH_BUCKETS)
        self.batch_seconds = Histogram(LATENCY_BUCKETS)
        self.in_flight = 0

    def request_done(self, endpoint: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(endpoint, status)] += 1
            self.latency.setdefault(endpoint, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def batch_done(self, rows: int, seconds: float) -> None:
        with self._lock:
            self.batch_size.observe(rows)
            self.batch_seconds.observe(seconds)

    def render(self) -> str:
        with self._lock:
            lines = ["# HELP promptft_requests_total HTTP requests answered, by endpoint and status code.",
                     "# TYPE promptft_requests_total counter"]
            lines += [f'promptft_requests_total{{endpoint="{e}",status="{s}"}} {n}' for (e, s), n in sorted(self.requests.items())]
            lines += ["# HELP promptft_errors_total Requests answered with a 4xx (client) or 5xx (server) status.",
                      "# TYPE promptft_errors_total counter"]
            errors: dict[tuple[str, str], int] = defaultdict(int)
            for (e, s), n in self.requests.items():
                if s >= 400:
                    errors[(e, "server" if s >= 500 else "client")] += n
            lines += [f'promptft_errors_total{{endpoint="{e}",kind="{k}"}} {n}' for (e, k), n in sorted(errors.items())]
            lines += ["# HELP promptft_request_seconds Time from request received to response, by endpoint.",
                      "# TYPE promptft_request_seconds histogram"]
            for e, h in sorted(self.latency.items()):
                lines += h.lines("promptft_request_seconds", f'endpoint="{e}"')
            lines += ["# HELP promptft_batch_rows Rows per model forward pass (dynamic batching).",
                      "# TYPE promptft_batch_rows histogram", *self.batch_size.lines("promptft_batch_rows", ""),
                      "# HELP promptft_batch_seconds Model time per forward pass.",
                      "# TYPE promptft_batch_seconds histogram", *self.batch_seconds.lines("promptft_batch_seconds", ""),
                      "# HELP promptft_requests_in_flight Requests received and not yet answered.",
                      "# TYPE promptft_requests_in_flight gauge", f"promptft_requests_in_flight {self.in_flight}"]
        return "\n".join(lines) + "\n"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)
