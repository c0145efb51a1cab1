"""TransformerLens hook names mapped onto the modules of Hugging Face causal LMs.

SAE-Lens names its hook points the TransformerLens way (`blocks.8.hook_resid_pre`). A Hugging Face model
has no such names, so each one is mapped to a module and to whether the activation is that module's
input or its output. Where an SAE's metadata carries `hf_hook_name`, that module's output wins.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from morph.errors import ModelLoadError

# Per architecture family: the submodule (relative to one decoder layer) for each TransformerLens hook,
# and whether the activation is that module's input ("in") or output ("out").
_FAMILIES: dict[str, dict[str, tuple[str, str]]] = {
    "gpt2": {"attn_out": ("attn", "out"), "mlp_out": ("mlp", "out"), "resid_mid": ("ln_2", "in")},
    "neox": {"attn_out": ("attention", "out"), "mlp_out": ("mlp", "out")},
    "llama": {
        "attn_out": ("self_attn", "out"),
        "mlp_out": ("mlp", "out"),
        "resid_mid": ("post_attention_layernorm", "in"),
    },
    # Gemma 2/3 normalise each sublayer's output before adding it back; TransformerLens hooks after that.
    "gemma2": {
        "attn_out": ("post_attention_layernorm", "out"),
        "mlp_out": ("post_feedforward_layernorm", "out"),
        "resid_mid": ("pre_feedforward_layernorm", "in"),
    },
}

_MODEL_TYPE_FAMILY = {
    "gpt2": "gpt2",
    "gpt_neox": "neox",
    "gemma2": "gemma2",
    "gemma3": "gemma2",
    "gemma3_text": "gemma2",
}

# Architectures whose residual stream TransformerLens centres when it folds LayerNorm.
LAYERNORM_FAMILIES = {"gpt2", "neox"}

_HOOK_RE = re.compile(r"^blocks\.(\d+)\.hook_(resid_pre|resid_post|resid_mid|mlp_out|attn_out)$")


@dataclass(frozen=True)
class HookPoint:
    """Where in the model the SAE reads: a TransformerLens name resolved to a Hugging Face module."""

    name: str
    layer: int
    module_path: str
    read_input: bool  # the activation is the module's input (forward pre-hook), not its output
    centre: bool = False  # subtract the per-token mean (TransformerLens's centred writing weights)


def family_of(model: Any) -> str:
    model_type = getattr(model.config, "model_type", "")
    return _MODEL_TYPE_FAMILY.get(model_type, "llama")


def decoder_layers_path(model: Any) -> str:
    """The dotted path of the ModuleList that holds the decoder blocks."""
    import torch.nn as nn

    n_layers = getattr(model.config, "num_hidden_layers", None) or getattr(model.config, "n_layer", None)
    if hasattr(model.config, "get_text_config"):
        text_cfg = model.config.get_text_config()
        n_layers = n_layers or getattr(text_cfg, "num_hidden_layers", None)
    for candidate in ("transformer.h", "gpt_neox.layers", "model.layers", "model.language_model.layers",
                      "language_model.model.layers", "model.decoder.layers"):
        with contextlib.suppress(AttributeError):
            module = model.get_submodule(candidate)
            if isinstance(module, nn.ModuleList):
                return candidate
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n_layers:
            return name
    raise ModelLoadError(f"cannot find the decoder layers of model type {model.config.model_type!r}")


def n_layers_of(model: Any) -> int:
    return len(model.get_submodule(decoder_layers_path(model)))


def resolve_hook(model: Any, hook_name: str, hf_hook_name: str | None = None, centre: bool = False) -> HookPoint:
    """Map a TransformerLens hook name (and optional `hf_hook_name`) onto a module of `model`."""
    match = _HOOK_RE.match(hook_name or "")
    layers = decoder_layers_path(model)
    n_layers = len(model.get_submodule(layers))
    if hf_hook_name:
        try:
            model.get_submodule(hf_hook_name)
        except AttributeError:
            raise ModelLoadError(f"the SAE's hf_hook_name {hf_hook_name!r} is not a module of this model") from None
        layer_match = re.search(r"\.(\d+)(\.|$)", hf_hook_name)
        layer = int(match.group(1)) if match else int(layer_match.group(1)) if layer_match else 0
        return HookPoint(hook_name or hf_hook_name, layer, hf_hook_name, read_input=False, centre=centre)
    if not match:
        raise ModelLoadError(
            f"unsupported hook point {hook_name!r}: expected blocks.L.hook_resid_pre, hook_resid_post, "
            "hook_resid_mid, hook_mlp_out or hook_attn_out"
        )
    layer, kind = int(match.group(1)), match.group(2)
    if layer >= n_layers:
        raise ModelLoadError(f"the SAE reads layer {layer}, but the model has only {n_layers} layers")
    block = f"{layers}.{layer}"
    if kind == "resid_pre":
        return HookPoint(hook_name, layer, block, read_input=True, centre=centre)
    if kind == "resid_post":
        return HookPoint(hook_name, layer, block, read_input=False, centre=centre)
    family = _FAMILIES[family_of(model)]
    if kind not in family:
        raise ModelLoadError(f"hook {hook_name!r} has no equivalent in a {model.config.model_type} model")
    sub, direction = family[kind]
    return HookPoint(hook_name, layer, f"{block}.{sub}", read_input=direction == "in", centre=centre)


class _StopForward(Exception):
    """Raised inside a hook once the activation is captured, so the layers above are never run."""


def _first(output: Any) -> Any:
    return output[0] if isinstance(output, tuple) else output


def _centred(acts: Any) -> Any:
    return acts - acts.mean(dim=-1, keepdim=True)


def capture(model: Any, hook: HookPoint, input_ids: Any, attention_mask: Any = None) -> Any:
    """Run `model` on `input_ids` just far enough to return the activations at `hook` ([batch, seq, d])."""
    import torch

    module = model.get_submodule(hook.module_path)
    captured: list[Any] = []

    def grab(acts: Any) -> None:
        captured.append(_centred(acts) if hook.centre else acts)
        raise _StopForward

    if hook.read_input:
        handle = module.register_forward_pre_hook(
            lambda _m, args, kwargs: grab(args[0] if args else kwargs["hidden_states"]), with_kwargs=True
        )
    else:
        handle = module.register_forward_hook(lambda _m, _args, output: grab(_first(output)))
    try:
        with torch.inference_mode(), contextlib.suppress(_StopForward):
            model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    finally:
        handle.remove()
    if not captured:
        raise RuntimeError(f"hook {hook.name} was never reached")
    return captured[0]


@contextlib.contextmanager
def edit_activations(model: Any, hook: HookPoint, edit: Callable[[Any], Any]) -> Iterator[None]:
    """While inside, the activations at `hook` are replaced by `edit(acts)` on every forward pass.

    `edit` sees (and returns) activations in the SAE's frame: centred where the hook is centred. The
    per-token mean removed by centring is added back so the model sees a consistent residual.
    """
    module = model.get_submodule(hook.module_path)

    def apply(acts: Any) -> Any:
        if not hook.centre:
            return edit(acts)
        mean = acts.mean(dim=-1, keepdim=True)
        return edit(acts - mean) + mean

    if hook.read_input:
        def pre_hook(_m: Any, args: tuple, kwargs: dict) -> Any:
            if args:
                return (apply(args[0]), *args[1:]), kwargs
            kwargs = dict(kwargs)
            kwargs["hidden_states"] = apply(kwargs["hidden_states"])
            return args, kwargs

        handle = module.register_forward_pre_hook(pre_hook, with_kwargs=True)
    else:
        def post_hook(_m: Any, _args: Any, output: Any) -> Any:
            if isinstance(output, tuple):
                return (apply(output[0]), *output[1:])
            return apply(output)

        handle = module.register_forward_hook(post_hook)
    try:
        yield
    finally:
        handle.remove()
