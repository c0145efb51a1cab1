from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from morph.recovery import (
    discard_recovery,
    find_recoveries,
    find_recovery,
    load_recovery,
    new_session,
    recovery_dir,
    recovery_file,
    save_recovery,
)


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    state = tmp_path / "state"
    monkeypatch.setenv("MORPH_STATE_DIR", str(state))
    return state


def _age(path: Path, seconds: float) -> None:
    """Make the document's mtime `seconds` older than now."""
    st = path.stat()
    old = st.st_mtime_ns - int(seconds * 1e9)
    os.utime(path, ns=(old, old))


def test_dir_from_env(state_dir: Path) -> None:
    assert recovery_dir() == state_dir / "recovery"


def test_save_find_discard(tmp_path: Path, state_dir: Path) -> None:
    doc = tmp_path / "essay.md"
    doc.write_text("saved text\n")
    _age(doc, 10)
    file = save_recovery(doc, "saved text\nand more typed since ✍\n")
    assert file.parent == state_dir / "recovery"
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    rec = find_recovery(doc)
    assert rec is not None
    assert rec.text == "saved text\nand more typed since ✍\n"
    assert rec.path == doc.resolve()
    assert rec.saved_at > 0
    discard_recovery(doc)
    assert find_recovery(doc) is None
    assert not file.exists()
    discard_recovery(doc)  # twice is fine


def test_one_file_per_document(tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    assert recovery_file(a) != recovery_file(b)
    assert recovery_file(a) == recovery_file(tmp_path / "." / "a.txt")
    save_recovery(a, "A")
    save_recovery(b, "B")
    assert find_recovery(a).text == "A"  # type: ignore[union-attr]
    assert find_recovery(b).text == "B"  # type: ignore[union-attr]


def test_offered_whatever_the_modification_time(tmp_path: Path) -> None:
    """A file touched (or saved by another program) after the recovery was written: its text still differs."""
    doc = tmp_path / "d.txt"
    doc.write_text("v1")
    save_recovery(doc, "v1 plus edits")
    doc.write_text("v2 saved later")
    st = doc.stat()
    newer = st.st_mtime_ns + 5_000_000_000
    os.utime(doc, ns=(newer, newer))
    assert find_recovery(doc).text == "v1 plus edits"  # type: ignore[union-attr]


def test_each_window_has_its_own_file_and_does_not_see_its_own(tmp_path: Path) -> None:
    doc = tmp_path / "shared.md"
    doc.write_text("on disk")
    one, two = new_session(), new_session()
    assert one != two and recovery_file(doc, one) != recovery_file(doc, two)
    save_recovery(doc, "window one's text", one)
    save_recovery(doc, "window two's text", two)
    assert load_recovery(doc, one).text == "window one's text"  # type: ignore[union-attr]
    assert [r.text for r in find_recoveries(doc, own_session=one)] == ["window two's text"]
    assert [r.text for r in find_recoveries(doc)] == ["window two's text", "window one's text"]  # newest first
    discard_recovery(doc, one)
    assert [r.session for r in find_recoveries(doc)] == [two]


def test_untitled_windows_do_not_share_a_file() -> None:
    one, two = new_session(), new_session()
    save_recovery(None, "first draft", one)
    save_recovery(None, "second draft", two)
    assert sorted(r.text for r in find_recoveries(None)) == ["first draft", "second draft"]
    assert [r.text for r in find_recoveries(None, own_session=two)] == ["first draft"]


def test_a_window_still_running_keeps_its_file_to_itself(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    doc = tmp_path / "d.txt"
    doc.write_text("disk")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        file = save_recovery(doc, "the other window's text", "other")
        record = json.loads(file.read_text())
        record["pid"] = other.pid  # as if that process had written it
        file.write_text(json.dumps(record))
        assert find_recoveries(doc) == []
    finally:
        other.kill()
        other.wait()
    assert [r.text for r in find_recoveries(doc)] == ["the other window's text"]


def test_identical_recovery_not_offered_and_dropped(tmp_path: Path) -> None:
    doc = tmp_path / "d.txt"
    doc.write_bytes(b"same\r\ntext\r\n")
    _age(doc, 10)
    save_recovery(doc, "same\ntext\n")
    assert find_recovery(doc) is None
    assert load_recovery(doc) is None


def test_missing_document_offers_recovery(tmp_path: Path) -> None:
    doc = tmp_path / "deleted.txt"
    save_recovery(doc, "only copy")
    rec = find_recovery(doc)
    assert rec is not None and rec.text == "only copy"


def test_untitled_slot() -> None:
    assert find_recovery(None) is None
    save_recovery(None, "a new draft")
    rec = find_recovery(None)
    assert rec is not None and rec.path is None and rec.text == "a new draft"
    assert rec.file.name == "untitled.json"
    discard_recovery(None)
    assert find_recovery(None) is None


def test_corrupt_recovery_ignored(tmp_path: Path) -> None:
    doc = tmp_path / "d.txt"
    file = save_recovery(doc, "x")
    file.write_text("{not json")
    assert find_recovery(doc) is None
    file.write_text('{"text": 5, "path": null, "saved_at_ns": 1}')
    assert find_recovery(doc) is None


def test_overwrite_keeps_latest(tmp_path: Path) -> None:
    doc = tmp_path / "d.txt"
    save_recovery(doc, "first")
    save_recovery(doc, "second")
    assert find_recovery(doc).text == "second"  # type: ignore[union-attr]
    assert [p.name for p in recovery_dir().iterdir()] == [recovery_file(doc).name]
