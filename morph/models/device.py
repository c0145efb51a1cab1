"""Choosing the torch device: cuda, then mps, then cpu."""

from __future__ import annotations


def resolve_device(requested: str | None = "auto") -> str:
    """`auto` (or nothing) picks cuda, then mps, then cpu; an explicit device must exist, else InputError."""
    import torch

    if requested is None or requested.strip().lower() in ("", "auto"):
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    from morph.errors import InputError

    requested = requested.strip().lower()
    kind, _, index = requested.partition(":")
    if kind not in ("cpu", "cuda", "mps"):
        raise InputError(f"unknown device {requested!r}: use auto, cpu, cuda or mps")
    if index and not index.isdigit():
        raise InputError(f"bad device {requested!r}: the index after ':' must be a number, as in cuda:0")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {requested!r} asked for, but no CUDA GPU is available")
        if index and int(index) >= torch.cuda.device_count():
            raise InputError(f"device {requested!r} asked for, but there are only {torch.cuda.device_count()} CUDA GPUs")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError(f"device {requested!r} asked for, but MPS is not available")
    return requested
