"""Morph never runs Python that comes with a model: a folder that asks for it is refused before anything loads.

transformers runs a folder's own modules when its config.json (or tokenizer_config.json) has an `auto_map`
and the loader is told to trust remote code; told nothing, it asks on standard input. Every load in Morph
passes `trust_remote_code=False`, and a local folder is checked here first, so the refusal is one plain line
rather than transformers' paragraph.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from morph.errors import ModelLoadError

NATIVE_TYPES = ("llama",)
"""Model types Morph runs with its own code (morph.models.llama reads this tuple): known without asking
transformers, whose CONFIG_MAPPING costs a second to import."""

REFUSAL = "it needs its own Python code (auto_map), which Morph never runs"


def _read_json(path: Path) -> dict[str, Any] | None:
    """The file's JSON object, None when the file is absent; ModelLoadError when it is not a JSON object."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ModelLoadError(f"cannot read {path}: {str(err).splitlines()[0][:150]}") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"cannot read {path}: not a JSON object")
    return data


def refuse_remote_code(folder: Path) -> None:
    """Raise ModelLoadError (one line) when the model folder would need code of its own to load: an `auto_map`
    in config.json or tokenizer_config.json, or a `model_type` this transformers does not know."""
    config = _read_json(folder / "config.json")
    if config is None:
        raise ModelLoadError(f"model folder {str(folder)!r} has no config.json (not a Hugging Face model folder)")
    for name, data in (("config.json", config), ("tokenizer_config.json", _read_json(folder / "tokenizer_config.json"))):
        if data is not None and data.get("auto_map"):
            raise ModelLoadError(f"model folder {str(folder)!r} is refused: its {name} has an auto_map; {REFUSAL}")
    model_type = config.get("model_type")
    if model_type is not None and model_type not in NATIVE_TYPES:  # those are known without importing transformers
        from transformers import CONFIG_MAPPING

        if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
            raise ModelLoadError(
                f"model folder {str(folder)!r} is refused: unknown model_type {model_type!r} (this transformers "
                "does not know it, and Morph never runs a model's own code)"
            )


def is_remote_code_refusal(err: BaseException) -> bool:
    """Whether a transformers error is its refusal to run a repository's code (trust_remote_code=False)."""
    return isinstance(err, ValueError) and "trust_remote_code" in str(err)
