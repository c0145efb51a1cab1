"""TransformerLens hook names mapped onto the modules of Hugging Face causal LMs.

SAE-Lens names its hook points the TransformerLens way (`blocks.8.hook_resid_pre`). A Hugging Face model
has no such names, so each one is mapped to a module and to whether the activation is that module's
input or its output. Where an SAE's metadata carries `hf_hook_name` (a module path, optionally ending in
`.output` or `.input`, as Gemma Scope writes it), that wins.

The mapping per family was read off the decoder layers' `forward` in transformers 5:

    family   attn_out                            mlp_out                              resid_mid
    gpt2     attn (output[0])                    mlp                                  ln_2 input
    neox     attention (output[0])               mlp                                  post_attention_layernorm
                                                                                      input (sequential only)
    llama    self_attn (output[0])               mlp                                  post_attention_layernorm input
    gemma2   post_attention_layernorm output     post_feedforward_layernorm output    pre_feedforward_layernorm input
    olmo2    post_attention_layernorm output     post_feedforward_layernorm output    mlp input

resid_pre is the decoder layer's input and resid_post its output, for every architecture.
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
    # GPT-NeoX/Pythia run attention and MLP in parallel (use_parallel_residual): no resid_mid there, as in
    # TransformerLens. Sequential NeoX models get resid_mid (see _family_map).
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
    # OLMo 2/3: post-norm only (no norm before attention or MLP).
    "olmo2": {
        "attn_out": ("post_attention_layernorm", "out"),
        "mlp_out": ("post_feedforward_layernorm", "out"),
        "resid_mid": ("mlp", "in"),
    },
}

_MODEL_TYPE_FAMILY = {
    "gpt2": "gpt2",
    "gpt_neox": "neox",
    "llama": "llama",
    "mistral": "llama",
    "mixtral": "llama",
    "qwen2": "llama",
    "qwen2_moe": "llama",
    "qwen3": "llama",
    "qwen3_moe": "llama",
    "gemma": "llama",
    "olmo": "llama",
    "phi3": "llama",
    "gemma2": "gemma2",
    "gemma3": "gemma2",
    "gemma3_text": "gemma2",
    "olmo2": "olmo2",
    "olmo3": "olmo2",
}

# Architectures whose residual stream TransformerLens centres when asked to (center_writing_weights needs
# LayerNorm; RMSNorm models are never centred).
LAYERNORM_FAMILIES = {"gpt2", "neox"}

_HOOK_RE = re.compile(r"^blocks\.(\d+)\.hook_(resid_pre|resid_post|resid_mid|mlp_out|attn_out)$")
_HF_SUFFIX_RE = re.compile(r"^(.*?)(?:\.(output|input))?$")
_HF_LAYER_RE = re.compile(r"^(.*?)\.?\b(?:layers|h|blocks)\.(\d+)((?:\..*)?)$")
_LAYER_CANDIDATES = ("transformer.h", "gpt_neox.layers", "model.layers", "model.language_model.layers",
                     "language_model.model.layers", "model.model.layers", "model.decoder.layers")


@dataclass(frozen=True)
class HookPoint:
    """Where in the model the SAE reads: a TransformerLens name resolved to a Hugging Face module."""

    name: str
    layer: int
    module_path: str
    read_input: bool  # the activation is the module's input (forward pre-hook), not its output
    centre: bool = False  # subtract the per-token mean (TransformerLens's centred writing weights)
    # For resid_mid, which is a local variable of the decoder layer, an edit must also reach the residual
    # that flows on: it is applied as a change to the attention output (attn_path) given the layer's input
    # (block_path). Empty for the other hook points.
    block_path: str = ""
    attn_path: str = ""


def family_of(model: Any) -> str | None:
    """The architecture family of `model` (a key of the mapping above), or None when it is not mapped."""
    model_type = getattr(model.config, "model_type", "")
    return _MODEL_TYPE_FAMILY.get(model_type)


def _family_map(model: Any) -> dict[str, tuple[str, str]]:
    family = family_of(model)
    if family is None:
        return {}
    mapping = dict(_FAMILIES[family])
    if family == "neox" and not getattr(model.config, "use_parallel_residual", True):
        mapping["resid_mid"] = ("post_attention_layernorm", "in")
    return mapping


def _n_layers_hint(model: Any) -> int | None:
    config = model.config
    text_cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    for cfg in (text_cfg, config):
        for attr in ("num_hidden_layers", "n_layer"):
            with contextlib.suppress(Exception):
                value = getattr(cfg, attr, None)
                if isinstance(value, int):
                    return value
    return None


def decoder_layers_path(model: Any) -> str:
    """The dotted path of the ModuleList that holds the decoder blocks."""
    import torch.nn as nn

    for candidate in _LAYER_CANDIDATES:
        with contextlib.suppress(AttributeError):
            module = model.get_submodule(candidate)
            if isinstance(module, nn.ModuleList):
                return candidate
    n_layers = _n_layers_hint(model)
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and n_layers and len(module) == n_layers and "vision" not in name:
            return name
    raise ModelLoadError(f"cannot find the decoder layers of model type {model.config.model_type!r}")


def uses_layernorm(model: Any) -> bool:
    """Whether the decoder layers normalise with LayerNorm (which TransformerLens can centre), not RMSNorm."""
    import torch.nn as nn

    if family_of(model) in LAYERNORM_FAMILIES:
        return True
    if family_of(model) is not None:
        return False
    block = model.get_submodule(decoder_layers_path(model))[0]
    return any(isinstance(m, nn.LayerNorm) for m in block.modules())


def _has_module(model: Any, path: str) -> bool:
    try:
        model.get_submodule(path)
    except AttributeError:
        return False
    return True


def _resolve_hf_hook(model: Any, hook_name: str, hf_hook_name: str, layers: str, centre: bool) -> HookPoint:
    """`hf_hook_name` is a module path, with an optional `.output` (the default) or `.input`."""
    path, direction = _HF_SUFFIX_RE.match(hf_hook_name).groups()  # type: ignore[union-attr]
    if not _has_module(model, path) and _has_module(model, hf_hook_name):
        path, direction = hf_hook_name, None  # a module really named "...output"
    layer_match = _HF_LAYER_RE.match(path)
    if not _has_module(model, path) and layer_match:
        # the same layer in this model's layout (e.g. model.layers.12 -> model.language_model.layers.12)
        remapped = f"{layers}.{layer_match.group(2)}{layer_match.group(3)}"
        if _has_module(model, remapped):
            path = remapped
    if not _has_module(model, path):
        raise ModelLoadError(f"the SAE's hf_hook_name {hf_hook_name!r} is not a module of this model")
    match = _HOOK_RE.match(hook_name or "")
    layer = int(layer_match.group(2)) if layer_match else int(match.group(1)) if match else 0
    return HookPoint(hook_name or hf_hook_name, layer, path, read_input=direction == "input", centre=centre)


def resolve_hook(model: Any, hook_name: str, hf_hook_name: str | None = None, centre: bool = False) -> HookPoint:
    """Map a TransformerLens hook name (and optional `hf_hook_name`) onto a module of `model`."""
    layers = decoder_layers_path(model)
    n_layers = len(model.get_submodule(layers))
    if hf_hook_name:
        return _resolve_hf_hook(model, hook_name, hf_hook_name, layers, centre)
    match = _HOOK_RE.match(hook_name or "")
    if not match:
        raise ModelLoadError(
            f"unsupported hook point {hook_name!r}: expected blocks.L.hook_resid_pre, hook_resid_post, "
            "hook_resid_mid, hook_mlp_out or hook_attn_out"
        )
    layer, kind = int(match.group(1)), match.group(2)
    if layer >= n_layers:
        raise ModelLoadError(
            f"the SAE reads layer {layer}, but the model has only {n_layers} layers (0-{n_layers - 1})"
        )
    block = f"{layers}.{layer}"
    if kind == "resid_pre":
        return HookPoint(hook_name, layer, block, read_input=True, centre=centre)
    if kind == "resid_post":
        return HookPoint(hook_name, layer, block, read_input=False, centre=centre)
    mapping = _family_map(model)
    if kind not in mapping:
        raise ModelLoadError(f"hook {hook_name!r} has no equivalent in a {model.config.model_type} model")
    sub, direction = mapping[kind]
    path = f"{block}.{sub}"
    if not _has_module(model, path):
        raise ModelLoadError(f"hook {hook_name!r}: the model has no module {path!r}")
    extra = {}
    if kind == "resid_mid":
        extra = {"block_path": block, "attn_path": f"{block}.{mapping['attn_out'][0]}"}
    return HookPoint(hook_name, layer, path, read_input=direction == "in", centre=centre, **extra)


class _StopForward(Exception):
    """Raised inside a hook once the activation is captured, so the layers above are never run."""


def _first(output: Any) -> Any:
    return output[0] if isinstance(output, tuple) else output


def _centred(acts: Any) -> Any:
    return acts - acts.mean(dim=-1, keepdim=True)


def _input_of(args: tuple, kwargs: dict) -> Any:
    if args:
        return args[0]
    if "hidden_states" in kwargs:
        return kwargs["hidden_states"]
    return next(iter(kwargs.values()))


def capture(model: Any, hook: HookPoint, input_ids: Any, attention_mask: Any = None,
            between: Callable[[], None] | None = None, cache: Any = None,
            row_lengths: list[int] | None = None) -> Any:
    """Run `model` on `input_ids` just far enough to return the activations at `hook` ([batch, seq, d]).
    `between()`, when given, runs before each decoder layer's forward and each of its direct submodules
    (attention, MLP, norms): a place to pause or to stop (an exception it raises ends the forward and
    propagates). With `cache` (a transformers Cache), the forward continues
    from the key/values in it (`input_ids` are the tokens after them) and appends its own, for the layers
    below the hook. `row_lengths`: `input_ids` is [1, n] holding rows end to end, for a model that packs rows
    (`packs_rows`)."""
    import torch

    module = model.get_submodule(hook.module_path)
    captured: list[Any] = []

    def grab(acts: Any) -> None:
        captured.append(_centred(acts) if hook.centre else acts)
        raise _StopForward

    handles = []
    try:
        if between is not None:
            handles.extend(_checkpoint_hooks(model, between))
        if hook.read_input:
            handles.append(module.register_forward_pre_hook(
                lambda _m, args, kwargs: grab(_input_of(args, kwargs)), with_kwargs=True
            ))
        else:
            handles.append(module.register_forward_hook(lambda _m, _args, output: grab(_first(output))))
        with torch.inference_mode(), contextlib.suppress(_StopForward):
            if row_lengths is not None:
                model(input_ids=input_ids, use_cache=False, row_lengths=row_lengths)
            elif cache is None:
                model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
            else:
                model(input_ids=input_ids, attention_mask=attention_mask, use_cache=True, **{_cache_argument(model): cache})
    finally:
        for handle in handles:
            handle.remove()
    if not captured:
        raise RuntimeError(f"hook {hook.name} was never reached")
    return captured[0]


def capture_rows(model: Any, hook: HookPoint, rows: list[list[int]], device: Any = None,
                 between: Callable[[], None] | None = None, skips: list[int] | None = None) -> list[Any]:
    """`capture` of several token rows of unlike lengths in one pass: each row's activations from its skip
    on (`skips`, 0 by default: the positions before are context, read by the model and not returned),
    [len(row) - skip, d], its numbers those of the row alone (up to float rounding). A model that packs rows
    (`packs_rows`) runs them end to end, without padding, and where the hook reads the residual stream
    between layers (`_residual_layer`) through its `residual`, which skips the last layer's work on the
    context; any other model gets them padded on the right and run without an attention mask: under causal
    attention a real position never sees the padding after it and sits where it would alone; without a mask
    the attention runs its causal kernel, several times faster on CPU than the masked one."""
    import torch

    skips = skips if skips is not None else [0] * len(rows)
    if packs_rows(model):
        flat = torch.tensor([[token for row in rows for token in row]], dtype=torch.long)
        flat = flat.to(device) if device is not None else flat
        lengths = [len(row) for row in rows]
        layer = _residual_layer(model, hook)
        if layer is not None:
            with contextlib.ExitStack() as hooks, torch.inference_mode():
                if between is not None:
                    for handle in _checkpoint_hooks(model, between):
                        hooks.callback(handle.remove)
                acts = model.residual(flat, layer, lengths, tuple(skips))
            acts = _centred(acts) if hook.centre else acts
            return list(acts.split([n - skip for n, skip in zip(lengths, skips)]))
        acts = capture(model, hook, flat, between=between, row_lengths=lengths)[0]
        return [row_acts[skip:] for row_acts, skip in zip(acts.split(lengths), skips)]
    longest = max(len(row) for row in rows)
    input_ids = torch.zeros((len(rows), longest), dtype=torch.long)  # any id pads: no real position reads it
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    acts = capture(model, hook, input_ids.to(device) if device is not None else input_ids, between=between)
    return [acts[i, skip:len(row)] for i, (row, skip) in enumerate(zip(rows, skips))]


def _residual_layer(model: Any, hook: HookPoint) -> int | None:
    """For a model with `residual` (Morph's Llama), the decoder layer whose input `hook` reads (resid_pre of
    layer L: L; resid_post of L: L + 1), else None."""
    if not hasattr(model, "residual"):
        return None
    block = f"{decoder_layers_path(model)}.{hook.layer}"
    if hook.module_path != block:
        return None
    return hook.layer if hook.read_input else hook.layer + 1


def _checkpoint_hooks(model: Any, between: Callable[[], None]) -> list[Any]:
    """`between()` registered to run before each checkpoint module's forward; the handles to remove."""
    return [m.register_forward_pre_hook(lambda *_: between()) for m in _checkpoint_modules(model)]


