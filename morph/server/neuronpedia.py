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
norms, the set of active features is the unfolded SAE's). Steering adds `strength * strengthMultiplier`
times the feature's decoder row at the SAE's hook (SIMPLE_ADDITIVE; the other methods are refused).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from morph.errors import InputError

if TYPE_CHECKING:
    import torch
    from fastapi import FastAPI

    from morph.features.engine import Engine
    from morph.models.lens import Lens

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
    vectors: list[dict] | None = None
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
    hook = getattr(engine.lens.hook, "name", None)
    if hook:
        out.add(str(hook))
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


def encode_prompt(engine: Engine, prompt: str) -> tuple[list[int], list[str], list[bool], torch.Tensor]:
    """Token ids (BOS first where the model uses one), their strings, which are special, and the folded SAE
    activations [n, d_sae] (a torch tensor on the model's device) of one forward pass over them."""
    import torch

    from morph.models.hooks import capture

    lens = engine.lens
    ids = lens.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if lens.prepend_bos and lens.bos_token_id is not None:
        ids = [lens.bos_token_id] + list(ids)
    if not ids:
        raise InputError("the prompt has no tokens")
    if len(ids) > min(MAX_PROMPT_TOKENS, lens.context_size):
        raise InputError(f"the prompt has {len(ids)} tokens; at most {min(MAX_PROMPT_TOKENS, lens.context_size)}")
    special = set(getattr(lens.tokenizer, "all_special_ids", []) or [])
    with lens.lock, torch.inference_mode():
        acts = capture(lens.model, lens.hook, torch.tensor([ids], device=lens.device))[0].to(lens.sae.dtype)
        feats = lens.sae.encode(acts).float() * decoder_norms(lens)
    tokens = [lens.tokenizer.decode([i]) for i in ids]
    return ids, tokens, [i in special for i in ids], feats


_DECODER_NORMS: "weakref.WeakKeyDictionary[Lens, torch.Tensor]" = weakref.WeakKeyDictionary()


def decoder_norms(lens: Lens) -> torch.Tensor:
    """||W_dec[f]|| per feature (what SAE-Lens's fold_W_dec_norm moves into the encoder), once per lens."""
    norms = _DECODER_NORMS.get(lens)
    if norms is None:
        norms = _DECODER_NORMS[lens] = lens.sae.W_dec.detach().float().norm(dim=-1)
    return norms


def topk_by_token(engine: Engine, request: TopkByTokenRequest, names: Names = NAMES) -> dict:
    import torch

    check_model(engine, request.model, names)
    check_source(engine, request.source, names)
    ids, tokens, special, feats = encode_prompt(engine, request.prompt)
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
    ids, tokens, special, feats = encode_prompt(engine, request.prompt)
    n = len(ids)
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


def steer_completion(engine: Engine, request: SteerCompletionRequest, names: Names = NAMES) -> dict:
    """Completions of the prompt with (STEERED) and without (DEFAULT) the features added at the hook."""
    import torch

    check_model(engine, request.model, names)
    if request.steerMethod != "SIMPLE_ADDITIVE":
        raise InputError(f"steerMethod {request.steerMethod} is not supported here; use SIMPLE_ADDITIVE")
    if request.vectors:
        raise InputError("custom steering vectors are not supported here; steer with features")
    unknown = [t for t in request.types if t not in ("STEERED", "DEFAULT")]
    if unknown:
        raise InputError(f"types {unknown} are not STEERED or DEFAULT")
    lens = engine.lens
    features = request.features or []
    for feature in features:
        check_source(engine, feature.source, names)
        if not 0 <= feature.index < lens.d_sae:
            raise InputError(f"feature {feature.index} does not exist: this SAE has features 0 to {lens.d_sae - 1}")
    direction = torch.zeros(lens.d_model, device=lens.device)
    for feature in features:
        row = lens.sae.W_dec[feature.index].detach().float().to(lens.device)
        if request.normalizeSteering:
            row = row / row.norm().clamp_min(1e-8)
        direction += feature.strength * request.strengthMultiplier * row
    ids = lens.tokenizer(request.prompt, add_special_tokens=False)["input_ids"]
    if lens.prepend_bos and lens.bos_token_id is not None:
        ids = [lens.bos_token_id] + list(ids)
    if not ids or len(ids) + request.nCompletionTokens > lens.context_size:
        raise InputError(f"the prompt and completion must fit in {lens.context_size} tokens")
    outputs = []
    for kind in request.types:
        added = direction if kind == "STEERED" else None
        completion = _generate(lens, ids, request, added)
        outputs.append({"type": kind, "output": request.prompt + completion})
    return {"outputs": outputs}


def _generate(lens: Lens, ids: list[int], request: SteerCompletionRequest, added: torch.Tensor | None) -> str:
    """Sample `nCompletionTokens` tokens (greedy at temperature 0), a frequency penalty on the logits,
    seeded; `added` (or nothing) is added to the activations at the hook on every position."""
    import torch

    from morph.models.hooks import _cache_argument, edit_activations

    generator = torch.Generator(device="cpu").manual_seed(int(request.seed))
    counts: dict[int, int] = {}
    out: list[int] = []
    cache = None
    step = torch.tensor([ids], device=lens.device)
    eos = lens.tokenizer.eos_token_id
    cache_name = _cache_argument(lens.model)
    with lens.lock, torch.inference_mode():
        edit = (lambda acts: acts + added.to(acts.dtype)) if added is not None else (lambda acts: acts)
        with edit_activations(lens.model, lens.hook, edit):
            for _ in range(request.nCompletionTokens):
                result = lens.model(input_ids=step, use_cache=True, **{cache_name: cache})
                cache = result.past_key_values
                logits = result.logits[0, -1].float().cpu()
                for token, n in counts.items():
                    logits[token] -= request.freqPenalty * n
                if request.temperature <= 0:
                    token = int(logits.argmax())
                else:
                    probs = torch.softmax(logits / request.temperature, dim=-1)
                    token = int(torch.multinomial(probs, 1, generator=generator))
                if eos is not None and token == eos:
                    break
                out.append(token)
                counts[token] = counts.get(token, 0) + 1
                step = torch.tensor([[token]], device=lens.device)
    return lens.tokenizer.decode(out)


def add_routes(app: FastAPI, engine: Engine, names: Names = NAMES) -> None:
    """Neuronpedia's three routes on `app` (a request with `stream: true` gets the whole response at once)."""

    @app.post("/v1/activation/topk-by-token")
    def topk_by_token_route(request: TopkByTokenRequest) -> dict:
        return topk_by_token(engine, request, names)

    @app.post("/v1/activation/all")
    def activation_all_route(request: ActivationAllRequest) -> dict:
        return activation_all(engine, request, names)

    @app.post("/v1/steer/completion")
    def steer_completion_route(request: SteerCompletionRequest) -> dict:
        return steer_completion(engine, request, names)
