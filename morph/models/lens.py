"""A Lens: a causal LM, its tokenizer, an SAE and the hook point joining them, loaded once."""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, TypeVar

from morph.errors import InputError, ModelLoadError
from morph.models.hooks import HookPoint, resolve_hook, uses_layernorm
from morph.models import default_model
from morph.models.presets import DEFAULT_DIR, PRESETS, TL_TO_HF, default_sae_available
from morph.models.remote_code import REFUSAL, is_remote_code_refusal, refuse_remote_code
from morph.models.sae_like import SAELike

if TYPE_CHECKING:
    from sae_lens.loading.pretrained_saes_directory import PretrainedSAELookup
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

    from morph.models.llama import LlamaForCausalLM
    from morph.models.tokenizer import FastTokenizer

    CausalLM = PreTrainedModel | LlamaForCausalLM
    TokenizerLike = PreTrainedTokenizerFast | FastTokenizer

_Loaded = TypeVar("_Loaded")


@dataclass(frozen=True)
class LensSpec:
    """What the user asked for: model and SAE (None = the embedded default), and a device."""

    model: str | None = None
    sae: str | None = None
    device: str = "auto"


@dataclass(frozen=True, eq=False)
class Lens:
    """A causal LM, its fast tokenizer, an SAE and the hook point joining them: built once, never changed.

    `lock` is held around every forward pass of `model` by the engine (analysis, steering, concept
    reading): hooks are registered on the model's modules, so two threads must not interleave passes with
    hooks. It is re-entrant, so that engine code holding it may call a helper that takes it too.
    `dataclasses.replace` keeps the same lock, as it keeps the same model. Labels and statistics are not
    here: they belong to the engine (morph.features.engine.Engine)."""

    model: CausalLM  # eval mode: transformers' model, or Morph's own Llama (morph.models.llama)
    tokenizer: TokenizerLike  # a fast tokenizer (offsets are needed): transformers', or Morph's reading of one
    sae: SAELike  # morph.models.saes.NativeSAE or sae_lens.SAE
    hook: HookPoint
    device: str
    model_name: str
    sae_name: str
    prepend_bos: bool
    bos_token_id: int | None
    context_size: int
    sae_dir: Path | None = None  # where a label file may sit beside the SAE
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def bos_prefix(self) -> list[int]:
        """What goes before a text's tokens: [BOS] where the SAE was trained with one (its metadata), else []."""
        return [self.bos_token_id] if self.prepend_bos and self.bos_token_id is not None else []

    @property
    def d_sae(self) -> int:
        return int(self.sae.cfg.d_sae)

    @property
    def d_model(self) -> int:
        return int(self.sae.cfg.d_in)


def _hub_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) as huggingface_hub reads it, or as it was set since."""
    import sys

    flag = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    hub = sys.modules.get("huggingface_hub.constants")
    return flag.strip().lower() in ("1", "true", "yes", "on") or bool(getattr(hub, "HF_HUB_OFFLINE", False))


def _short(err: BaseException) -> str:
    """An exception as one line of at most ~200 characters."""
    text = " ".join(line.strip() for line in str(err).strip().splitlines() if line.strip())
    if not text:
        return type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _proxied() -> bool:
    return any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"))


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP connection to the hub. huggingface_hub retries a dead network for half a minute a file;
    this tells in a few seconds (behind a proxy it cannot tell, and says yes)."""
    import socket
    import threading
    from urllib.parse import urlparse

    if _proxied():
        return True
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True, name="morph-hub-probe")
    thread.start()
    thread.join(timeout + 0.5)  # name resolution has no timeout of its own
    return bool(result and result[0])


