"""Autosave/recovery files: the writer's text between saves, kept in the user's state folder.

One recovery file per document (named by a hash of the document's real absolute path) and one
"untitled" slot for a new document that has never been saved. Each is JSON with the text, the
document path and the time it was written, and is written atomically. `find_recovery` offers one only
when it is newer than the file on disk and its text differs from it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from morph.errors import InputError
from morph.textio import atomic_write_bytes, read_document

__all__ = [
    "Recovery",
    "discard_recovery",
    "find_recovery",
    "load_recovery",
    "recovery_dir",
    "recovery_file",
    "save_recovery",
]

_FORMAT = 1


@dataclass(frozen=True)
class Recovery:
    """A recovery file's content."""

    path: Path | None
    """The document it protects; None for an untitled document."""
    text: str
    saved_at_ns: int
    """When it was written (time.time_ns())."""
    file: Path
    """The recovery file itself."""

    @property
    def saved_at(self) -> float:
        return self.saved_at_ns / 1e9


def recovery_dir() -> Path:
    """`$MORPH_STATE_DIR/recovery`, or the platform's user state folder for morph."""
    base = os.environ.get("MORPH_STATE_DIR") or platformdirs.user_state_dir("morph")
    return Path(base) / "recovery"


def _key(path: str | os.PathLike[str] | None) -> str:
    if path is None:
        return "untitled"
    real = os.path.realpath(os.path.abspath(os.fspath(path)))
    return hashlib.sha256(real.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def recovery_file(path: str | os.PathLike[str] | None) -> Path:
    """Where the recovery file of `path` (None: the untitled slot) lives."""
    return recovery_dir() / f"{_key(path)}.json"


def save_recovery(path: str | os.PathLike[str] | None, text: str) -> Path:
    """Write (atomically) the recovery file for `path`; returns it. Raises `InputError` on failure."""
    folder = recovery_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise InputError(f"cannot write recovery files to {folder}: {exc.strerror or exc}") from None
    record = {
        "format": _FORMAT,
        "path": None if path is None else os.path.abspath(os.fspath(path)),
        "saved_at_ns": time.time_ns(),
        "text": text,
    }
    data = json.dumps(record, ensure_ascii=False).encode("utf-8", "surrogatepass")
    target = recovery_file(path)
    atomic_write_bytes(target, data, mode=0o600)
    return target


def load_recovery(path: str | os.PathLike[str] | None) -> Recovery | None:
    """The recovery file of `path` as it is (no comparison with the document), or None.

    An unreadable or corrupt recovery file counts as none.
    """
    file = recovery_file(path)
    try:
        record = json.loads(file.read_bytes().decode("utf-8", "surrogatepass"))
        text = record["text"]
        stored = record["path"]
        saved_at_ns = int(record["saved_at_ns"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(text, str) or not (stored is None or isinstance(stored, str)):
        return None
    return Recovery(
        path=None if stored is None else Path(stored), text=text, saved_at_ns=saved_at_ns, file=file
    )


def find_recovery(path: str | os.PathLike[str] | None) -> Recovery | None:
    """A recovery worth offering for `path`, or None.

    Offered when the document is missing (or untitled), or when the recovery is newer than the file
    on disk and its text differs from the file's. A recovery identical to the file is discarded.
    """
    rec = load_recovery(path)
    if rec is None or path is None:
        return rec
    try:
        mtime_ns = os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return rec
    except OSError:
        return rec
    try:
        on_disk = read_document(path, allow_invalid_utf8=True).text
    except InputError:
        return rec
    if on_disk == rec.text.replace("\r\n", "\n").replace("\r", "\n"):
        discard_recovery(path)
        return None
    if rec.saved_at_ns <= mtime_ns:
        return None
    return rec


def discard_recovery(path: str | os.PathLike[str] | None) -> None:
    """Delete the recovery file of `path` (None: the untitled slot), if any."""
    try:
        recovery_file(path).unlink()
    except FileNotFoundError:
        pass
    except OSError:
        pass  # a recovery file we cannot delete is harmless: it is only offered when newer
