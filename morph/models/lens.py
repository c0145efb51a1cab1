"""A Lens: a causal LM, its tokenizer, an SAE and the hook point joining them, loaded once."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from morph.errors import InputError, ModelLoadError
from morph.models.hooks import LAYERNORM_FAMILIES, HookPoint, family_of, resolve_hook
from morph.models.presets import DEFAULT_DIR, PRESETS, TL_TO_HF, default_available


@dataclass(frozen=True)
class LensSpec:
    """What the user asked for: model and SAE (None = the embedded default), and a device."""

    model: str | None = None
    sae: str | None = None
    device: str = "auto"


@dataclass
class Lens:
    model: Any  # transformers PreTrainedModel, eval mode
    tokenizer: Any  # a fast tokenizer (offsets are needed)
    sae: Any  # sae_lens.SAE
    hook: HookPoint
    device: str
    model_name: str
    sae_name: str
    prepend_bos: bool
    bos_token_id: int | None
    context_size: int
    sae_dir: Path | None = None  # where a label file may sit beside the SAE
    labels: Any = field(default=None, repr=False)  # filled by morph.features.labels

    @property
    def d_sae(self) -> int:
        return int(self.sae.cfg.d_sae)

    @property
    def d_model(self) -> int:
        return int(self.sae.cfg.d_in)


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


def _from_pretrained(loader: Any, name: str, what: str, **kwargs: Any) -> Any:
    """Load from a folder, the local cache, then (unless offline) the hub; errors become one line."""
    local = Path(name).expanduser()
    if local.exists():
        if not local.is_dir():
            raise ModelLoadError(f"{what} path {name!r} is not a folder")
        try:
            return loader(str(local), local_files_only=True, **kwargs)
        except Exception as err:  # noqa: BLE001 - any loader failure is a user-facing load error
            raise ModelLoadError(f"cannot load {what} from {name!r}: {_short(err)}") from None
    if name.startswith((".", "/", "~")) or os.sep + os.sep in name:
        raise ModelLoadError(f"{what} folder {name!r} does not exist")
    try:
        return loader(name, local_files_only=True, **kwargs)
    except Exception:  # noqa: BLE001 - not cached: fall through to the hub
        pass
    if _hub_offline():
        raise ModelLoadError(f"{what} {name!r} is not in the local cache and HF_HUB_OFFLINE is set")
    try:
        return loader(name, **kwargs)
    except Exception as err:  # noqa: BLE001
        raise ModelLoadError(
            f"cannot load {what} {name!r}: not a local folder, not cached, and the hub failed ({_short(err)})"
        ) from None


def load_model_and_tokenizer(name: str, device: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = _from_pretrained(AutoTokenizer.from_pretrained, name, "tokenizer", use_fast=True)
    if not getattr(tokenizer, "is_fast", False):
        raise ModelLoadError(f"model {name!r} has no fast tokenizer; Morph needs character offsets")
    dtype = torch.float32 if device == "cpu" else "auto"
    model = _from_pretrained(
        AutoModelForCausalLM.from_pretrained, name, "model",
        dtype=dtype, use_safetensors=True, trust_remote_code=False,
    )
    model.to(device)
    model.eval()
    return model, tokenizer


def _split_sae_spec(spec: str) -> tuple[str, str | None]:
    """`RELEASE:ID`, `owner/repo:path`, or a folder."""
    if Path(spec).expanduser().exists():
        return spec, None
    release, sep, sae_id = spec.partition(":")
    return release, (sae_id if sep else None)


def sae_model_name(spec: str) -> str | None:
    """The model an SAE from the registry was trained on, as a Hugging Face id, if the registry says."""
    release, sae_id = _split_sae_spec(spec)
    if sae_id is None:
        return None
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    lookup = get_pretrained_saes_directory().get(release)
    if lookup is None:
        return None
    return TL_TO_HF.get(lookup.model, lookup.model)


def load_sae(spec: str, device: str) -> tuple[Any, Path | None]:
    """Load an SAE through SAE-Lens; returns the SAE and the local folder it came from (if any)."""
    import warnings

    from sae_lens import SAE

    release, sae_id = _split_sae_spec(spec)
    folder = Path(release).expanduser()
    if sae_id is None:
        if not folder.is_dir():
            raise ModelLoadError(
                f"SAE {spec!r} is neither a folder nor RELEASE:SAE_ID (e.g. gpt2-small-res-jb:blocks.8.hook_resid_pre)"
            )
        if not (folder / "cfg.json").is_file():
            raise ModelLoadError(f"SAE folder {spec!r} has no cfg.json (SAE-Lens's on-disk format)")
        try:
            return SAE.load_from_disk(str(folder), device=device), folder
        except Exception as err:  # noqa: BLE001
            raise ModelLoadError(f"cannot load SAE from {spec!r}: {_short(err)}") from None
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    directory = get_pretrained_saes_directory()
    if release in directory and sae_id not in directory[release].saes_map:
        raise ModelLoadError(f"SAE id {sae_id!r} is not in SAE-Lens release {release!r}")
    if release not in directory and "/" not in release:
        raise ModelLoadError(f"unknown SAE release {release!r} (not in SAE-Lens's registry, not an HF repo)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return SAE.from_pretrained(release, sae_id, device=device), None
    except Exception as err:  # noqa: BLE001
        hint = " (HF_HUB_OFFLINE is set)" if _hub_offline() else ""
        raise ModelLoadError(f"cannot load SAE {spec!r}: {_short(err)}{hint}") from None


def _wants_centring(model: Any, sae: Any) -> bool:
    """TransformerLens centres GPT-2/NeoX's residual stream unless told not to; HF-trained SAEs never are."""
    meta = sae.cfg.metadata
    if family_of(model) not in LAYERNORM_FAMILIES:
        return False
    if (meta.get("model_class_name") or "HookedTransformer") != "HookedTransformer":
        return False
    kwargs = meta.get("model_from_pretrained_kwargs") or {}
    return bool(kwargs.get("center_writing_weights", True))


