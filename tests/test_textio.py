from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from unittest import mock

import pytest

from morph.errors import InputError
from morph.textio import (
    LoadedText,
    atomic_write_bytes,
    changed_on_disk,
    detect_newline,
    read_document,
    write_document,
)


def roundtrip(tmp_path: Path, data: bytes) -> tuple[LoadedText, bytes]:
    f = tmp_path / "doc.txt"
    f.write_bytes(data)
    loaded = read_document(f)
    write_document(f, loaded.text, loaded)
    return loaded, f.read_bytes()


@pytest.mark.parametrize(
    "data, newline, bom",
    [
        (b"one\ntwo\n", "\n", False),
        (b"one\r\ntwo\r\n\r\nthree", "\r\n", False),
        (b"one\rtwo\r", "\r", False),
        (b"\xef\xbb\xbfcaf\xc3\xa9\r\nna\xc3\xafve\r\n", "\r\n", True),
        (b"\xef\xbb\xbf", "\n", True),
        (b"", "\n", False),
        (b"no newline at all", "\n", False),
    ],
)
def test_roundtrip_is_byte_exact(tmp_path: Path, data: bytes, newline: str, bom: bool) -> None:
    loaded, after = roundtrip(tmp_path, data)
    assert loaded.newline == newline
    assert loaded.had_bom is bom
    assert "\r" not in loaded.text
    assert not loaded.mixed_newlines
    assert after == data


def test_text_is_normalised(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_bytes(b"\xef\xbb\xbfa\r\nb\r\n")
    loaded = read_document(f)
    assert loaded.text == "a\nb\n"
    assert loaded.size == len(b"\xef\xbb\xbfa\r\nb\r\n")


def test_edits_keep_crlf_and_bom(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_bytes(b"\xef\xbb\xbfa\r\nb\r\n")
    loaded = read_document(f)
    # text coming from the widget may even contain stray '\r\n' (paste): still one style on disk
    write_document(f, loaded.text + "c\nd\r\ne", loaded)
    assert f.read_bytes() == b"\xef\xbb\xbfa\r\nb\r\nc\r\nd\r\ne"


def test_mixed_newlines_majority() -> None:
    assert detect_newline("a\r\nb\r\nc\nd") == ("\r\n", True)
    assert detect_newline("a\nb\nc\r\nd") == ("\n", True)
    assert detect_newline("a\rb\rc\nd") == ("\r", True)
    assert detect_newline("a\nb\r\n") == ("\n", True)  # tie prefers '\n'
    assert detect_newline("abc") == ("\n", False)


def test_mixed_file_saved_with_majority(tmp_path: Path) -> None:
    f = tmp_path / "m.txt"
    f.write_bytes(b"a\r\nb\r\nc\nd")
    loaded = read_document(f)
    assert loaded.mixed_newlines and loaded.newline == "\r\n"
    assert loaded.text == "a\nb\nc\nd"
    write_document(f, loaded.text, loaded)
    assert f.read_bytes() == b"a\r\nb\r\nc\r\nd"


def test_new_file(tmp_path: Path) -> None:
    f = tmp_path / "new.md"
    loaded = read_document(f)
    assert loaded.is_new and loaded.text == "" and not f.exists()
    saved = write_document(f, "hello\n", loaded)
    assert f.read_bytes() == b"hello\n"
    assert not saved.is_new
    mode = stat.S_IMODE(f.stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_missing_folder_on_open_and_save(tmp_path: Path) -> None:
    f = tmp_path / "nope" / "x.txt"
    with pytest.raises(InputError, match="does not exist"):
        read_document(f)
    with pytest.raises(InputError, match="does not exist"):
        write_document(f, "x")
    assert not (tmp_path / "nope").exists()


def test_parent_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        write_document(tmp_path / "file" / "x.txt", "data")


def test_directory_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="folder"):
        read_document(tmp_path)


def test_binary_refused(tmp_path: Path) -> None:
    f = tmp_path / "b.bin"
    f.write_bytes(b"abc\x00def")
    with pytest.raises(InputError, match="binary") as info:
        read_document(f)
    assert "\n" not in str(info.value)


def test_utf16_refused(tmp_path: Path) -> None:
    f = tmp_path / "u.txt"
    f.write_bytes("hello".encode("utf-16"))
    with pytest.raises(InputError, match="UTF-16"):
        read_document(f)


def test_invalid_utf8_refused_or_read_only(tmp_path: Path) -> None:
    f = tmp_path / "latin.txt"
    original = "café au lait, naïve\n".encode("latin-1")
    f.write_bytes(original)
    with pytest.raises(InputError, match=r"not valid UTF-8 \(bad byte at offset 3\)"):
        read_document(f)
    loaded = read_document(f, allow_invalid_utf8=True)
    assert loaded.read_only
    assert loaded.text == "caf\ufffd au lait, na\ufffdve\n"
    assert loaded.note is not None and "2 bytes" in loaded.note
    with pytest.raises(InputError, match="read-only"):
        write_document(f, loaded.text, loaded)
    assert f.read_bytes() == original
    # save-as elsewhere is allowed
    other = tmp_path / "copy.txt"
    write_document(other, loaded.text, loaded)
    assert other.read_text("utf-8") == loaded.text


def test_huge_file_refused(tmp_path: Path) -> None:
    f = tmp_path / "big.txt"
    f.write_bytes(b"a" * 3000)
    with pytest.raises(InputError, match=r"2\.9 KB.*1000 bytes"):
        read_document(f, max_bytes=1000)
    assert read_document(f, max_bytes=3000).text == "a" * 3000


def test_unreadable_file(tmp_path: Path) -> None:
    f = tmp_path / "secret.txt"
    f.write_text("x")
    with mock.patch("builtins.open", side_effect=PermissionError(errno.EACCES, "Permission denied")):
        with pytest.raises(InputError, match="permission denied"):
            read_document(f)


def test_fifo_refused(tmp_path: Path) -> None:
    f = tmp_path / "pipe"
    os.mkfifo(f)
    with pytest.raises(InputError, match="not a regular file"):
        read_document(f)


def test_permissions_kept(tmp_path: Path) -> None:
    f = tmp_path / "p.txt"
    f.write_text("old")
    os.chmod(f, 0o640)
    write_document(f, "new")
    assert stat.S_IMODE(f.stat().st_mode) == 0o640
    assert f.read_text() == "new"


def test_symlink_followed(tmp_path: Path) -> None:
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    write_document(link, "new")
    assert link.is_symlink()
    assert real.read_text() == "new"


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".morph-tmp")]


