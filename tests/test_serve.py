"""The HTTP API through FastAPI's test client: endpoints, every bad input, batching, order, errors, draining."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from serve_fakes import FakeClassifier, FakeGenerator, app_for, settings  # noqa: E402

from promptft_cli.serve.app import create_app  # noqa: E402


@pytest.fixture
def classifier():
    return FakeClassifier()


@pytest.fixture
def client(classifier, tmp_path):
    with TestClient(app_for(classifier, tmp_path, max_inputs=4, max_body_bytes=2000)) as c:
        yield c


@pytest.fixture
def gen_client(tmp_path):
    with TestClient(app_for(FakeGenerator(), tmp_path, max_new_tokens=16)) as c:
        yield c


def test_classify_answers_each_input_in_order(client):
    r = client.post("/v1/classify", json={"inputs": [{"text": "b x"}, {"text": "a"}, {"text": "c y z"}]})
    assert r.status_code == 200
    outputs = r.json()["outputs"]
    assert [o["label"] for o in outputs] == ["b", "a", "c"]
    assert set(outputs[0]) == {"label", "confidence", "probabilities", "tokens_seen", "truncated"}
    assert not any(o["truncated"] for o in outputs)
    assert r.headers["x-request-id"]


def test_health_info_and_metrics(client):
    assert client.get("/health").json() == {"status": "ok", "task": "classification"}
    info = client.get("/v1/info").json()
    assert info["labels"] == ["a", "b"] and info["serving"]["limits"]["max_inputs"] == 4
    client.post("/v1/classify", json={"inputs": [{"text": "a"}]})
    client.post("/v1/classify", json={"inputs": []})
    text = client.get("/metrics").text
    assert 'promptft_requests_total{endpoint="/v1/classify",status="200"} 1' in text
    assert 'promptft_errors_total{endpoint="/v1/classify",kind="client"} 1' in text
    assert 'promptft_request_seconds_count{endpoint="/v1/classify"} 2' in text
    assert "promptft_batch_rows_count 1" in text
    assert "# TYPE promptft_request_seconds histogram" in text


@pytest.mark.parametrize("body, status, kind, field", [
    (b"{not json", 400, "invalid_json", "body"),
    (b"", 400, "invalid_json", "body"),
    (b'{"inputs": [{"text": "a"}], "extra": 1}', 422, "invalid_request", "extra"),
    (b"{}", 422, "invalid_request", "inputs"),
    (b'{"inputs": "a"}', 422, "invalid_request", "inputs"),
    (b'{"inputs": []}', 422, "invalid_request", "inputs"),
    (b'{"inputs": [{"text": "a"}, {"text": "a"}, {"text": "a"}, {"text": "a"}, {"text": "a"}]}', 422, "invalid_request", "inputs"),
    (b'{"inputs": [{"text": "a"}, {"txt": "a"}]}', 422, "invalid_request", "inputs[1].text"),
    (b'{"inputs": [{"text": 3}]}', 422, "invalid_request", "inputs[0].text"),
    (b'{"inputs": [{"text": "a", "label": "x"}]}', 422, "invalid_request", "inputs[0].label"),
    (b'{"inputs": [{"text": "   "}]}', 422, "invalid_request", "inputs[0].text"),
    (b'{"inputs": [{"text": "a"}, {"text": "' + b"w " * 20 + b'"}]}', 422, "input_too_long", "inputs[1]"),
    (b'[1, 2]', 422, "invalid_request", "body"),
])
def test_bad_classify_requests_name_the_field(client, classifier, body, status, kind, field):
    r = client.post("/v1/classify", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert (error["type"], error["field"]) == (kind, field)
    assert error["message"] and error["request_id"] == r.headers["x-request-id"]
    assert classifier.batches == []  # nothing bad reaches the model


def test_body_over_the_limit_is_413_declared_or_streamed(client, classifier):
    big = json.dumps({"inputs": [{"text": "a " * 1500}]}).encode()
    r = client.post("/v1/classify", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["type"] == "body_too_large"

    def chunks():  # no Content-Length: counted as it streams in
        for i in range(0, len(big), 500):
            yield big[i : i + 500]

    r = client.post("/v1/classify", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert classifier.batches == []


def test_long_inputs_are_truncated_and_say_so_when_started_that_way(tmp_path):
    with TestClient(app_for(FakeClassifier(), tmp_path, on_long_input="truncate")) as c:
        r = c.post("/v1/classify", json={"inputs": [{"text": "a b"}, {"text": "b " * 30}]})
    assert r.status_code == 200
    assert [o["truncated"] for o in r.json()["outputs"]] == [False, True]
    assert r.json()["outputs"][1]["tokens_seen"] == 12  # the backend was told the limit


def test_a_model_failure_is_a_500_with_a_request_id_and_the_server_keeps_serving(tmp_path, caplog):
    with TestClient(app_for(FakeClassifier(fail_on="crash"), tmp_path)) as c:
        r = c.post("/v1/classify", json={"inputs": [{"text": "crash now"}]})
        assert r.status_code == 500
        rid = r.json()["error"]["request_id"]
        assert rid in r.json()["error"]["message"] and rid in caplog.text
        assert c.post("/v1/classify", json={"inputs": [{"text": "a"}]}).status_code == 200
        assert 'kind="server"} 1' in c.get("/metrics").text


def test_wrong_task_endpoint_is_404_naming_the_right_one(client, gen_client):
    r = client.post("/v1/generate", json={"inputs": [{"text": "a"}]})
    assert r.status_code == 404 and "/v1/classify" in r.json()["error"]["message"]
    r = gen_client.post("/v1/classify", json={"inputs": [{"text": "a"}]})
    assert r.status_code == 404 and "/v1/generate" in r.json()["error"]["message"]


def test_concurrent_requests_are_batched_and_answered_in_their_own_order(tmp_path):
    backend = FakeClassifier(delay=0.02)
    with TestClient(app_for(backend, tmp_path, max_batch=16, max_wait_ms=30)) as c:
        def ask(i):
            texts = [f"w{i}x{j} " + "pad " * ((i * 7 + j) % 5) for j in range(3)]
            r = c.post("/v1/classify", json={"inputs": [{"text": t} for t in texts]})
            return [t.split()[0] for t in texts], [o["label"] for o in r.json()["outputs"]]

        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(ask, range(24)))
        metrics = c.get("/metrics").text
    assert all(sent == got for sent, got in answers)
    sizes = [len(b) for b in backend.batches]
    assert sum(sizes) == 72 and max(sizes) > 3 and max(sizes) <= 16  # rows of several requests in one pass
    assert "promptft_batch_rows_count" in metrics
    for batch in backend.batches:  # sorted by length inside a forward pass
        lengths = [len(t.split()) for t in batch]
        assert lengths == sorted(lengths)


def test_health_is_503_until_the_model_is_loaded(tmp_path):
    release = threading.Event()

    def load():
        release.wait(10)
        return FakeClassifier()

    with TestClient(create_app(settings(tmp_path), load=load)) as c:
        r = c.get("/health")
        assert r.status_code == 503 and r.json()["status"] == "loading"
        assert c.post("/v1/classify", json={"inputs": [{"text": "a"}]}).status_code == 503
        release.set()
        for _ in range(200):
            if c.get("/health").status_code == 200:
                break
            threading.Event().wait(0.01)
        assert c.get("/health").json()["status"] == "ok"
        assert c.post("/v1/classify", json={"inputs": [{"text": "a"}]}).status_code == 200


def test_draining_answers_new_requests_with_503(client):
    from promptft_cli.serve.app import begin_drain

    begin_drain()
    r = client.post("/v1/classify", json={"inputs": [{"text": "a"}]})
    assert r.status_code == 503 and r.json()["error"]["type"] == "shutting_down"
    assert client.get("/health").status_code == 503
    assert client.get("/metrics").status_code == 200


# --- generation runs ---


def test_generate_with_decoding_overrides(gen_client):
    r = gen_client.post("/v1/generate", json={"inputs": [{"text": "hi there"}, {"text": "yo"}],
                                              "max_new_tokens": 5, "temperature": 0.7, "top_p": 0.9})
    assert r.status_code == 200
    outputs = r.json()["outputs"]
    assert [o["generation"] for o in outputs] == ["HI THERE END", "YO END"]
    assert outputs[0]["completion_tokens"] == 5 and outputs[0]["decoding"] == [0.7, 0.9]
    r = gen_client.post("/v1/generate", json={"inputs": [{"text": "hi there"}], "stop": ["THERE"]})
    assert r.json()["outputs"][0] | {} == {**r.json()["outputs"][0], "generation": "HI ", "finish_reason": "stop"}
    assert r.json()["outputs"][0]["completion_tokens"] == 8  # the run's default


@pytest.mark.parametrize("extra, field", [
    ({"max_new_tokens": 17}, "max_new_tokens"), ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"max_new_tokens": "5"}, "max_new_tokens"), ({"temperature": 2.5}, "temperature"),
    ({"temperature": -1}, "temperature"), ({"top_p": 0}, "top_p"), ({"top_p": 1.5}, "top_p"),
    ({"stop": ["a"] * 5}, "stop"), ({"stop": [""]}, "stop[0]"), ({"num_beams": 4}, "num_beams"),
])
def test_decoding_parameters_out_of_range_are_refused(gen_client, extra, field):
    r = gen_client.post("/v1/generate", json={"inputs": [{"text": "a"}], **extra})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field


def test_completions_in_openai_shape(gen_client):
    r = gen_client.post("/v1/completions", json={"model": "x", "prompt": ["ab", "cd"], "max_tokens": 3, "n": 2,
                                                 "temperature": 1.0, "stop": "END"})
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-")
    assert isinstance(body["created"], int) and body["model"]
    assert [(c["index"], c["text"], c["finish_reason"]) for c in body["choices"]] == [
        (0, "AB ", "stop"), (1, "AB ", "stop"), (2, "CD ", "stop"), (3, "CD ", "stop")]
    assert body["usage"] == {"prompt_tokens": 6, "completion_tokens": 12, "total_tokens": 18}
    single = gen_client.post("/v1/completions", json={"prompt": "hello"}).json()
    assert [c["text"] for c in single["choices"]] == ["HELLO END"]
    assert single["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize("body, field", [
    ({"prompt": []}, "prompt"), ({"prompt": 3}, "prompt"), ({}, "prompt"), ({"prompt": "a", "n": 9}, "n"),
    ({"prompt": "a", "stream": True}, "stream"), ({"prompt": "a", "logprobs": 2}, "logprobs"),
    ({"prompt": "a", "max_tokens": 999}, "max_tokens"),
])
def test_bad_completion_requests(gen_client, body, field):
    r = gen_client.post("/v1/completions", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field


# --- the real classifier behind the app ---


def test_real_run_served_matches_predict(trained_run, tmp_path):
    from promptft_cli.inference.predict import Predictor
    from promptft_cli.serve.backend import load_backend
    from promptft_cli.serve.server import settings_for

    s = settings_for(trained_run, max_batch=8, max_wait_ms=2, quantize=None, max_input_tokens=None,
                     on_long_input="reject")
    texts = ["it was great", "terrible film", "a good movie , not bad", "bad"]
    with TestClient(create_app(s, backend=load_backend(trained_run))) as c:
        r = c.post("/v1/classify", json={"inputs": [{"text": t} for t in texts]})
        info = c.get("/v1/info").json()
    predictor = Predictor.from_run(trained_run)
    expected = predictor.proba([{"text": t} for t in texts])
    outputs = r.json()["outputs"]
    assert [o["label"] for o in outputs] == [predictor.labels[int(p.argmax())] for p in expected]
    for o, p in zip(outputs, expected):
        assert o["probabilities"] == pytest.approx(dict(zip(predictor.labels, p.tolist())), abs=1e-5)
    assert info["task"] == "classification" and info["method"] == "lora" and info["labels"] == predictor.labels


def test_real_run_int8_and_truncation_at_the_start_up_limit(trained_run):
    from promptft_cli.inference.predict import Predictor
    from promptft_cli.serve.backend import load_backend
    from promptft_cli.serve.server import settings_for

    s = settings_for(trained_run, max_batch=8, max_wait_ms=2, quantize="int8", max_input_tokens=8,
                     on_long_input="truncate")
    texts = ["it was great", "this film is terrible . a long , long , dull and boring review of it"]
    with TestClient(create_app(s, backend=load_backend(trained_run, "int8"))) as c:
        outputs = c.post("/v1/classify", json={"inputs": [{"text": t} for t in texts]}).json()["outputs"]
        assert c.get("/v1/info").json()["quantized"] is True
    assert [o["truncated"] for o in outputs] == [False, True]
    quantized = Predictor.from_run(trained_run, quantize="int8")
    cut = quantized.proba([{"text": texts[1]}], max_length=8)[0]
    # Dynamic int8 quantizes activations with each batch's range, so batch-mates move the last digits.
    assert outputs[1]["probabilities"] == pytest.approx(dict(zip(quantized.labels, cut.tolist())), abs=5e-3)
    whole = quantized.proba([{"text": texts[1]}])[0]
    assert abs(whole - cut).max() > 1e-6  # the cut input is what was scored


def test_serve_refuses_flags_the_run_cannot_honour(trained_run):
    from promptft_cli.errors import PromptftError
    from promptft_cli.serve.server import settings_for

    with pytest.raises(PromptftError, match="over the run's model.max_length") as err:
        settings_for(trained_run, max_batch=8, max_wait_ms=2, quantize=None, max_input_tokens=10_000,
                     on_long_input="reject")
    assert err.value.field == "--max-input-tokens"
    with pytest.raises(PromptftError, match="reject or truncate"):
        settings_for(trained_run, max_batch=8, max_wait_ms=2, quantize=None, max_input_tokens=None,
                     on_long_input="cut")