def packs_rows(model: Any) -> bool:
    """Whether `model` runs several rows end to end without padding (Morph's Llama: `row_lengths`)."""
    return "row_lengths" in _forward_parameters(model)


def _checkpoint_modules(model: Any) -> list[Any]:
    """The decoder layers and their direct submodules: places between which a forward can pause, a few per
    layer (every module of the model would be hundreds of hooks to add and remove per forward)."""
    try:
        layers = model.get_submodule(decoder_layers_path(model))
    except ModelLoadError:
        return list(model.modules())
    return [m for layer in layers for m in (layer, *layer.children())]


def new_cache(model: Any) -> Any:
    """An empty key/value cache for `model`: its own kind (morph.models.llama's KVCache), else transformers'
    DynamicCache."""
    if hasattr(model, "new_cache"):
        return model.new_cache()
    from transformers import DynamicCache

    return DynamicCache(config=model.config)


def crop_cache(cache: Any, remove: int) -> None:
    """Drop the last `remove` positions from a key/value cache (a negative count works across versions)."""
    if cache is not None and remove > 0:
        cache.crop(-remove)


_FORWARD_PARAMETERS: dict[type, frozenset[str]] = {}


def _forward_parameters(model: Any) -> frozenset[str]:
    """The argument names of the model's forward, read once per model class (a forward runs every token step)."""
    import inspect

    found = _FORWARD_PARAMETERS.get(type(model))
    if found is None:
        found = _FORWARD_PARAMETERS[type(model)] = frozenset(inspect.signature(model.forward).parameters)
    return found