@pytest.mark.parametrize(
    "err, words",
    [
        (errno.ENOSPC, "the disk is full"),
        (errno.EROFS, "the file system is read-only"),
        (errno.EACCES, "permission denied"),
    ],
)
def test_failed_write_leaves_original(tmp_path: Path, err: int, words: str) -> None:
    f = tmp_path / "keep.txt"
    f.write_bytes(b"precious\r\n")
    loaded = read_document(f)
    with mock.patch("morph.textio.os.write", side_effect=OSError(err, os.strerror(err))):
        with pytest.raises(InputError, match=words) as info:
            write_document(f, "replacement", loaded)
    assert "\n" not in str(info.value)
    assert f.read_bytes() == b"precious\r\n"
    assert _leftovers(tmp_path) == []


def test_failed_rename_leaves_original(tmp_path: Path) -> None:
    f = tmp_path / "keep.txt"
    f.write_bytes(b"precious")
    with mock.patch("morph.textio.os.replace", side_effect=OSError(errno.EROFS, "Read-only")):
        with pytest.raises(InputError, match="read-only"):
            write_document(f, "replacement")
    assert f.read_bytes() == b"precious"
    assert _leftovers(tmp_path) == []


def test_read_only_folder(tmp_path: Path) -> None:
    f = tmp_path / "x.txt"
    with mock.patch("morph.textio.tempfile.mkstemp", side_effect=OSError(errno.EROFS, "Read-only")):
        with pytest.raises(InputError, match=r"cannot save .*x\.txt: the file system is read-only"):
            write_document(f, "data")
    assert not f.exists()


def test_unencodable_text(tmp_path: Path) -> None:
    f = tmp_path / "s.txt"
    f.write_text("ok")
    with pytest.raises(InputError, match="UTF-8 cannot store"):
        write_document(f, "bad \udc80 surrogate")
    assert f.read_text() == "ok"


def test_atomic_write_bytes_mode(tmp_path: Path) -> None:
    f = tmp_path / "r.json"
    atomic_write_bytes(f, b"{}", mode=0o600)
    assert stat.S_IMODE(f.stat().st_mode) == 0o600


def test_changed_on_disk(tmp_path: Path) -> None:
    f = tmp_path / "c.txt"
    f.write_text("one")
    loaded = read_document(f)
    assert not changed_on_disk(f, loaded)
    # touched, same bytes: not a change
    os.utime(f, ns=(loaded.mtime_ns + 5_000_000_000, loaded.mtime_ns + 5_000_000_000))
    assert not changed_on_disk(f, loaded)
    # same size, different bytes
    f.write_text("two")
    os.utime(f, ns=(loaded.mtime_ns + 9_000_000_000, loaded.mtime_ns + 9_000_000_000))
    assert changed_on_disk(f, loaded)
    saved = write_document(f, "three", loaded)
    assert not changed_on_disk(f, saved)
    f.unlink()
    assert changed_on_disk(f, saved)


def test_changed_on_disk_new_file(tmp_path: Path) -> None:
    f = tmp_path / "n.txt"
    loaded = read_document(f)
    assert not changed_on_disk(f, loaded)
    f.write_text("someone else")
    assert changed_on_disk(f, loaded)


def test_a_fifo_or_device_is_never_replaced_by_a_file(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        write_document(fifo, "text")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    with pytest.raises(InputError, match="not a regular file"):
        write_document("/dev/null", "text")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert list(tmp_path.iterdir()) == [fifo]  # no temporary file left behind


def test_a_save_removes_temporary_files_left_by_killed_saves(tmp_path: Path) -> None:
    import subprocess
    import sys

    doc = tmp_path / "novel.txt"
    doc.write_text("old")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = tmp_path / f".novel.txt.{dead.pid}.abc123.morph-tmp"
        in_progress = tmp_path / f".novel.txt.{running.pid}.def456.morph-tmp"
        other_doc = tmp_path / f".other.txt.{dead.pid}.abc123.morph-tmp"
        for path in (stale, in_progress, other_doc):
            path.write_text("half a save")
        write_document(doc, "new")
        assert doc.read_text() == "new"
        assert not stale.exists()
        assert in_progress.exists() and other_doc.exists()  # a save still running; another document's
    finally:
        running.kill()
        running.wait()