@contextlib.contextmanager
def _hub_access() -> Iterator[str | None]:
    """Yields None when the hub may be used, else why not; while unreachable, huggingface_hub is put in
    offline mode so that cached files still load and the rest fails at once instead of retrying."""
    if _hub_offline():
        yield "HF_HUB_OFFLINE is set"
        return
    if _hub_reachable():
        yield None
        return
    import huggingface_hub.constants as hub_constants

    previous = hub_constants.HF_HUB_OFFLINE
    hub_constants.HF_HUB_OFFLINE = True
    try:
        yield "the Hugging Face hub cannot be reached (no network?)"
    finally:
        hub_constants.HF_HUB_OFFLINE = previous


def _hub_error(err: BaseException) -> str:
    """One line for a failed hub load."""
    if is_remote_code_refusal(err):
        return REFUSAL
    try:
        from huggingface_hub import errors as hub_errors
    except ImportError:  # pragma: no cover
        return _short(err)
    if isinstance(err, (hub_errors.LocalEntryNotFoundError, hub_errors.OfflineModeIsEnabled)):
        return "not in the local cache"
    if isinstance(err, hub_errors.GatedRepoError):
        return "the repository is gated: accept its licence on huggingface.co and log in (hf auth login)"
    if isinstance(err, hub_errors.RepositoryNotFoundError):
        return "no such repository on the hub (or it is private)"
    if isinstance(err, hub_errors.EntryNotFoundError):
        return "the repository has no such file"
    return _short(err)


def _looks_like_path(name: str) -> bool:
    """Hub ids are `name` or `owner/name`; anything else with a separator is meant as a folder."""
    return (name.startswith((".", "/", "~")) or name.count("/") > 1 or name.endswith("/")
            or "\\" in name or (len(name) > 1 and name[1] == ":"))


def _from_pretrained(loader: Callable[..., _Loaded], name: str, what: str, part: str | None = None,
                     **kwargs: object) -> _Loaded:
    """Load from a folder, the local cache, then (unless offline) the hub; errors become one line.

    `what` names the thing the user gave (model), `part` the piece being loaded (its tokenizer)."""
    part = part or what
    local = Path(name).expanduser()
    if local.exists():
        if not local.is_dir():
            raise ModelLoadError(f"{what} path {name!r} is not a folder")
        try:
            return loader(str(local), local_files_only=True, **kwargs)
        except Exception as err:  # noqa: BLE001 - any loader failure is a user-facing load error
            why = REFUSAL if is_remote_code_refusal(err) else _short(err)
            raise ModelLoadError(f"cannot load the {part} from {name!r}: {why}") from None
    if _looks_like_path(name):
        raise ModelLoadError(f"{what} folder {name!r} does not exist")
    try:
        return loader(name, local_files_only=True, **kwargs)
    except OSError:  # not (completely) cached: try the hub
        pass
    except Exception as err:  # noqa: BLE001 - cached, but it does not load
        why = REFUSAL if is_remote_code_refusal(err) else _short(err)
        raise ModelLoadError(f"cannot load the {part} of {name!r} from the local cache: {why}") from None
    with _hub_access() as no_hub:
        if no_hub:
            raise ModelLoadError(f"{what} {name!r} is not a folder and not in the local cache, and {no_hub}")
        try:
            return loader(name, **kwargs)
        except Exception as err:  # noqa: BLE001
            raise ModelLoadError(
                f"cannot load the {part} of {name!r}: not a local folder, not cached, and the hub failed: "
                f"{_hub_error(err)}"
            ) from None


def resolve_model_name(name: str, progress: default_model.Progress | None = None) -> str:
    """A model name as the loaders take it: the default's hub id (or the preset name) becomes its local
    folder, converted from the installed GGUF first if need be; anything else is returned as it is."""
    if name in ("default", default_model.HUB_ID) and not Path(name).expanduser().exists():
        if default_model.find_source() is not None:
            return str(default_model.ensure(progress))
        if name == "default":
            raise ModelLoadError(default_model.HOW_TO_GET)
    return name


