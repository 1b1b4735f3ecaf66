"""Fake backends for the serve tests: the HTTP layer and the batcher against a model whose answers are known."""

from __future__ import annotations

import threading
import time

from promptft_cli.serve.app import ServeSettings, create_app
from promptft_cli.serve.backend import Decoding
from promptft_cli.serve.schemas import Limits


def settings(tmp_path, **limits) -> ServeSettings:
    batching = {k: limits.pop(k) for k in ("max_batch", "max_wait_ms") if k in limits}
    return ServeSettings(tmp_path, Limits(**{"max_input_tokens": 12, **limits}), **batching)


class FakeClassifier:
    """Label = the text's first word; one token per word plus two specials; records every forward pass."""

    task = "classification"
    columns = ["text"]
    max_tokens = 12

    def __init__(self, delay: float = 0.0, fail_on: str | None = None) -> None:
        self.delay, self.fail_on, self.batches = delay, fail_on, []
        self.lock = threading.Lock()

    def token_lengths(self, rows):
        return [len(r["text"].split()) + 2 for r in rows]

    def run(self, rows, decoding, max_tokens):
        with self.lock:
            self.batches.append([r["text"] for r in rows])
        if self.delay:
            time.sleep(self.delay)
        if self.fail_on and any(self.fail_on in r["text"] for r in rows):
            raise RuntimeError("boom")
        return [{"label": r["text"].split()[0], "confidence": 1.0, "probabilities": {r["text"].split()[0]: 1.0},
                 "tokens_seen": min(len(r["text"].split()) + 2, max_tokens)} for r in rows]

    def info(self):
        return {"task": "classification", "labels": ["a", "b"], "base_model": "fake", "method": "lora",
                "template": "{text}", "metrics": {"accuracy": 0.5}}


class FakeGenerator(FakeClassifier):
    """Generation = the text upper-cased, then "END"; reports the decoding settings it was given."""

    task = "generation"
    defaults = Decoding(max_new_tokens=8, temperature=0.0, top_p=1.0)

    def run(self, rows, decoding, max_tokens):
        with self.lock:
            self.batches.append([r["text"] for r in rows])
        return [{"generation": r["text"].upper() + " END", "finish_reason": "length",
                 "completion_tokens": decoding.max_new_tokens, "decoding": [decoding.temperature, decoding.top_p]}
                for r in rows]


def app_for(backend, tmp_path, **limits):
    return create_app(settings(tmp_path, **limits), backend=backend)
