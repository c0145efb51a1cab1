"""The editor's files, end to end with Textual's Pilot and no model: save, save as, new, open, quit
prompts, changed-on-disk, recovery after a crash, autosave, failures that keep the text, and the CLI's
refusal of bad input (one line on stderr, exit code 2)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from textual.widgets import Input

from morph.config import Settings
from morph.editor.app import MorphApp
from morph.editor.dialogs import ConfirmScreen, OpenFileScreen, RecoveryScreen, SaveAsScreen
from morph.errors import InputError
from morph.recovery import find_recovery, load_recovery, recovery_file, save_recovery
from morph.textio import read_document
from tests.pilot import wait_for

BOM = b"\xef\xbb\xbf"


pytestmark = pytest.mark.usefixtures("dirs")


def open_app(path: Path | None = None, text: str | None = None, **settings) -> MorphApp:
    """The app as `morph --no-model PATH` makes it."""
    loaded = read_document(path, allow_invalid_utf8=True) if path is not None else None
    if text is None:
        text = loaded.text if loaded is not None else ""
    return MorphApp(str(path) if path else None, text, Settings(**settings), None, loaded=loaded)


async def settle(pilot, app: MorphApp) -> None:
    """Let the start-up recovery check finish."""
    await wait_for(pilot, lambda: not app._flow_busy or app._modal_open())


async def type_path(pilot, app: MorphApp, path: Path) -> None:
    field = app.screen.query_one("#path-input", Input)
    field.value = str(path)
    await pilot.press("enter")


def notes(app: MorphApp) -> str:
    return "\n".join(str(n.message) for n in app._notifications)


def exited(app: MorphApp) -> bool:
    return bool(getattr(app, "_exit", False))


# --- save ---------------------------------------------------------------------------------------


async def test_save_keeps_crlf_and_bom_and_clears_recovery(dirs):
    path = dirs / "story.md"
    path.write_bytes(BOM + b"one\r\ntwo\r\n")
    app = open_app(path)
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("X")
        assert app.modified and "● story.md" in app.sub_title
        save_recovery(path, "X" + "one\ntwo\n", app.recovery_session)  # as an autosave would have
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not app.modified)
        assert path.read_bytes() == BOM + b"Xone\r\ntwo\r\n"
        assert not recovery_file(path, app.recovery_session).exists()
        assert app.loaded.had_bom and app.loaded.newline == "\r\n"
        assert "saved story.md" in notes(app)
        assert "●" not in str(app.status.render_state())


async def test_new_file_from_the_command_line_is_created_on_first_save(dirs):
    path = dirs / "drafts" / "new.md"
    path.parent.mkdir()
    app = open_app(path)
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot, app)
        assert "new.md (new file)" in app.sub_title
        assert "(new file)" in str(app.status.render_state())
        await pilot.press(*"Hello")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not app.modified)
        assert path.read_text() == "Hello"
        assert "new file" not in app.sub_title


async def test_untitled_save_asks_for_a_name(dirs):
    app = open_app(None, "words\n")
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("a", "ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, SaveAsScreen))
        await type_path(pilot, app, dirs / "named.txt")
        await wait_for(pilot, lambda: not app.modified)
        assert (dirs / "named.txt").read_text() == "awords\n"
        assert app.path == dirs / "named.txt"
        assert app.status.state.file == "named.txt"


async def test_save_as_writes_a_copy_with_the_same_line_endings(dirs):
    path = dirs / "a.txt"
    path.write_bytes(b"x\r\ny\r\n")
    app = open_app(path)
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("z", "ctrl+shift+s")
        await wait_for(pilot, lambda: isinstance(app.screen, SaveAsScreen))
        await type_path(pilot, app, dirs / "b.txt")
        await wait_for(pilot, lambda: not app.modified)
        assert (dirs / "b.txt").read_bytes() == b"zx\r\ny\r\n"
        assert path.read_bytes() == b"x\r\ny\r\n"  # the original is untouched
        assert app.path == dirs / "b.txt"


async def test_save_failure_is_a_message_and_the_text_stays(dirs, monkeypatch):
    import morph.textio

    path = dirs / "full.txt"
    path.write_text("before\n")

    def disk_full(target, data, mode=None):
        raise InputError(f"cannot save {target}: the disk is full; the file on disk is unchanged")

    monkeypatch.setattr(morph.textio, "atomic_write_bytes", disk_full)
    app = open_app(path)
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("N", "ctrl+s")
        await wait_for(pilot, lambda: "disk is full" in notes(app))
        assert app.modified and app.view.text == "Nbefore\n"
        assert path.read_text() == "before\n"
        assert app.status.state.note == "not saved"


async def test_read_only_folder_on_save_keeps_the_text(dirs):
    if os.geteuid() == 0:
        pytest.skip("root can write to a read-only folder")
    folder = dirs / "locked"
    folder.mkdir()
    path = folder / "doc.txt"
    path.write_text("old\n")
    folder.chmod(0o500)
    try:
        app = open_app(path)
        async with app.run_test(size=(100, 24)) as pilot:
            await settle(pilot, app)
            await pilot.press("!", "ctrl+s")
            await wait_for(pilot, lambda: "permission denied" in notes(app))
            assert app.modified and app.view.text == "!old\n"
    finally:
        folder.chmod(0o700)
    assert path.read_text() == "old\n"


async def test_read_only_document_refuses_save_and_offers_save_as(dirs):
    path = dirs / "latin1.txt"
    path.write_bytes(b"caf\xe9\n")
    app = open_app(path)
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot, app)
        assert app.loaded.read_only and "(read-only)" in app.sub_title
        assert "not valid UTF-8" in notes(app)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, SaveAsScreen))
        assert "save it under another name" in notes(app)
        await type_path(pilot, app, dirs / "fixed.txt")
        await wait_for(pilot, lambda: app.path == dirs / "fixed.txt")
        assert (dirs / "fixed.txt").read_text(encoding="utf-8") == "caf\ufffd\n"
        assert path.read_bytes() == b"caf\xe9\n"
        assert not app.loaded.read_only


async def test_changed_on_disk_asks_before_overwriting(dirs):
    path = dirs / "shared.txt"
    path.write_text("mine\n")
    app = open_app(path)
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot, app)
        path.write_text("theirs, longer\n")  # someone else saved meanwhile
        await pilot.press("+", "ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "changed on disk" in str(app.screen.query_one("#question").render())
        await pilot.press("escape")  # cancel
        await wait_for(pilot, lambda: not app._modal_open() and not app._flow_busy)
        assert path.read_text() == "theirs, longer\n" and app.modified
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")  # overwrite
        await wait_for(pilot, lambda: not app.modified)
        assert path.read_text() == "+mine\n"
        await pilot.press("-", "ctrl+s")  # no longer changed on disk: saves without asking
        await wait_for(pilot, lambda: not app.modified)
        assert path.read_text() == "+-mine\n"


# --- quit -----------------------------------------------------------------------------------------


async def test_quit_without_changes_does_not_ask(dirs):
    app = open_app(None, "calm\n")
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: exited(app))


async def test_quit_with_changes_cancel_keeps_editing(dirs):
    path = dirs / "q.txt"
    path.write_text("text\n")
    app = open_app(path)
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("A", "ctrl+q")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "unsaved changes" in str(app.screen.query_one("#question").render())
        await pilot.click("#cancel")
        await wait_for(pilot, lambda: not app._modal_open() and not app._flow_busy)
        assert not exited(app) and app.modified and app.view.text == "Atext\n"
        assert path.read_text() == "text\n"


async def test_quit_with_changes_discard(dirs):
    path = dirs / "q.txt"
    path.write_text("text\n")
    app = open_app(path)
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("A")
        save_recovery(path, "Atext\n", app.recovery_session)
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.click("#no")
        await wait_for(pilot, lambda: exited(app))
    assert path.read_text() == "text\n"
    assert load_recovery(path, app.recovery_session) is None  # discarded on purpose: not offered next time


async def test_quit_with_changes_save(dirs):
    path = dirs / "q.txt"
    path.write_text("text\n")
    app = open_app(path)
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("A", "ctrl+q")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.click("#yes")
        await wait_for(pilot, lambda: exited(app))
    assert path.read_text() == "Atext\n"
    assert load_recovery(path) is None


async def test_quit_save_of_untitled_cancelled_keeps_the_app(dirs):
    app = open_app(None, "")
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("h", "i", "ctrl+q")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: isinstance(app.screen, SaveAsScreen))
        await pilot.press("escape")
        await wait_for(pilot, lambda: not app._modal_open() and not app._flow_busy)
        assert not exited(app) and app.view.text == "hi"


# --- recovery and autosave -------------------------------------------------------------------------


async def test_recovery_is_offered_after_a_crash_and_restores_the_text(dirs):
    path = dirs / "novel.md"
    path.write_text("Chapter one.\n")
    time.sleep(0.01)
    save_recovery(path, "Chapter one.\nThe lost paragraph.\n")  # the previous session died here
    app = open_app(path)
    async with app.run_test(size=(100, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RecoveryScreen))
        await pilot.press("r")
        await wait_for(pilot, lambda: not app._modal_open())
        assert app.view.text == "Chapter one.\nThe lost paragraph.\n"
        assert app.modified
        assert path.read_text() == "Chapter one.\n"  # not saved until the writer saves
        await pilot.press("ctrl+z")  # restoring is one undoable edit
        assert app.view.text == "Chapter one.\n"
        await pilot.press("ctrl+y", "ctrl+s")
        await wait_for(pilot, lambda: not app.modified)
    assert path.read_text() == "Chapter one.\nThe lost paragraph.\n"
    assert find_recovery(path) is None and not recovery_file(path).exists()


async def test_recovery_of_an_untitled_document(dirs):
    save_recovery(None, "words nobody saved\n")
    app = open_app(None, "")
    async with app.run_test(size=(100, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RecoveryScreen))
        await pilot.press("r")
        await wait_for(pilot, lambda: app.view.text == "words nobody saved\n")


async def test_recovery_discard_and_later(dirs):
    path = dirs / "doc.md"
    path.write_text("disk\n")
    time.sleep(0.01)
    save_recovery(path, "newer\n")
    app = open_app(path)
    async with app.run_test(size=(100, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RecoveryScreen))
        await pilot.press("escape")  # later: kept; this window autosaves into its own file meanwhile
        await wait_for(pilot, lambda: not app._modal_open() and not app._flow_busy)
        assert app.view.text == "disk\n" and "recovered text is waiting" in app.status.state.note
        assert load_recovery(path).text == "newer\n"
        await pilot.press("x")
        await wait_for(pilot, lambda: load_recovery(path, app.recovery_session) is not None, timeout=5)
        assert load_recovery(path, app.recovery_session).text == "xdisk\n"
        assert load_recovery(path).text == "newer\n"
        app.action_recovered_text()  # the palette's "File: recovered text…"
        await wait_for(pilot, lambda: isinstance(app.screen, RecoveryScreen))
        await pilot.press("d")
        await wait_for(pilot, lambda: not app._modal_open())
        assert load_recovery(path) is None and app.view.text == "xdisk\n"
        assert "waiting" not in app.status.state.note


async def test_autosave_keeps_up_with_typing(dirs):
    """While typing without a pause, the recovery file is never more than autosave_seconds behind."""
    path = dirs / "auto.md"
    path.write_text("start\n")
    app = open_app(path, autosave_seconds=0.5)
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot, app)
        typed = ""
        for k in range(30):  # ~3 s of typing, a key every ~0.1 s
            await pilot.press("a")
            typed += "a"
            await pilot.pause(0.1)
            if k == 15:
                rec = load_recovery(path, app.recovery_session)
                assert rec is not None and rec.text.startswith("a" * 8), "nothing written while typing"
        await wait_for(pilot, lambda: (load_recovery(path, app.recovery_session) or None) is not None
                       and load_recovery(path, app.recovery_session).text == typed + "start\n", timeout=5)
        assert path.read_text() == "start\n"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not app.modified)
        assert load_recovery(path, app.recovery_session) is None


async def test_autosave_after_200_edits_whatever_the_time(dirs):
    path = dirs / "fast.md"
    path.write_text("")
    app = open_app(path, autosave_seconds=3600)
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("a")
        await wait_for(pilot, lambda: load_recovery(path, app.recovery_session) is not None, timeout=5)
        await pilot.press(*"b" * 199)
        assert load_recovery(path, app.recovery_session).text == "a"  # 199 edits: not yet
        await pilot.press("c")
        await wait_for(pilot, lambda: load_recovery(path, app.recovery_session).text == "a" + "b" * 199 + "c",
                       timeout=5)


async def test_recovery_is_offered_whatever_the_file_modification_time(dirs):
    path = dirs / "touched.md"
    path.write_text("disk\n")
    save_recovery(path, "lost words\n")
    future = time.time_ns() + 60_000_000_000
    os.utime(path, ns=(future, future))  # something touched the file after the crash
    app = open_app(path)
    async with app.run_test(size=(100, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RecoveryScreen))
        await pilot.press("r")
        await wait_for(pilot, lambda: app.view.text == "lost words\n")


async def test_two_windows_on_one_file_keep_separate_recovery_files(dirs):
    path = dirs / "both.md"
    path.write_text("shared\n")
    first, second = open_app(path, autosave_seconds=0.5), open_app(path, autosave_seconds=0.5)
    async with first.run_test(size=(100, 24)) as pilot:
        await settle(pilot, first)
        await pilot.press("1")
        await wait_for(pilot, lambda: load_recovery(path, first.recovery_session) is not None, timeout=5)
    async with second.run_test(size=(100, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(second.screen, RecoveryScreen))  # the first window's text
        await pilot.press("escape")
        await wait_for(pilot, lambda: not second._modal_open() and not second._flow_busy)
        await pilot.press("2")
        await wait_for(pilot, lambda: load_recovery(path, second.recovery_session) is not None, timeout=5)
    assert load_recovery(path, first.recovery_session).text == "1shared\n"
    assert load_recovery(path, second.recovery_session).text == "2shared\n"


async def test_leaving_with_unsaved_text_keeps_it_for_recovery(dirs):
    path = dirs / "exit.md"
    path.write_text("a\n")
    app = open_app(path)
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("b")
        app.exit()  # e.g. the terminal went away: no prompt
    assert load_recovery(path, app.recovery_session).text == "ba\n"
    assert find_recovery(path) is not None


# --- open and new -------------------------------------------------------------------------------


async def test_open_a_file_inside_the_app(dirs):
    other = dirs / "other.md"
    other.write_bytes(b"# Other\r\n")
    app = open_app(None, "")
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, OpenFileScreen))
        await type_path(pilot, app, other)
        await wait_for(pilot, lambda: app.path == other)
        assert app.view.text == "# Other\n" and not app.modified
        await pilot.press("!", "ctrl+s")
        await wait_for(pilot, lambda: not app.modified)
        assert other.read_bytes() == b"!# Other\r\n"


async def test_open_asks_about_unsaved_changes_and_refuses_binary(dirs):
    binary = dirs / "image.bin"
    binary.write_bytes(b"\x89PNG\x00\x00")
    app = open_app(None, "")
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, OpenFileScreen))
        await type_path(pilot, app, binary)
        await wait_for(pilot, lambda: "binary" in notes(app))
        assert app.path is None
        await pilot.press("x", "ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, OpenFileScreen))
        await type_path(pilot, app, dirs / "fresh.md")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")  # discard the untitled text
        await wait_for(pilot, lambda: app.path == dirs / "fresh.md")
        assert app.view.text == "" and "(new file)" in app.sub_title


async def test_open_invalid_utf8_asks_then_opens_read_only(dirs):
    path = dirs / "bad.txt"
    path.write_bytes(b"ok \xff\n")
    app = open_app(None, "")
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, OpenFileScreen))
        await type_path(pilot, app, path)
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_for(pilot, lambda: app.path == path)
        assert app.loaded.read_only and app.view.text == "ok \ufffd\n"


async def test_new_document(dirs):
    path = dirs / "n.md"
    path.write_text("kept\n")
    app = open_app(path)
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("ctrl+n")  # nothing to save: no question
        await wait_for(pilot, lambda: app.path is None)
        assert app.view.text == "" and app.sub_title == "untitled"
        await pilot.press("w", "ctrl+n")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("escape")
        await wait_for(pilot, lambda: not app._modal_open() and not app._flow_busy)
        assert app.view.text == "w"


# --- the command line --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing-folder", "does not exist"),
        ("folder", "it is a folder"),
        ("binary", "binary"),
        ("latin1", "not valid UTF-8"),
        ("bad-option", "unrecognized arguments"),
        ("bad-debounce", "--debounce"),
    ],
)
def test_cli_refuses_bad_input_with_one_line_and_code_2(case, message, dirs, capsys):
    from morph.cli import main

    (dirs / "bin.dat").write_bytes(b"a\x00b")
    (dirs / "latin1.txt").write_bytes(b"caf\xe9")
    (dirs / "afolder").mkdir()
    argv = {
        "missing-folder": [str(dirs / "no" / "such" / "file.md"), "--no-model"],
        "folder": [str(dirs / "afolder"), "--no-model"],
        "binary": [str(dirs / "bin.dat"), "--no-model"],
        "latin1": [str(dirs / "latin1.txt"), "--no-model"],
        "bad-option": ["--no-model", "--frobnicate"],
        "bad-debounce": ["--no-model", "--debounce", "99999"],
    }[case]
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.startswith("morph: ") and err.count("\n") == 1


def test_cli_bad_input_in_a_real_process(dirs):
    missing = dirs / "nowhere" / "draft.md"
    result = subprocess.run([sys.executable, "-m", "morph", "--no-model", str(missing)],
                            capture_output=True, text=True, timeout=60, cwd=dirs,
                            env={**os.environ, "TERM": "dumb"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"morph: cannot open {missing}: folder {missing.parent} does not exist"]
    assert result.stdout == ""


async def test_undoing_back_to_the_saved_text_clears_the_modified_marker(dirs):
    path = dirs / "undo.md"
    path.write_text("saved\n")
    app = open_app(path, autosave_seconds=0.5)
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press(*"abc")
        assert app.modified and "●" in app.sub_title
        await wait_for(pilot, lambda: load_recovery(path, app.recovery_session) is not None, timeout=5)
        await pilot.press("ctrl+z")
        await wait_for(pilot, lambda: app.view.text == "saved\n")
        assert not app.modified and "●" not in app.sub_title
        assert load_recovery(path, app.recovery_session) is None  # nothing unsaved to recover
        await pilot.press("ctrl+y")
        assert app.modified and "●" in app.sub_title
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not app.modified)
        await pilot.press("x", "ctrl+z")  # back to the newly saved text
        await wait_for(pilot, lambda: app.view.text == "abcsaved\n")
        assert not app.modified
        app.exit()
    assert load_recovery(path, app.recovery_session) is None


async def test_save_as_onto_a_fifo_is_refused_and_the_text_stays(dirs):
    fifo = dirs / "pipe"
    os.mkfifo(fifo)
    app = open_app(None, "words\n")
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("a", "ctrl+shift+s")
        await wait_for(pilot, lambda: isinstance(app.screen, SaveAsScreen))
        await type_path(pilot, app, fifo)
        await pilot.press("enter")  # it exists: Enter again to replace it
        await wait_for(pilot, lambda: "not a regular file" in notes(app))
        await wait_for(pilot, lambda: not app._flow_busy)
        assert app.modified and app.view.text == "awords\n" and app.path is None
    import stat as stat_module

    assert stat_module.S_ISFIFO(os.stat(fifo).st_mode)


async def test_coming_back_to_the_terminal_tells_of_a_change_on_disk_once(dirs):
    from textual import events

    path = dirs / "watched.md"
    path.write_text("mine\n")
    app = open_app(path)
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot, app)
        app.post_message(events.AppFocus())
        await pilot.pause(0.3)
        assert "changed on disk" not in notes(app)
        path.write_text("someone else's\n")
        app.post_message(events.AppFocus())
        await wait_for(pilot, lambda: "watched.md has changed on disk" in notes(app))
        app.post_message(events.AppFocus())
        await pilot.pause(0.3)
        assert notes(app).count("has changed on disk") == 1  # once per change
        path.unlink()
        app.post_message(events.AppFocus())
        await wait_for(pilot, lambda: "watched.md is no longer on disk" in notes(app))
        assert app.view.text == "mine\n"