def load_tokenizer(name: str) -> TokenizerLike:
    """The fast tokenizer of a model (a folder, or a hub id in the cache or online): a folder with a
    generic fast tokenizer is read without transformers (morph.models.tokenizer), any other with
    transformers' AutoTokenizer."""
    from morph.models.tokenizer import FastTokenizer

    folder = Path(name).expanduser()
    if FastTokenizer.usable(folder):
        try:
            return FastTokenizer.from_folder(folder)
        except Exception as err:  # noqa: BLE001 - tokenizers raises plain Exception for a bad file
            raise ModelLoadError(f"cannot load the tokenizer from {name!r}: {_short(err)}") from None
    from transformers import AutoTokenizer

    tokenizer = _from_pretrained(AutoTokenizer.from_pretrained, name, "model", "tokenizer", use_fast=True,
                                 trust_remote_code=False)
    if not getattr(tokenizer, "is_fast", False):
        raise ModelLoadError(f"model {name!r} has no fast tokenizer; Morph needs character offsets")
    if len(tokenizer) < 2:  # transformers 5 makes an empty tokenizer when a folder has no tokenizer files
        raise ModelLoadError(f"model {name!r} has no usable tokenizer (no tokenizer.json or vocabulary files)")
    return tokenizer


def load_model_and_tokenizer(name: str, device: str) -> tuple[CausalLM, TokenizerLike]:
    """The model (eval mode, on `device`) and its fast tokenizer, from a folder, the cache or the hub.

    A folder holding a plain Llama checkpoint loads with Morph's own Llama (morph.models.llama: the same
    numbers without importing transformers' modelling code, seconds sooner); anything else with
    transformers. No code that comes with the model ever runs: a folder is checked by `refuse_remote_code`
    first, and every load passes trust_remote_code=False (so transformers never asks on standard input)."""
    import torch

    local = Path(name).expanduser()
    if local.exists() and not local.is_dir():
        raise ModelLoadError(f"model path {name!r} is not a folder")
    if not local.exists() and _looks_like_path(name):
        raise ModelLoadError(f"model folder {name!r} does not exist")
    if local.is_dir():
        refuse_remote_code(local)
    tokenizer = load_tokenizer(name)
    native = _native_llama(local, device) if local.is_dir() else None
    if native is not None:
        return native, tokenizer
    from transformers import AutoModelForCausalLM

    dtype = torch.float32 if device == "cpu" else "auto"
    model = _from_pretrained(
        AutoModelForCausalLM.from_pretrained, name, "model",
        dtype=dtype, use_safetensors=True, trust_remote_code=False,
    )
    try:
        model.to(device)
    except (RuntimeError, MemoryError) as err:  # out of memory, a broken device
        raise ModelLoadError(f"cannot move model {name!r} to {device}: {_short(err)}") from None
    model.eval()
    return model, tokenizer


def _native_llama(folder: Path, device: str) -> LlamaForCausalLM | None:
    """The checkpoint in `folder` on Morph's own Llama, or None when that cannot run it (not a plain Llama
    config, no safetensors weights): transformers loads it then, and says what is wrong if anything is."""
    import torch

    from morph.models import llama

    config = llama.LlamaConfig.read(folder)
    if config is None or not llama.weight_files(folder):
        return None
    named = getattr(torch, config.dtype, None)
    dtype = named if device != "cpu" and isinstance(named, torch.dtype) else torch.float32
    try:
        return llama.load(folder, config, device, dtype)
    except (OSError, ValueError, RuntimeError) as err:
        raise ModelLoadError(f"cannot load the model from {str(folder)!r}: {_short(err)}") from None


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
    lookup = _sae_directory().get(release)
    if lookup is None:
        return None
    return TL_TO_HF.get(lookup.model, lookup.model)


def _sae_directory() -> dict[str, PretrainedSAELookup]:
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    return get_pretrained_saes_directory()


_SAE_EXAMPLE = "e.g. gpt2-small-res-jb:blocks.8.hook_resid_pre"


