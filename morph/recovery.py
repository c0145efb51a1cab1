"""Autosave/recovery files: the writer's text between saves, kept in the user's state folder.

Each editor window writes its own file per document (`<key>.<session>.json`, the key a hash of the
document's real absolute path, or "untitled"), so two windows, or two untitled documents, never write over
each other's text. Each is JSON with the text, the document path, the time it was written and the process
that wrote it, and is written atomically. `find_recoveries` offers every file of other windows whose text
differs from the document on disk, whatever the file's modification time, except those of windows still
running. A file without a session (`<key>.json`) is one written by an earlier version, or by a test.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from morph.errors import InputError
from morph.textio import atomic_write_bytes, read_document

__all__ = [
    "Recovery",
    "discard",
    "discard_recovery",
    "find_recoveries",
    "find_recovery",
    "load_recovery",
    "new_session",
    "recovery_dir",
    "recovery_file",
    "save_recovery",
]

_FORMAT = 1
_PIECE = 1 << 20  # characters of the text encoded at a time


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
    session: str = ""
    """The window that wrote it ("" for a file without a session)."""
    pid: int | None = None
    boot: str = ""

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


def new_session() -> str:
    """A name for one editor window's recovery files, unique across processes."""
    return f"{os.getpid()}-{secrets.token_hex(4)}"


def _boot_id() -> str:
    """This boot of the machine (Linux), so that a process id from before a restart is not taken as alive."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _running_elsewhere(rec: "Recovery") -> bool:
    """Whether the window that wrote `rec` is another process that still runs (its text is its own)."""
    if rec.pid is None or rec.pid == os.getpid() or not rec.boot or rec.boot != _boot_id():
        return False
    try:
        os.kill(rec.pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, owned by someone else
    return True


def recovery_file(path: str | os.PathLike[str] | None, session: str = "") -> Path:
    """Where the recovery file of `path` (None: an untitled document) written by `session` lives."""
    return recovery_dir() / (f"{_key(path)}.{session}.json" if session else f"{_key(path)}.json")


def save_recovery(path: str | os.PathLike[str] | None, text: str, session: str = "") -> Path:
    """Write (atomically) `session`'s recovery file for `path`; returns it. Raises `InputError` on failure."""
    folder = recovery_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise InputError(f"cannot write recovery files to {folder}: {exc.strerror or exc}") from None
    record = {
        "format": _FORMAT,
        "path": None if path is None else os.path.abspath(os.fspath(path)),
        "saved_at_ns": time.time_ns(),
        "pid": os.getpid(),
        "boot": _boot_id(),
    }
    # json.dumps(record | {"text": text}), the text a piece at a time: each call holds the interpreter, and
    # one call over a 50 MB text stalled the editor's typing for a few hundred ms.
    parts = [json.dumps(record, ensure_ascii=False)[:-1].encode("utf-8", "surrogatepass"), b', "text": "']
    for i in range(0, len(text), _PIECE):
        parts.append(json.dumps(text[i:i + _PIECE], ensure_ascii=False)[1:-1].encode("utf-8", "surrogatepass"))
    parts.append(b'"}')
    data = b"".join(parts)
    target = recovery_file(path, session)
    atomic_write_bytes(target, data, mode=0o600)
    return target


def _read(file: Path, session: str) -> Recovery | None:
    """A recovery file's content; None when it is unreadable or corrupt."""
    try:
        record = json.loads(file.read_bytes().decode("utf-8", "surrogatepass"))
        text = record["text"]
        stored = record["path"]
        saved_at_ns = int(record["saved_at_ns"])
        pid = record.get("pid")
        boot = record.get("boot") or ""
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not isinstance(text, str) or not (stored is None or isinstance(stored, str)):
        return None
    return Recovery(path=None if stored is None else Path(stored), text=text, saved_at_ns=saved_at_ns, file=file,
                    session=session, pid=pid if isinstance(pid, int) else None, boot=str(boot))


def load_recovery(path: str | os.PathLike[str] | None, session: str = "") -> Recovery | None:
    """`session`'s recovery file of `path` as it is (no comparison with the document), or None."""
    return _read(recovery_file(path, session), session)


def _normalised(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def find_recoveries(path: str | os.PathLike[str] | None, own_session: str = "") -> list[Recovery]:
    """The recoveries worth offering for `path`, newest first: every window's but `own_session`'s and those of
    windows still running, whose text differs from the document on disk (a missing or unreadable document
    differs from everything). One identical to the document is deleted."""
    key = _key(path)
    try:
        files = [f for f in recovery_dir().iterdir() if f.name == f"{key}.json"
                 or (f.name.startswith(f"{key}.") and f.name.endswith(".json"))]
    except OSError:
        return []
    on_disk: str | None = None
    if path is not None:
        try:
            loaded = read_document(path, allow_invalid_utf8=True)
            on_disk = None if loaded.is_new else loaded.text
        except InputError:
            on_disk = None
    found = []
    for file in files:
        session = file.name[len(key) + 1:-len(".json")]
        if session == own_session and own_session:
            continue
        rec = _read(file, session)
        if rec is None or _running_elsewhere(rec):
            continue
        if on_disk is not None and _normalised(rec.text) == on_disk:
            discard(rec)
            continue
        found.append(rec)
    return sorted(found, key=lambda r: r.saved_at_ns, reverse=True)


def find_recovery(path: str | os.PathLike[str] | None, own_session: str = "") -> Recovery | None:
    """The newest recovery worth offering for `path` (see `find_recoveries`), or None."""
    found = find_recoveries(path, own_session)
    return found[0] if found else None


def discard(rec: Recovery) -> None:
    """Delete a recovery file, if it is still there."""
    try:
        rec.file.unlink()
    except OSError:
        pass  # gone already, or cannot be deleted: it is offered again, nothing is lost


def discard_recovery(path: str | os.PathLike[str] | None, session: str = "") -> None:
    """Delete `session`'s recovery file of `path` (None: an untitled document), if any."""
    try:
        recovery_file(path, session).unlink()
    except OSError:
        pass
