"""What the subcommands share: reading the input file, building the engine from --model/--sae/--device."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from morph.errors import InputError

if TYPE_CHECKING:
    from morph.features.engine import Engine


@dataclass(frozen=True)
class InputText:
    """A file's text exactly as its characters stand (line endings kept), BOM left out.

    Offsets on the command line and in JSON output count characters of the file: `shift` (1 with a BOM)
    is added to offsets into `text` to give offsets into the file.
    """

    path: Path
    text: str
    shift: int


def read_input(path: str) -> InputText:
    from morph.textio import read_document

    loaded = read_document(path)
    if loaded.is_new:
        raise InputError(f"cannot open {loaded.path}: no such file")
    shift = 1 if loaded.had_bom else 0
    if loaded.newline == "\n" and not loaded.mixed_newlines:  # no '\r' in the file: its text is as read
        return InputText(loaded.path, loaded.text, shift)
    try:
        raw = loaded.path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {loaded.path}: {exc.strerror or exc}") from None
    return InputText(loaded.path, raw[3 if loaded.had_bom else 0:].decode("utf-8", errors="replace"), shift)


def engine_from_args(args: argparse.Namespace) -> Engine:
    from morph.features.engine import Engine, LensSpec

    return Engine.load(LensSpec(model=args.model, sae=args.sae, device=args.device or "auto"), progress=say_progress)


def say_progress(what: str, done: float) -> None:
    """A first conversion of the default model, on stderr (stdout stays the command's output)."""
    import sys

    if done <= 0.05:
        print("morph: first use: preparing the default model (once, about a minute)", file=sys.stderr)
    print(f"morph: {done:4.0%} {what}", file=sys.stderr, flush=True)
