"""The LM stage's resumable checkpoint: one safetensors file, tensors only, with the rest as JSON in its metadata.

Tensors and JSON only: reading it can run no code. Written atomically (temporary file, fsync, rename), so a
kill mid-save leaves the previous checkpoint. A file that cannot be read is one line: remove it or --fresh.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from morph.errors import InputError

_STATE_KEY = "morph_state"
_MODEL, _OPTIMIZER = "model/", "optimizer/"


@dataclass
class Checkpoint:
    """What the LM stage resumes from: model and optimizer state dicts, and plain JSON values (`state`)."""

    model: dict[str, Any]
    optimizer: dict[str, Any]
    state: dict[str, Any]


def save(path: Path, checkpoint: Checkpoint) -> None:
    """Write `checkpoint` to `path` atomically. Optimizer tensors are stored as tensors; its other values as JSON."""
    from safetensors.torch import save_file

    # copies: tied weights share storage, which safetensors refuses
    tensors = {_MODEL + k: v.detach().to("cpu", copy=True).contiguous() for k, v in checkpoint.model.items()}
    scalars: dict[str, Any] = {}
    for index, values in checkpoint.optimizer["state"].items():
        for name, value in values.items():
            if hasattr(value, "detach"):
                tensors[f"{_OPTIMIZER}{index}/{name}"] = value.detach().to("cpu", copy=True).contiguous()
            else:
                scalars[f"{index}/{name}"] = value
    meta = {"state": checkpoint.state, "param_groups": checkpoint.optimizer["param_groups"],
            "optimizer_scalars": scalars}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={_STATE_KEY: json.dumps(meta)})
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load(path: Path) -> Checkpoint:
    """Read a checkpoint written by `save`; InputError (one line) when the file is not one."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt", device="cpu") as fh:
            meta = json.loads((fh.metadata() or {})[_STATE_KEY])
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}
        model = {k[len(_MODEL):]: v for k, v in tensors.items() if k.startswith(_MODEL)}
        state: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith(_OPTIMIZER):
                index, name = key[len(_OPTIMIZER):].split("/", 1)
                state.setdefault(int(index), {})[name] = value
        for key, value in meta["optimizer_scalars"].items():
            index, name = key.split("/", 1)
            state.setdefault(int(index), {})[name] = value
        optimizer = {"state": state, "param_groups": meta["param_groups"]}
        return Checkpoint(model=model, optimizer=optimizer, state=dict(meta["state"]))
    except Exception as err:  # noqa: BLE001 - safetensors, JSON and shape errors alike mean a bad file
        raise unreadable(path, err) from None


def unreadable(path: Path, err: BaseException) -> InputError:
    """The one-line error for a checkpoint that cannot be resumed from."""
    why = " ".join(str(err).split())[:150] or type(err).__name__
    return InputError(f"cannot resume from checkpoint {path}: {why} (remove it, or start over with --fresh)")


def load_legacy(path: Path) -> Checkpoint:
    """Read a checkpoint of the earlier format (torch.save of a dict), tensors and plain values only:
    torch's weights-only reader refuses anything that would run code."""
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in data.items() if k not in ("model", "optimizer")}
        return Checkpoint(model=data["model"], optimizer=data["optimizer"], state=state)
    except Exception as err:  # noqa: BLE001 - a refused object, a truncated zip, a missing key
        raise unreadable(path, err) from None
