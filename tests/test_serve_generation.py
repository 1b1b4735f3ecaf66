"""Serving a real (tiny GPT-2) generation run: /v1/generate and /v1/completions against the generation Predictor."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from test_generation_cli import no_plots, project  # noqa: E402,F401

from promptft_cli.serve.app import create_app  # noqa: E402


@pytest.fixture(scope="module")
def gen_run(tmp_path_factory, tiny_generators):
    from promptft_cli.config import load_config
    from promptft_cli.training.loop import train

    return train(load_config(project(tmp_path_factory.mktemp("serve-gen"), tiny_generators["gpt2"]))).run_dir


@pytest.fixture(scope="module")
def served(gen_run):
    from promptft_cli.serve.backend import load_backend
    from promptft_cli.serve.server import settings_for

    s = settings_for(gen_run, max_batch=8, max_wait_ms=2, quantize=None, max_input_tokens=None,
                     on_long_input="reject", max_new_tokens=6)
    with TestClient(create_app(s, backend=load_backend(gen_run))) as client:
        yield client


def test_generate_matches_the_predictor_and_honours_overrides(served, gen_run):
    from promptft_cli.inference.predict import Predictor

    rows = [{"source": "hallo welt"}, {"source": "guten tag"}]
    r = served.post("/v1/generate", json={"inputs": rows, "max_new_tokens": 3, "temperature": 0})
    assert r.status_code == 200, r.text
    outputs = r.json()["outputs"]
    predictor = Predictor.from_run(gen_run, overrides=["generate.max_new_tokens=3"])
    expected = [g.texts[0] for g in predictor.proba(rows)]
    assert [o["generation"] for o in outputs] == expected
    assert all(o["completion_tokens"] <= 3 and o["finish_reason"] in ("stop", "length") for o in outputs)
    assert served.post("/v1/generate", json={"inputs": rows, "max_new_tokens": 7}).status_code == 422  # over --max-new-tokens
    sampled = served.post("/v1/generate", json={"inputs": rows, "temperature": 0.8, "top_p": 0.9})
    assert sampled.status_code == 200 and len(sampled.json()["outputs"]) == 2


def test_completions_and_info_on_a_generation_run(served):
    r = served.post("/v1/completions", json={"prompt": ["hallo", "tag"], "max_tokens": 2, "n": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "text_completion" and [c["index"] for c in body["choices"]] == [0, 1, 2, 3]
    assert body["choices"][0]["text"] == body["choices"][1]["text"]  # greedy: n copies agree
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    assert served.get("/v1/info").json()["task"] == "generation"
    assert served.post("/v1/classify", json={"inputs": [{"source": "x"}]}).status_code == 404