def check_sae_spec(spec: str) -> None:
    """Refuse an SAE spec that cannot load, before anything large is loaded: a missing folder, a folder
    without cfg.json, an unknown registry release, an id not in a known release."""
    release, sae_id = _split_sae_spec(spec)
    folder = Path(release).expanduser()
    if sae_id is None:
        if folder.is_dir():
            if not (folder / "cfg.json").is_file():
                raise ModelLoadError(f"SAE folder {spec!r} has no cfg.json (SAE-Lens's on-disk format)")
            return
        if folder.exists():
            raise ModelLoadError(f"SAE path {spec!r} is not a folder (SAE-Lens saves an SAE as a folder with cfg.json)")
        if _looks_like_path(spec):
            raise ModelLoadError(f"SAE folder {spec!r} does not exist")
        if "/" not in release and release in _sae_directory():
            raise ModelLoadError(f"SAE {spec!r} is a release: add the SAE id as {release}:SAE_ID ({_SAE_EXAMPLE})")
        raise ModelLoadError(f"SAE {spec!r} is neither a folder nor RELEASE:SAE_ID ({_SAE_EXAMPLE})")
    directory = _sae_directory()
    if release in directory:
        if sae_id not in directory[release].saes_map:
            ids = list(directory[release].saes_map)
            shown = ", ".join(ids[:3]) + (f", ... ({len(ids)} in all)" if len(ids) > 3 else "")
            raise ModelLoadError(f"SAE id {sae_id!r} is not in SAE-Lens release {release!r} (it has {shown})")
    elif "/" not in release or not sae_id:
        raise ModelLoadError(f"unknown SAE release {release!r}: not in SAE-Lens's registry, not an HF repo:path")


@dataclass(frozen=True)
class SAEIdentity:
    """What is known of an SAE without loading it: its spec, its Neuronpedia id, its width (None: unknown)."""

    spec: str
    neuronpedia_id: str | None
    d_sae: int | None


def sae_identity(spec: LensSpec) -> SAEIdentity:
    """The SAE `spec` names (a preset's, the default's, a folder or a registry id), read from its cfg.json or
    SAE-Lens's registry; nothing is downloaded or loaded."""
    import json

    sae = spec.sae
    if sae is None:
        name = spec.model or "default"
        if name not in PRESETS:
            raise InputError(f"model {name!r} needs an SAE: give --sae (a folder or RELEASE:SAE_ID)")
        sae = PRESETS[name].sae
    check_sae_spec(sae)
    release, sae_id = _split_sae_spec(sae)
    if sae_id is None:
        cfg_path = Path(release).expanduser() / "cfg.json"
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ModelLoadError(f"cannot read {cfg_path}: {_short(err)}") from None
        meta = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
        npid = meta.get("neuronpedia_id") or cfg.get("neuronpedia_id")
        d_sae = cfg.get("d_sae")
        return SAEIdentity(sae, npid if isinstance(npid, str) else None, int(d_sae) if isinstance(d_sae, int) else None)
    lookup = _sae_directory().get(release)
    npid = lookup.neuronpedia_id.get(sae_id) if lookup is not None else None
    return SAEIdentity(sae, npid, None)


def load_sae(spec: str, device: str) -> tuple[SAELike, Path | None]:
    """Load an SAE; returns the SAE and the local folder it came from (if any).

    A local folder of an architecture morph.models.saes covers loads natively (importing SAE-Lens takes
    seconds); everything else goes through SAE-Lens. An SAE with a NaN or infinite weight is refused: every
    activation it gave would be NaN (and `--json` would print invalid JSON)."""
    sae, folder = _load_sae(spec, device)
    _refuse_non_finite(sae, spec)
    return sae, folder


def _refuse_non_finite(sae: SAELike, spec: str) -> None:
    import torch

    for name, tensor in [*sae.named_parameters(), *sae.named_buffers()]:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise ModelLoadError(f"SAE {spec!r} is broken: its {name} has {bad} NaN or infinite value"
                                 f"{'s' if bad != 1 else ''}")