def _cache_argument(model: Any) -> str:
    """transformers 5.2x takes a key/value cache as `cache`; earlier versions as `past_key_values`."""
    return "cache" if "cache" in _forward_parameters(model) else "past_key_values"


def forward_cached(model: Any, input_ids: Any, cache: Any, last_logits_only: bool = False) -> tuple[Any, Any]:
    """The whole model over `input_ids` after the positions in `cache` (None: from the start); returns the
    logits and the extended cache, whichever name this transformers version gives the cache (the old one
    warns on every call). `last_logits_only`: the logits of the last position alone, where the model can
    skip the others (a prompt read for its key/values: the LM head is a fifth of a small model's forward)."""
    kwargs = {_cache_argument(model): cache}
    if last_logits_only and "logits_to_keep" in _forward_parameters(model):  # Morph's Llama; transformers 4.50+
        kwargs["logits_to_keep"] = 1
    out = model(input_ids=input_ids, use_cache=True, **kwargs)
    extended = getattr(out, "cache", None)
    return out.logits, extended if extended is not None else out.past_key_values


def _replace_output(output: Any, new: Any) -> Any:
    if isinstance(output, tuple):
        return (new, *output[1:])
    return new


@contextlib.contextmanager
def edit_activations(model: Any, hook: HookPoint, edit: Callable[[Any], Any]) -> Iterator[None]:
    """While inside, the activations at `hook` are replaced by `edit(acts)` on every forward pass.

    `edit` sees (and returns) activations in the SAE's frame: centred where the hook is centred. The
    per-token mean removed by centring is added back so the model sees a consistent residual. An edit at
    resid_mid changes the residual stream itself (what the MLP reads and what flows on to the next layer).
    """
    def apply(acts: Any) -> Any:
        if not hook.centre:
            return edit(acts)
        mean = acts.mean(dim=-1, keepdim=True)
        return edit(acts - mean) + mean

    handles = []
    try:
        if hook.block_path and hook.attn_path:
            # resid_mid = layer input + attention output; change the attention output by (edited - resid_mid)
            layer_input: list[Any] = []

            def remember(_m: Any, args: tuple, kwargs: dict) -> None:
                layer_input[:] = [_input_of(args, kwargs)]

            def shift(_m: Any, _args: Any, output: Any) -> Any:
                attn = _first(output)
                resid_mid = layer_input[0] + attn
                return _replace_output(output, attn + (apply(resid_mid) - resid_mid))

            handles.append(model.get_submodule(hook.block_path).register_forward_pre_hook(remember, with_kwargs=True))
            handles.append(model.get_submodule(hook.attn_path).register_forward_hook(shift))
        elif hook.read_input:
            def pre_hook(_m: Any, args: tuple, kwargs: dict) -> Any:
                if args:
                    return (apply(args[0]), *args[1:]), kwargs
                kwargs = dict(kwargs)
                key = "hidden_states" if "hidden_states" in kwargs else next(iter(kwargs))
                kwargs[key] = apply(kwargs[key])
                return args, kwargs

            handles.append(model.get_submodule(hook.module_path).register_forward_pre_hook(pre_hook, with_kwargs=True))
        else:
            def post_hook(_m: Any, _args: Any, output: Any) -> Any:
                return _replace_output(output, apply(_first(output)))

            handles.append(model.get_submodule(hook.module_path).register_forward_hook(post_hook))
        yield
    finally:
        for handle in handles:
            handle.remove()
