"""Reading and writing the writer's files without ever losing text.

Text inside Morph always uses '\\n'. A file's own conventions (line endings, a UTF-8 byte-order mark)
are remembered in a `LoadedText` and restored on save, so a file that was read and saved unchanged is
byte-for-byte identical. Saving is atomic: a temporary file in the same folder is written, flushed and
fsynced, then renamed over the original, and the folder is fsynced; if anything fails the original is
untouched and the error is one `InputError` line.

Line endings: the style ('\\n', '\\r\\n' or '\\r') used by most line breaks wins; ties prefer '\\n', then
'\\r\\n'. A file with mixed endings is read fine (`mixed_newlines` is set so the editor can say so) and
is saved with the majority style throughout.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from morph.errors import InputError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "LoadedText",
    "atomic_write_bytes",
    "changed_on_disk",
    "detect_newline",
    "encode_text",
    "read_document",
    "write_document",
]

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_INVALID_BYTE = re.compile("[\udc80-\udcff]")  # bytes decoded with surrogateescape


@dataclass(frozen=True)
class LoadedText:
    """A file as read from disk (or a new file that does not exist yet)."""

    path: Path
    """Absolute path as given (symlinks are not resolved here; writes follow them)."""
    text: str
    """The content with '\\n' line breaks and no BOM."""
    newline: str = "\n"
    """The file's line-ending style: '\\n', '\\r\\n' or '\\r'."""
    had_bom: bool = False
    encoding: str = "utf-8"
    is_new: bool = False
    """The file did not exist: it is created on the first save."""
    mtime_ns: int = 0
    size: int = 0
    sha256: str = ""
    """Hex digest of the bytes on disk (empty for a new file)."""
    mixed_newlines: bool = False
    """The file mixed line-ending styles; saving writes `newline` throughout."""
    read_only: bool = False
    """The text is not exactly the file's content (see `note`); saving over the file is refused."""
    note: str | None = None
    """One line for the user about how the file was opened, e.g. replaced bytes."""


def _size_text(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MB"
    if n >= 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n} bytes"


def _os_reason(exc: OSError) -> str:
    reasons = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.ENOENT: "no such file or folder",
        errno.ENOTDIR: "a part of the path is not a folder",
        errno.EISDIR: "it is a folder",
        errno.ENAMETOOLONG: "the name is too long",
        errno.EIO: "an input/output error",
    }
    return reasons.get(exc.errno or 0, exc.strerror or str(exc))


def detect_newline(text: str) -> tuple[str, bool]:
    """The majority line-ending style of `text` and whether styles were mixed."""
    crlf = text.count("\r\n")
    cr = text.count("\r") - crlf
    lf = text.count("\n") - crlf
    counts = [(lf, "\n"), (crlf, "\r\n"), (cr, "\r")]
    used = sum(1 for c, _ in counts if c)
    best = max(counts, key=lambda item: item[0])  # max keeps the first on ties: '\n', then '\r\n'
    return (best[1] if best[0] else "\n"), used > 1


