"""Neuronpedia inference-server routes, with its published request and response shapes
(apps/inference/openapi.json in hijohnnylin/neuronpedia), so that a client written for a Neuronpedia
inference server works against `morph serve`:

  POST /v1/activation/topk-by-token   ActivationTopkByTokenRequest -> ActivationTopkByTokenResponse
  POST /v1/activation/all             ActivationAllRequest -> ActivationAllResponse
  POST /v1/steer/completion           SteerCompletionRequest -> SteerCompletionResponse

One model and one SAE per server, as there: a request's `model` must be the served model's name (or its
last path part, or the name given with `morph serve --np-model`), and its `source` (or `selectedSources`)
the served SAE's (its name, its id after the last '/' or ':', its hook, or the id given with `--np-source`,
e.g. 20-gemmascope-res-16k); any other is a 400 with the names this server has. The prompt is run as Neuronpedia runs it: BOS (where the model
uses one) + the prompt's tokens, one forward pass, and `tokens` include the BOS. Activations are folded as
Neuronpedia folds them on load (SAE-Lens `fold_W_dec_norm`): each feature's activation times the norm of
its decoder row (the same numbers for an SAE whose decoder rows have norm 1; for a TopK SAE with other
norms, the set of active features is the unfolded SAE's). Steering edits `strength * strengthMultiplier`
times each feature's decoder row (or each vector given for the SAE's hook) into the activations at the hook:
added (SIMPLE_ADDITIVE) or as the scale of their component along it (ORTHOGONAL_DECOMP); with `stream: true`
the response so far comes after each token as server-sent events, as Neuronpedia streams it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

from pydantic import BaseModel, Field

from morph.errors import InputError

if TYPE_CHECKING:
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse

    from morph.features.engine import Engine
    from morph.features.prompts import Steering
    from morph.server.turns import FairTurns

MAX_PROMPT_TOKENS = 4096
MAX_COMPLETION_TOKENS = 1024


class TopkByTokenRequest(BaseModel):
    prompt: str = Field(max_length=200_000)
    model: str
    source: str
    ignoreBos: bool
    topK: int | None = Field(default=5, ge=1, le=1_000)


class ActivationAllRequest(BaseModel):
    prompt: str = Field(max_length=200_000)
    model: str
    sourceSet: str
    selectedSources: list[str]
    sortByTokenIndexes: list[int]
    ignoreBos: bool
    numResults: int | None = Field(default=25, ge=1, le=10_000)


class SteerFeature(BaseModel):
    model: str
    source: str
    index: int
    strength: float
    steeringVector: list[float] | None = None


class SteerVector(BaseModel):
    steeringVector: list[float] = Field(max_length=65_536)
    strength: float
    hook: str


class SteerCompletionRequest(BaseModel):
    prompt: str = Field(max_length=200_000)
    model: str
    steerMethod: str
    normalizeSteering: bool
    types: list[str] = Field(min_length=1)
    nCompletionTokens: int = Field(ge=1, le=MAX_COMPLETION_TOKENS)
    temperature: float = Field(ge=0)
    strengthMultiplier: float
    freqPenalty: float
    seed: float
    features: list[SteerFeature] | None = None
    vectors: list[SteerVector] | None = None
    stream: bool | None = False
    nLogprobs: int | None = 0


@dataclass(frozen=True)
class Names:
    """Neuronpedia's names for the served model and SAE, besides Morph's (`morph serve --np-model/--np-source`)."""

    model: str | None = None
    source: str | None = None


NAMES = Names()


def source_names(engine: Engine, names: Names = NAMES) -> set[str]:
    """The names a request may give the served SAE."""
    name = engine.sae_name
    out = {name, name.rstrip("/").rsplit("/", 1)[-1], name.rsplit(":", 1)[-1]}
    out.add(engine.hook_name)
    if names.source:
        out.add(names.source)
    return out


def model_names(engine: Engine, names: Names = NAMES) -> set[str]:
    out = {engine.model_name, engine.model_name.rstrip("/").rsplit("/", 1)[-1]}
    if names.model:
        out.add(names.model)
    return out


def check_model(engine: Engine, model: str, names: Names = NAMES) -> None:
    if model not in model_names(engine, names):
        raise InputError(f"model {model!r} is not served here; this server has {engine.model_name!r}")


def check_source(engine: Engine, source: str, names: Names = NAMES) -> None:
    if source not in source_names(engine, names):
        raise InputError(f"source {source!r} is not served here; this server has {engine.sae_name!r}")


def topk_by_token(engine: Engine, request: TopkByTokenRequest, names: Names = NAMES) -> dict:
    import torch

    check_model(engine, request.model, names)
    check_source(engine, request.source, names)
    run = engine.prompt_activations(request.prompt, MAX_PROMPT_TOKENS)
    tokens, special, feats = run.tokens, run.special, run.features
    k = min(request.topK or 5, feats.shape[1])
    values, indices = torch.topk(feats, k, dim=-1)
    results = []
    for position, token in enumerate(tokens):
        if request.ignoreBos and position == 0 and special[0]:
            continue
        top = [{"featureIndex": int(f), "activationValue": float(v)}
               for f, v in zip(indices[position].tolist(), values[position].tolist()) if v > 0]
        results.append({"tokenPosition": position, "token": token, "isSpecial": special[position],
                        "topFeatures": top})
    return {"results": results, "tokens": tokens}


def activation_all(engine: Engine, request: ActivationAllRequest, names: Names = NAMES) -> dict:
    import torch

    check_model(engine, request.model, names)
    served = source_names(engine, names)
    for source in request.selectedSources or [request.sourceSet]:
        if source not in served and request.sourceSet not in served:
            check_source(engine, source, names)
    run = engine.prompt_activations(request.prompt, MAX_PROMPT_TOKENS)
    tokens, special, feats = run.tokens, run.special, run.features
    n = len(tokens)
    bad = [i for i in request.sortByTokenIndexes if not 0 <= i < n]
    if bad:
        raise InputError(f"sortByTokenIndexes {bad} are outside the prompt's {n} tokens")
    scored = feats.clone()
    if request.ignoreBos and special[0]:
        bos_max = feats.argmax(dim=0) == 0
        scored[:, bos_max] = 0  # features whose highest activation is the BOS token are left out
    key = scored[request.sortByTokenIndexes].sum(0) if request.sortByTokenIndexes else scored.max(dim=0).values
    k = min(request.numResults or 25, feats.shape[1])
    top_values, top_features = torch.topk(key, k)
    source = request.selectedSources[0] if request.selectedSources else (names.source or engine.sae_name)
    activations = []
    for feature, score in zip(top_features.tolist(), top_values.tolist()):
        if score <= 0:
            break
        values = feats[:, feature]
        activations.append({"source": source, "index": int(feature), "values": [float(v) for v in values.tolist()],
                            "maxValue": float(values.max()), "maxValueIndex": int(values.argmax()),
                            "sumValues": float(values.sum())})
    return {"activations": activations, "tokens": tokens, "counts": None}


STEER_METHODS = {"SIMPLE_ADDITIVE": "additive", "ORTHOGONAL_DECOMP": "orthogonal"}


def steer_edit(engine: Engine, request: SteerCompletionRequest, names: Names = NAMES) -> Steering:
    """The request checked (a 400 with one line for what is not served or not known) and its steering: each
    feature's decoder row (or vector) times strength x strengthMultiplier, added (SIMPLE_ADDITIVE) or as the
    scale of the component along it (ORTHOGONAL_DECOMP)."""
    check_model(engine, request.model, names)
    if request.steerMethod not in STEER_METHODS:
        raise InputError(f"steerMethod {request.steerMethod} is not supported here; use "
                         f"{' or '.join(STEER_METHODS)}")
    if (request.features is None) == (request.vectors is None):
        raise InputError("give exactly one of features or vectors")
    unknown = [t for t in request.types if t not in ("STEERED", "DEFAULT")]
    if unknown:
        raise InputError(f"types {unknown} are not STEERED or DEFAULT")
    for feature in request.features or []:
        check_source(engine, feature.source, names)
    for vector in request.vectors or []:
        if vector.hook != engine.hook_name:
            raise InputError(f"vector hook {vector.hook!r} is not served here; this server steers at "
                             f"{engine.hook_name!r}")
    multiplier = request.strengthMultiplier
    return engine.steering([(f.index, f.strength * multiplier) for f in request.features or []],
                           [(v.steeringVector, v.strength * multiplier) for v in request.vectors or []],
                           request.normalizeSteering, STEER_METHODS[request.steerMethod])


def steer_outputs(engine: Engine, request: SteerCompletionRequest, edit: Steering,
                  should_stop: Callable[[], bool] = lambda: False) -> Iterator[dict]:
    """The response so far after each token, as Neuronpedia streams it: every type's output (prompt +
    completion so far; STEERED with the edit at the hook, DEFAULT without), the types in the request's order,
    each completed before the next begins; the last one yielded is the whole response."""
    texts = {kind: "" for kind in request.types}

    def response() -> dict:
        return {"outputs": [{"type": kind, "output": request.prompt + texts[kind]} for kind in request.types]}

    for kind in dict.fromkeys(request.types):
        for text in engine.complete_stream(request.prompt, request.nCompletionTokens, request.temperature,
                                           request.freqPenalty, int(request.seed),
                                           edit if kind == "STEERED" else None, should_stop):
            texts[kind] = text
            yield response()
    yield response()


def add_routes(app: FastAPI, engine: Engine, names: Names, stream_response: Callable[..., StreamingResponse],
               turns: FairTurns | None = None) -> None:
    """Neuronpedia's three routes on `app`; a steering request with `stream: true` gets server-sent events,
    `data: <the response so far>` after each token, through `stream_response` (morph.server.app's). Steered
    completions take `turns` on the model with the other requests, a token at a time."""
    from morph.server.turns import FairTurns, taking_turns

    turns = turns if turns is not None else FairTurns()

    @app.post("/v1/activation/topk-by-token")
    def topk_by_token_route(request: TopkByTokenRequest) -> dict:
        return topk_by_token(engine, request, names)

    @app.post("/v1/activation/all")
    def activation_all_route(request: ActivationAllRequest) -> dict:
        return activation_all(engine, request, names)

    @app.post("/v1/steer/completion")
    def steer_completion_route(request: SteerCompletionRequest):
        edit = steer_edit(engine, request, names)  # a bad request is a 400 before the stream begins
        if not request.stream:
            *_, last = taking_turns(turns, steer_outputs(engine, request, edit))
            return last
        cancel = threading.Event()
        return stream_response(taking_turns(turns, steer_outputs(engine, request, edit, cancel.is_set)), cancel,
                               sse=True)
