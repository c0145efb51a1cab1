"""What the subcommands share: reading the input file, building the engine from --model/--sae/--device."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from morph.errors import InputError

if TYPE_CHECKING:
    from morph.features.engine import EngineLike


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


def engine_from_args(args: argparse.Namespace) -> "EngineLike":
    """The local engine for --model/--sae/--device, or the remote one of --server."""
    server = getattr(args, "server", None)
    if server:
        return remote_engine(server, getattr(args, "secret_key", None), args)
    from morph.features.engine import Engine, LensSpec

    return Engine.load(LensSpec(model=args.model, sae=args.sae, device=args.device or "auto"), progress=say_progress)


def remote_engine(url: str, secret_key: str | None, args: argparse.Namespace | None = None) -> "EngineLike":
    """The engine of the server at `url` (morph.server.remote.connect_engine); --model/--sae/--device
    belong to the server then."""
    if args is not None and (args.model or args.sae or args.device):
        raise InputError("--server uses the server's model: leave out --model, --sae and --device")
    try:
        from morph.server.remote import connect_engine
    except ImportError as err:
        raise InputError(f"--server needs the 'serve' extra (pip install 'morph[serve]'): {err.name} "
                         "is missing") from None
    return connect_engine(url, secret_key)


def say_progress(what: str, done: float) -> None:
    """A first conversion of the default model, on stderr (stdout stays the command's output)."""
    import sys

    if done <= 0.05:
        print("morph: first use: preparing the default model (once, about a minute)", file=sys.stderr)
    print(f"morph: {done:4.0%} {what}", file=sys.stderr, flush=True)
