"""`morph serve`'s routes through FastAPI's TestClient: Neuronpedia's three routes answer requests in the
published shape with responses of the published shape (tests/data: the schemas, from the committed OpenAPI
spec), with the numbers of the served SAE (folded as Neuronpedia folds them); the guards refuse with a 4xx
and a one-line reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from morph.features.engine import Engine

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

SCHEMAS = json.loads((Path(__file__).parent / "data" / "neuronpedia_inference_schemas.json").read_text())
TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "array": list, "null": type(None)}


def check_shape(value, schema_name: str) -> None:
    """`value` has the schema's required keys, and every key it has the schema's type (recursively)."""
    schema = SCHEMAS[schema_name]
    assert isinstance(value, dict), schema_name
    missing = set(schema["required"]) - value.keys()
    assert not missing, f"{schema_name} lacks {missing}"
    for key, item in value.items():
        assert key in schema["properties"], f"{schema_name} has no field {key!r}"
        spec = schema["properties"][key]
        kinds = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
        assert any(isinstance(item, TYPES[k]) and not (k in ("integer", "number") and isinstance(item, bool))
                   for k in kinds), f"{schema_name}.{key}: {item!r} is not {kinds}"
        if "enum" in spec:
            assert item in spec["enum"]
        if isinstance(item, list) and "items" in spec:
            for element in item:
                if spec["items"] in SCHEMAS:
                    check_shape(element, spec["items"])
                else:
                    assert isinstance(element, TYPES[spec["items"]]), f"{schema_name}.{key}[]"


@pytest.fixture(scope="module")
def engine(tiny_lens, one_torch_thread):
    return Engine(tiny_lens)


def client_for(engine, **settings):
    from fastapi.testclient import TestClient

    from morph.server.app import ServeSettings, create_app

    return TestClient(create_app(engine, ServeSettings(**settings)))


def test_topk_by_token_in_neuronpedias_shapes_with_the_saes_folded_numbers(engine):
    import torch

    client = client_for(engine)
    prompt = "The lighthouse keeper climbed the stairs."
    response = client.post("/v1/activation/topk-by-token", json={
        "prompt": prompt, "model": engine.model_name, "source": engine.sae_name, "ignoreBos": False, "topK": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    check_shape(body, "ActivationTopkByTokenResponse")
    lens = engine.lens
    ids = [lens.bos_token_id] + lens.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert len(body["tokens"]) == len(ids) and body["results"][0]["isSpecial"] is True
    # the numbers: one forward pass over BOS + prompt, encoded, times the decoder norms
    from morph.models.hooks import capture

    with torch.inference_mode():
        acts = capture(lens.model, lens.hook, torch.tensor([ids]))[0]
        feats = lens.sae.encode(acts.to(lens.sae.dtype)).float() * lens.sae.W_dec.float().norm(dim=-1)
    for result in body["results"]:
        row = feats[result["tokenPosition"]]
        for feature in result["topFeatures"]:
            assert feature["activationValue"] == pytest.approx(float(row[feature["featureIndex"]]), rel=1e-6)
        expected = sorted(row.tolist(), reverse=True)[:len(result["topFeatures"])]
        assert [f["activationValue"] for f in result["topFeatures"]] == pytest.approx(expected, rel=1e-6)
    without_bos = client.post("/v1/activation/topk-by-token", json={
        "prompt": prompt, "model": engine.model_name, "source": engine.sae_name, "ignoreBos": True}).json()
    assert without_bos["results"][0]["tokenPosition"] == 1


def test_activation_all_in_neuronpedias_shape(engine):
    client = client_for(engine)
    response = client.post("/v1/activation/all", json={
        "prompt": "Sailors sang in the harbour.", "model": engine.model_name, "sourceSet": engine.sae_name,
        "selectedSources": [engine.sae_name], "sortByTokenIndexes": [], "ignoreBos": True, "numResults": 5})
    assert response.status_code == 200, response.text
    body = response.json()
    check_shape(body, "ActivationAllResponse")
    assert 0 < len(body["activations"]) <= 5
    maxes = [a["maxValue"] for a in body["activations"]]
    assert maxes == sorted(maxes, reverse=True)
    for a in body["activations"]:
        assert len(a["values"]) == len(body["tokens"]) and a["values"][a["maxValueIndex"]] == a["maxValue"]
        assert a["maxValueIndex"] != 0  # ignoreBos: no feature whose highest activation is the BOS


def test_steer_completion_in_neuronpedias_shape_and_steering_changes_the_text(engine):
    client = client_for(engine)
    request = {"prompt": "The sea", "model": engine.model_name, "steerMethod": "SIMPLE_ADDITIVE",
               "normalizeSteering": False, "types": ["STEERED", "DEFAULT"], "nCompletionTokens": 8,
               "temperature": 0, "strengthMultiplier": 4, "freqPenalty": 0, "seed": 16,
               "features": [{"model": engine.model_name, "source": engine.sae_name, "index": 3, "strength": 40}]}
    response = client.post("/v1/steer/completion", json=request)
    assert response.status_code == 200, response.text
    body = response.json()
    check_shape(body, "SteerCompletionResponse")
    steered, default = body["outputs"]
    assert steered["type"] == "STEERED" and default["type"] == "DEFAULT"
    assert steered["output"].startswith("The sea") and default["output"].startswith("The sea")
    assert steered["output"] != default["output"]
    again = client.post("/v1/steer/completion", json=request).json()
    assert again == body  # greedy: the same text twice


def steer_request(engine, **changes) -> dict:
    request = {"prompt": "The sea", "model": engine.model_name, "steerMethod": "SIMPLE_ADDITIVE",
               "normalizeSteering": False, "types": ["STEERED", "DEFAULT"], "nCompletionTokens": 6,
               "temperature": 0, "strengthMultiplier": 4, "freqPenalty": 0, "seed": 16,
               "features": [{"model": engine.model_name, "source": engine.sae_name, "index": 3, "strength": 40}]}
    return {**request, **changes}


def test_steer_completion_streams_server_sent_events_ending_with_the_whole_response(engine):
    client = client_for(engine)
    whole = client.post("/v1/steer/completion", json=steer_request(engine)).json()
    with client.stream("POST", "/v1/steer/completion", json=steer_request(engine, stream=True)) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        raw = "".join(response.iter_text())
    events = [json.loads(chunk[len("data: "):]) for chunk in raw.split("\n\n") if chunk]
    for event in events:
        check_shape(event, "SteerCompletionResponse")
    assert events[-1] == whole
    steered = [e["outputs"][0]["output"] for e in events]
    assert len(set(steered)) >= 3  # the steered text grew token by token, before the default began
    assert events[0]["outputs"][1]["output"] == "The sea"


def test_steer_completion_with_vectors_and_orthogonal_decomposition(engine):
    client = client_for(engine)
    row = engine.lens.sae.W_dec[3].float().tolist()
    by_feature = client.post("/v1/steer/completion", json=steer_request(engine)).json()
    by_vector = client.post("/v1/steer/completion", json=steer_request(engine, features=None, vectors=[
        {"steeringVector": row, "strength": 40, "hook": engine.hook_name}])).json()
    assert by_vector == by_feature  # a feature's decoder row given as a vector steers the same
    # ORTHOGONAL_DECOMP scales the activations' component along the direction: by 1 it changes nothing
    same = client.post("/v1/steer/completion", json=steer_request(
        engine, steerMethod="ORTHOGONAL_DECOMP", strengthMultiplier=1,
        features=[{"model": engine.model_name, "source": engine.sae_name, "index": 3, "strength": 1}])).json()
    assert same["outputs"][0]["output"] == same["outputs"][1]["output"]
    for bad, reason in [({"features": None, "vectors": [{"steeringVector": row, "strength": 1,
                                                         "hook": "blocks.99.hook_resid_pre"}]}, "not served"),
                        ({"vectors": [{"steeringVector": row, "strength": 1, "hook": engine.hook_name}]},
                         "exactly one"),
                        ({"features": None, "vectors": [{"steeringVector": [1.0], "strength": 1,
                                                         "hook": engine.hook_name}]}, "values"),
                        ({"steerMethod": "PROJECTION_CAP"}, "not supported")]:
        response = client.post("/v1/steer/completion", json=steer_request(engine, **bad))
        assert response.status_code == 400 and reason in response.json()["detail"], response.text


def test_orthogonal_steering_scales_only_the_component_along_the_direction():
    import torch

    from morph.features.prompts import Steering

    v = torch.tensor([3.0, 4.0, 0.0])
    h = torch.tensor([[1.0, 2.0, 5.0]])
    unit = v / 5
    along = (h @ unit) * unit
    out = Steering([(v, 0.5)], "orthogonal").apply(h)
    torch.testing.assert_close(out, h - along + 0.5 * along)
    torch.testing.assert_close(Steering([(v, 2.0)], "additive").apply(h), h + 2 * v)


def test_a_wrong_model_or_source_is_a_400_naming_what_is_served(engine):
    client = client_for(engine)
    response = client.post("/v1/activation/topk-by-token", json={
        "prompt": "x", "model": "gemma-2-9b", "source": engine.sae_name, "ignoreBos": True})
    assert response.status_code == 400
    assert "gemma-2-9b" in response.json()["detail"] and engine.model_name in response.json()["detail"]
    response = client.post("/v1/activation/topk-by-token", json={
        "prompt": "x", "model": engine.model_name, "source": "20-gemmascope-res-16k", "ignoreBos": True})
    assert response.status_code == 400 and "20-gemmascope-res-16k" in response.json()["detail"]
    # Neuronpedia's names for them, given to morph serve (--np-model, --np-source)
    from morph.server.neuronpedia import Names

    named = client_for(engine, neuronpedia=Names("gemma-2-9b", "20-gemmascope-res-16k"))
    response = named.post("/v1/activation/topk-by-token", json={
        "prompt": "x", "model": "gemma-2-9b", "source": "20-gemmascope-res-16k", "ignoreBos": True})
    assert response.status_code == 200, response.text


def test_bad_requests_get_a_4xx_with_a_one_line_reason(engine):
    client = client_for(engine)
    response = client.post("/v1/activation/topk-by-token", json={"prompt": "x"})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and "model" in detail
    response = client.post("/v1/morph/analyze", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422 and "\n" not in response.json()["detail"]
    response = client.post("/v1/morph/analyze", json={"document": "../../etc", "text": "x"})
    assert response.status_code == 422
    response = client.post("/v1/morph/feature", json={"feature": 10 ** 9})
    assert response.status_code == 400 and "does not exist" in response.json()["detail"]
    check_shape(client.get("/health").json(), "HealthResponse")


def test_the_secret_key_is_required_everywhere_but_health(engine):
    client = client_for(engine, secret_key="s3cret")
    assert client.get("/health").status_code == 200
    no_key = client.get("/v1/morph/info")
    assert no_key.status_code == 401 and "X-SECRET-KEY" in no_key.json()["detail"]
    assert client.get("/v1/morph/info", headers={"X-SECRET-KEY": "nope"}).status_code == 403
    assert client.post("/v1/activation/all", json={}).status_code == 401
    assert client.get("/v1/morph/info", headers={"X-SECRET-KEY": "s3cret"}).status_code == 200


def test_size_and_rate_limits(engine):
    from morph.server.security import Limits

    client = client_for(engine, limits=Limits(max_body_bytes=2_000, max_text_chars=500, rate_per_s=1, burst=5))
    big = client.post("/v1/morph/search", json={"query": "x" * 3_000})
    assert big.status_code == 413 and "bytes" in big.json()["detail"]
    long_text = client.post("/v1/morph/analyze", json={"document": "d", "text": "y" * 600})
    assert long_text.status_code == 413 and "characters" in long_text.json()["detail"]
    codes = [client.get("/health").status_code for _ in range(8)]
    assert codes[:3] == [200] * 3 and codes[-1] == 429
    assert "too many requests" in client.get("/health").json()["detail"]


def test_serve_refuses_a_public_address_without_a_key_and_a_port_in_use(capsys, monkeypatch):
    import socket

    from morph.cli import main

    monkeypatch.delenv("MORPH_SECRET_KEY", raising=False)
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not loopback" in err and "--secret-key" in err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "in use" in err


def test_steering_takes_turns_on_the_model_a_token_step_at_a_time(engine, monkeypatch):
    """Steered completions (Neuronpedia's route, streamed or not), Morph's steering stream and reading a
    selection ahead wait for their turn before each step and give it up at the end, so another client's
    keystroke waits for one step of a rewrite, not all of it (morph.server.turns)."""
    import json

    from morph.features.steering import SteerRequest
    from morph.server import app as server_app
    from morph.server.turns import FairTurns
    from morph.server.wire import to_json

    calls: list[str] = []

    class Counting(FairTurns):
        def checkpoint(self) -> None:
            calls.append("checkpoint")
            super().checkpoint()

        def done(self) -> None:
            calls.append("done")
            super().done()

    monkeypatch.setattr(server_app, "FairTurns", Counting)
    client = client_for(engine)
    assert client.post("/v1/steer/completion", json=steer_request(engine)).status_code == 200
    assert calls.count("checkpoint") >= 12 and calls[-1] == "done"  # 6 tokens, steered and not
    calls.clear()
    assert client.post("/v1/steer/completion", json=steer_request(engine, stream=True)).status_code == 200
    assert calls.count("checkpoint") >= 12 and calls[-1] == "done"
    calls.clear()
    text = "The river ran past the old mill. The lamps were lit."
    request = SteerRequest.single(3, 2.0, n=2, max_tokens=5, seed=1)
    response = client.post("/v1/morph/steer/stream", json={"stream": "s1", "text": text, "start": 0, "end": 32,
                                                          "request": to_json(request)})
    assert response.status_code == 200
    events = [json.loads(line) for line in response.text.splitlines() if line.strip()]
    assert events[-1]["type"] == "done"
    assert calls.count("checkpoint") >= len(events) and calls[-1] == "done"
    calls.clear()
    assert client.post("/v1/morph/steer/prepare", json={"text": text, "start": 0, "end": 32}).status_code == 200
    assert calls == ["checkpoint", "done"]