def _normalise(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_document(
    path: str | os.PathLike[str],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    allow_invalid_utf8: bool = False,
) -> LoadedText:
    """Read a text file for editing.

    A missing file (in an existing folder) gives a `LoadedText` with `is_new=True`. Folders, special
    files, unreadable files, files over `max_bytes`, binary files (NUL bytes) and UTF-16 files raise
    `InputError`. Invalid UTF-8 raises `InputError`, unless `allow_invalid_utf8`: then the bad bytes
    are shown as U+FFFD and the result is `read_only` (saving over the file is refused, so the file
    is never written back altered).
    """
    p = Path(os.path.abspath(os.fspath(path)))
    try:
        st = os.stat(p)
    except FileNotFoundError:
        parent = p.parent
        if not parent.is_dir():
            raise InputError(f"cannot open {p}: folder {parent} does not exist") from None
        return LoadedText(path=p, text="", is_new=True)
    except OSError as exc:
        raise InputError(f"cannot open {p}: {_os_reason(exc)}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"cannot open {p}: it is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"cannot open {p}: it is not a regular file")
    if st.st_size > max_bytes:
        raise InputError(
            f"cannot open {p}: it is {_size_text(st.st_size)}, over the "
            f"{_size_text(max_bytes)} limit (max_file_mb in the config)"
        )
    try:
        with open(p, "rb") as fh:
            data = fh.read(max_bytes + 1)
            st = os.fstat(fh.fileno())
    except OSError as exc:
        raise InputError(f"cannot read {p}: {_os_reason(exc)}") from None
    if len(data) > max_bytes:
        raise InputError(f"cannot open {p}: it is over the {_size_text(max_bytes)} limit")

    if data.startswith(_UTF16_BOMS):
        raise InputError(f"cannot open {p}: it is UTF-16 encoded; Morph edits UTF-8 text only")
    if b"\x00" in data:
        raise InputError(f"cannot open {p}: it looks like a binary file (it contains NUL bytes)")
    had_bom = data.startswith(BOM)
    body = data[len(BOM) :] if had_bom else data
    read_only = False
    note: str | None = None
    try:
        raw = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        if not allow_invalid_utf8:
            raise InputError(
                f"cannot open {p}: it is not valid UTF-8 (bad byte at offset "
                f"{exc.start + (3 if had_bom else 0)}); Morph edits UTF-8 text only"
            ) from None
        escaped = body.decode("utf-8", errors="surrogateescape")
        raw, bad = _INVALID_BYTE.subn("\ufffd", escaped)
        read_only = True
        note = (
            f"{p.name} is not valid UTF-8: {bad} byte{'s' if bad != 1 else ''} shown as \ufffd; "
            "opened read-only (save under another name)"
        )
    newline, mixed = detect_newline(raw)
    return LoadedText(
        path=p,
        text=_normalise(raw),
        newline=newline,
        had_bom=had_bom,
        mtime_ns=st.st_mtime_ns,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        mixed_newlines=mixed,
        read_only=read_only,
        note=note,
    )


def encode_text(text: str, like: LoadedText | None = None) -> bytes:
    """The bytes `write_document` would write for `text` with `like`'s conventions."""
    newline = like.newline if like is not None else "\n"
    body = _normalise(text)
    if newline != "\n":
        body = body.replace("\n", newline)
    try:
        data = body.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(
            f"cannot save: the text has a character that UTF-8 cannot store at offset {exc.start}"
        ) from None
    if like is not None and like.had_bom:
        data = BOM + data
    return data


_umask: int | None = None


def _current_umask() -> int:
    global _umask
    if _umask is None:
        mask = os.umask(0o022)
        os.umask(mask)
        _umask = mask
    return _umask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, mode: int | None = None) -> None:
    """Replace `path` with `data` atomically; on failure the old file is untouched.

    A symlink is followed (its target is replaced, the link kept). The old file's permission bits
    (and owner, where allowed) are kept; a new file gets `mode`, or 0o666 less the umask.
    Raises `InputError` with one line on any failure.

    Like every rename-based save, this gives the file a new inode: hard links to the old file keep
    the old content, and extended attributes / ACLs are not copied. A process killed mid-save leaves a
    hidden `.<name>.<pid>.*.morph-tmp` file next to the document (the document itself is intact); the
    next save of that document removes those of processes that no longer run.
    """
    target = Path(os.path.realpath(os.fspath(path)))
    parent = target.parent
    if not parent.exists():
        raise InputError(f"cannot save {target}: folder {parent} does not exist")
    if not parent.is_dir():
        raise InputError(f"cannot save {target}: {parent} is not a folder")
    old: os.stat_result | None
    try:
        old = os.stat(target)
    except FileNotFoundError:
        old = None
    except OSError as exc:
        raise InputError(f"cannot save {target}: {_os_reason(exc)}") from None
    if old is not None and stat.S_ISDIR(old.st_mode):
        raise InputError(f"cannot save {target}: it is a folder")
    if old is not None and not stat.S_ISREG(old.st_mode):  # renaming over it would replace it with a file
        raise InputError(f"cannot save {target}: it is not a regular file (a FIFO, a device or a socket)")

    _remove_stale_temporaries(target)
    tmp_name: str | None = None
    try:
        fd, tmp_name = tempfile.mkstemp(dir=parent, prefix=f".{target.name}.{os.getpid()}.", suffix=_TMP_SUFFIX)
        try:
            if old is not None:
                os.fchmod(fd, stat.S_IMODE(old.st_mode))
                try:
                    os.fchown(fd, old.st_uid, old.st_gid)
                except OSError:
                    pass  # not allowed to give the file away: keep our own ownership
            else:
                os.fchmod(fd, mode if mode is not None else 0o666 & ~_current_umask())
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp_name, target)
        tmp_name = None
    except OSError as exc:
        raise InputError(f"cannot save {target}: {_os_reason(exc)}; the file on disk is unchanged") from None
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass
    _fsync_dir(parent)