def resolve_spec(spec: LensSpec) -> tuple[str, str]:
    """Fill in the defaults: presets by name, the embedded default, the model an SAE was trained on."""
    model, sae = spec.model, spec.sae
    if model in PRESETS and sae is None:
        model, sae = PRESETS[model].model, PRESETS[model].sae
    if model is None and sae is None:
        if not default_available():
            raise ModelLoadError(f"the embedded default model is missing from {DEFAULT_DIR}")
        return PRESETS["default"].model, PRESETS["default"].sae
    if sae is None:
        raise InputError(f"model {model!r} needs an SAE: give --sae (a folder or RELEASE:SAE_ID)")
    if model is None:
        model = sae_model_name(sae)
        if model is None:
            raise InputError(f"cannot tell which model SAE {sae!r} belongs to: give --model")
    return model, sae


def load_lens(spec: LensSpec) -> Lens:
    from morph.models.device import resolve_device

    device = resolve_device(spec.device)
    model_name, sae_name = resolve_spec(spec)
    model, tokenizer = load_model_and_tokenizer(model_name, device)
    sae, sae_dir = load_sae(sae_name, device)
    d_model = model.get_input_embeddings().weight.shape[1]
    if int(sae.cfg.d_in) != int(d_model):
        raise ModelLoadError(
            f"SAE {sae_name!r} reads vectors of width {sae.cfg.d_in}, but model {model_name!r} has width {d_model}"
        )
    meta = sae.cfg.metadata
    hook = resolve_hook(model, meta.get("hook_name") or "", meta.get("hf_hook_name"), _wants_centring(model, sae))
    sae.eval()
    prepend_bos = meta.get("prepend_bos")
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    context = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", 1024)
    return Lens(
        model=model, tokenizer=tokenizer, sae=sae, hook=hook, device=device,
        model_name=_display_name(model_name), sae_name=_display_name(sae_name),
        prepend_bos=True if prepend_bos is None else bool(prepend_bos), bos_token_id=bos,
        context_size=int(min(context, 1 << 20)), sae_dir=sae_dir,
    )


def _display_name(name: str) -> str:
    path = Path(name)
    if path.is_absolute() and DEFAULT_DIR in path.parents:
        return f"morph-default/{path.name}"
    return name