def _load_sae(spec: str, device: str) -> tuple[SAELike, Path | None]:
    import warnings

    check_sae_spec(spec)
    release, sae_id = _split_sae_spec(spec)
    if sae_id is None:
        from morph.models.saes import load_native_sae

        folder = Path(release).expanduser()
        native = load_native_sae(folder, device)
        if native is not None:
            return native, folder
    from sae_lens import SAE

    if sae_id is None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return SAE.load_from_disk(str(folder), device=device), folder
        except Exception as err:  # noqa: BLE001
            raise ModelLoadError(f"cannot load SAE from {spec!r}: {_short(err)}") from None
    with _hub_access() as no_hub:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return SAE.from_pretrained(release, sae_id, device=device), None
        except Exception as err:  # noqa: BLE001
            why = _hub_error(err)
            if no_hub and why == "not in the local cache":
                raise ModelLoadError(f"SAE {spec!r} is not in the local cache, and {no_hub}") from None
            raise ModelLoadError(f"cannot load SAE {spec!r}: {why}") from None


_TRANSFORMER_LENS_CLASSES = {"HookedTransformer", "HookedSAETransformer"}


def _wants_centring(model: CausalLM, sae: SAELike) -> bool:
    """Whether the SAE was trained on TransformerLens activations with centred writing weights.

    SAE-Lens loads a HookedTransformer with `from_pretrained_no_processing(**model_from_pretrained_kwargs)`,
    so the residual is centred only where those kwargs say `center_writing_weights: true` (the registry
    adds that for gpt2-small-res-jb and friends), and TransformerLens can centre only LayerNorm models.
    """
    meta = sae.cfg.metadata
    if meta.get("hf_hook_name"):
        return False  # hooked on the Hugging Face model itself
    if (meta.get("model_class_name") or "HookedTransformer") not in _TRANSFORMER_LENS_CLASSES:
        return False
    kwargs = meta.get("model_from_pretrained_kwargs") or {}
    if not kwargs.get("center_writing_weights", False):
        return False
    return uses_layernorm(model)


def resolve_spec(spec: LensSpec) -> tuple[str, str]:
    """Fill in the defaults: presets by name, the embedded default, the model an SAE was trained on."""
    model, sae = spec.model, spec.sae
    if model in PRESETS and sae is None:
        model, sae = PRESETS[model].model, PRESETS[model].sae
    elif model in PRESETS and not Path(model).expanduser().exists():
        model = PRESETS[model].model  # a preset's model with another SAE
    if model is None and sae is None:
        if not default_sae_available():
            raise ModelLoadError(f"the default SAE is missing from {DEFAULT_DIR} (a broken install?)")
        if default_model.find_source() is None:
            raise ModelLoadError(default_model.HOW_TO_GET)
        return PRESETS["default"].model, PRESETS["default"].sae
    if sae is None:
        raise InputError(f"model {model!r} needs an SAE: give --sae (a folder or RELEASE:SAE_ID)")
    if model is None:
        model = sae_model_name(sae)
        if model is None:
            raise InputError(f"cannot tell which model SAE {sae!r} belongs to: give --model")
    return model, sae


def load_lens(spec: LensSpec, progress: default_model.Progress | None = None) -> Lens:
    """Load model, tokenizer and SAE. `progress` hears about a first conversion of the default model."""
    from morph.models.device import resolve_device

    device = resolve_device(spec.device)
    model_name, sae_name = resolve_spec(spec)
    check_sae_spec(sae_name)  # a bad SAE is refused before a large model loads
    model, tokenizer = load_model_and_tokenizer(resolve_model_name(model_name, progress), device)
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
    text_cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    context = getattr(text_cfg, "max_position_embeddings", None) or getattr(text_cfg, "n_positions", None) or 1024
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
