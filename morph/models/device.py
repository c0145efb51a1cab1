"""Choosing the torch device: cuda, then mps, then cpu."""

from __future__ import annotations


def resolve_device(requested: str | None = "auto") -> str:
    import torch

    if requested in (None, "", "auto"):
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    from morph.errors import InputError

    kind = requested.split(":")[0]
    if kind == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {requested!r} asked for, but no CUDA GPU is available")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError(f"device {requested!r} asked for, but MPS is not available")
    if kind not in ("cpu", "cuda", "mps"):
        raise InputError(f"unknown device {requested!r}: use auto, cpu, cuda or mps")
    return requested