_TMP_SUFFIX = ".morph-tmp"


def _remove_stale_temporaries(target: Path) -> None:
    """Delete the temporary files that saves of `target` killed midway left behind: those whose writer
    (the pid in the name) no longer runs. Another process's save in progress is left alone."""
    prefix = f".{target.name}."
    try:
        names = [n for n in os.listdir(target.parent) if n.startswith(prefix) and n.endswith(_TMP_SUFFIX)]
    except OSError:
        return
    for name in names:
        pid_text = name[len(prefix):].split(".", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or _alive(int(pid_text)):
            continue
        try:
            os.unlink(target.parent / name)
        except OSError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, owned by someone else
    return True


def _fsync_dir(folder: Path) -> None:
    try:
        dfd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass  # some file systems cannot fsync a folder; the rename is still atomic
    finally:
        os.close(dfd)


def write_document(
    path: str | os.PathLike[str], text: str, like: LoadedText | None = None
) -> LoadedText:
    """Save `text` to `path` atomically, with `like`'s line endings and BOM (defaults: '\\n', none).

    Returns the `LoadedText` describing the file now on disk (use it for the next `changed_on_disk`).
    Saving over a `read_only` `LoadedText`'s own file is refused.
    """
    p = Path(os.path.abspath(os.fspath(path)))
    if like is not None and like.read_only and _same_file(p, like.path):
        raise InputError(f"cannot save {p}: it was opened read-only ({like.note or 'not UTF-8'})")
    data = encode_text(text, like)
    atomic_write_bytes(p, data)
    try:
        st = os.stat(p)
        mtime_ns = st.st_mtime_ns
    except OSError:
        mtime_ns = 0
    base = like if like is not None else LoadedText(path=p, text="")
    return replace(
        base,
        path=p,
        text=_normalise(text),
        is_new=False,
        mtime_ns=mtime_ns,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        mixed_newlines=False,
        read_only=False,
        note=None,
    )


def _same_file(a: Path, b: Path) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def changed_on_disk(path: str | os.PathLike[str], loaded: LoadedText) -> bool:
    """Whether the file now differs from what `loaded` describes.

    A new file that has appeared, or a file that was deleted, counts as changed. A file whose mtime
    changed but whose bytes are the same (touched) does not.
    """
    p = Path(os.path.abspath(os.fspath(path)))
    try:
        st = os.stat(p)
    except FileNotFoundError:
        return not loaded.is_new
    except OSError:
        return True
    if loaded.is_new:
        return True
    if st.st_mtime_ns == loaded.mtime_ns and st.st_size == loaded.size:
        return False
    if st.st_size != loaded.size:
        return True
    try:
        with open(p, "rb") as fh:
            digest = hashlib.sha256()
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return True
    return digest.hexdigest() != loaded.sha256
