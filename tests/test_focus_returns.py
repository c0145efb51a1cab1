"""After every dialog, prompt and pane the focus is back in the text: the next key typed lands there."""

from __future__ import annotations

import pytest

from morph.editor.dialogs import ConfirmScreen, GotoLineScreen, OpenFileScreen, RecoveryScreen, SaveAsScreen
from morph.recovery import save_recovery
from tests.pilot import wait_for
from tests.test_app_files import open_app, settle, type_path

pytestmark = pytest.mark.usefixtures("dirs")


async def palette(pilot, app, command: str) -> None:
    await pilot.press("ctrl+p")
    await wait_for(pilot, lambda: app._modal_open())
    await pilot.press(*command)
    await pilot.pause(0.4)
    await pilot.press("enter")


async def open_file(pilot, app, dirs):
    await pilot.press("ctrl+o")
    await wait_for(pilot, lambda: isinstance(app.screen, OpenFileScreen))
    await type_path(pilot, app, dirs / "other.txt")
    await wait_for(pilot, lambda: not app._flow_busy and app.path == dirs / "other.txt")


async def open_cancelled(pilot, app, dirs):
    await pilot.press("ctrl+o")
    await wait_for(pilot, lambda: isinstance(app.screen, OpenFileScreen))
    await pilot.press("escape")


async def open_with_unsaved_changes(pilot, app, dirs):
    await pilot.press("x", "ctrl+o")
    await wait_for(pilot, lambda: isinstance(app.screen, OpenFileScreen))
    await type_path(pilot, app, dirs / "other.txt")
    await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
    await pilot.press("n")


async def save_as(pilot, app, dirs):
    await palette(pilot, app, "File: save as")
    await wait_for(pilot, lambda: isinstance(app.screen, SaveAsScreen))
    await type_path(pilot, app, dirs / "copy.txt")
    await wait_for(pilot, lambda: not app._flow_busy and app.path == dirs / "copy.txt")


async def save_as_cancelled(pilot, app, dirs):
    await pilot.press("ctrl+shift+s")
    await wait_for(pilot, lambda: isinstance(app.screen, SaveAsScreen))
    await pilot.press("escape")


async def go_to_line(pilot, app, dirs):
    await pilot.press("ctrl+g")
    await wait_for(pilot, lambda: isinstance(app.screen, GotoLineScreen))
    await pilot.press("1", "enter")


async def go_to_line_cancelled(pilot, app, dirs):
    await pilot.press("ctrl+g")
    await wait_for(pilot, lambda: isinstance(app.screen, GotoLineScreen))
    await pilot.press("escape")


async def find(pilot, app, dirs):
    await pilot.press("ctrl+f", "w", "enter", "escape")


async def replace(pilot, app, dirs):
    await pilot.press("ctrl+r", "w", "tab", "W", "escape")


async def recovery(choice: str):
    async def step(pilot, app, dirs):
        save_recovery(dirs / "other.txt", "recovered words\n")
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, OpenFileScreen))
        await type_path(pilot, app, dirs / "other.txt")
        await wait_for(pilot, lambda: isinstance(app.screen, RecoveryScreen))
        await pilot.press(choice)
    return step


async def theme_picker(pilot, app, dirs):
    await palette(pilot, app, "Theme: morph-light")
    await wait_for(pilot, lambda: app.theme_name == "morph-light")


async def palette_closed(pilot, app, dirs):
    await pilot.press("ctrl+p")
    await wait_for(pilot, lambda: app._modal_open())
    await pilot.press("escape")


async def help_screen(pilot, app, dirs):
    await pilot.press("f1")
    await wait_for(pilot, lambda: app._modal_open())
    await pilot.press("escape")


STEPS = {
    "open": open_file, "open-cancelled": open_cancelled, "open-with-unsaved-changes": open_with_unsaved_changes,
    "save-as": save_as, "save-as-cancelled": save_as_cancelled, "go-to-line": go_to_line,
    "go-to-line-cancelled": go_to_line_cancelled, "find": find, "replace": replace,
    "theme-picker": theme_picker, "palette": palette_closed, "help": help_screen,
}


@pytest.mark.parametrize("name", [*STEPS, "recovery-restore", "recovery-discard", "recovery-later"])
async def test_typing_after_the_dialog_lands_in_the_text(dirs, name):
    path = dirs / "doc.txt"
    path.write_text("words here\n")
    (dirs / "other.txt").write_text("other words\n")
    step = STEPS.get(name) or await recovery({"recovery-restore": "r", "recovery-discard": "d",
                                              "recovery-later": "escape"}[name])
    app = open_app(path)
    async with app.run_test(size=(110, 30)) as pilot:
        await settle(pilot, app)
        await step(pilot, app, dirs)
        await wait_for(pilot, lambda: not app._modal_open() and not app._flow_busy)
        before, (start, end) = app.view.text, app.view.selection_offsets
        await pilot.press("Q")
        assert app.focused is app.view, name
        assert app.view.text == before[:start] + "Q" + before[end:], name  # typed at the cursor (over a match)


@pytest.mark.parametrize("key", ["ctrl+r", "ctrl+f"])
async def test_typing_replaces_a_pre_filled_find_text(dirs, key):
    from textual.widgets import Input

    app = open_app(None, "hello world\n")
    async with app.run_test(size=(110, 30)) as pilot:
        await settle(pilot, app)
        app.view.selection = ((0, 6), (0, 11))
        await pilot.press(key)
        field = app.screen.query_one("#find-input", Input)
        await wait_for(pilot, lambda: field.has_focus and field.value == "world")
        await pilot.press(*"hel")
        assert field.value == "hel"
        await pilot.press("escape", key)  # opened again: the last query, again replaced by typing
        await wait_for(pilot, lambda: field.has_focus)
        await pilot.press("w")
        assert field.value == "w"
        assert app.view.text == "hello world\n"


def burst(app, keys: str | list[str]) -> None:
    """Keys as a terminal delivers a quick typist's: all at once, none waiting for the one before to be handled
    (Pilot's press waits after each key, which hid the bug below)."""
    from textual import events

    for key in keys:
        character = {"enter": "\r", "escape": "\x1b"}.get(key, key if len(key) == 1 else None)
        app.post_message(events.Key(key, character))


@pytest.mark.parametrize("dialog", ["open", "save-as", "go-to-line", "unsaved-changes"])
async def test_keys_typed_right_after_enter_go_to_the_text_after_the_dialog(dirs, dialog):
    """Typed in the same breath as the Enter that closes a dialog: the keys went into the dialog's field (Open then
    opened 'other.txtabc', a new file) or into the text that the opened file then replaced. Now they wait for
    the dialog and its flow, then land in the text: the file opened, the one saved under a new name."""
    path = dirs / "doc.txt"
    path.write_text("words here\n")
    (dirs / "other.txt").write_text("other words\n")
    app = open_app(path)
    async with app.run_test(size=(110, 30)) as pilot:
        await settle(pilot, app)
        if dialog == "go-to-line":
            await pilot.press("ctrl+g")
            await wait_for(pilot, lambda: isinstance(app.screen, GotoLineScreen))
            burst(app, ["1", "enter", *"abc"])
        else:
            if dialog == "unsaved-changes":
                await pilot.press("x")
            await pilot.press("ctrl+o" if dialog != "save-as" else "ctrl+shift+s")
            screen_type = SaveAsScreen if dialog == "save-as" else OpenFileScreen
            await wait_for(pilot, lambda: isinstance(app.screen, screen_type))
            burst(app, [*str(dirs / ("copy.txt" if dialog == "save-as" else "other.txt")), "enter", *"abc"])
        if dialog == "unsaved-changes":  # asked only now: the keys typed before the question wait for the text
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            burst(app, ["n", *"xy"])  # don't save, then more typing
        await wait_for(pilot, lambda: not app._modal_open() and not app._flow_busy and "abc" in app.view.text)
        await pilot.pause()
        expected = {"open": (dirs / "other.txt", "abcother words\n"),
                    "unsaved-changes": (dirs / "other.txt", "abcxyother words\n"),
                    "save-as": (dirs / "copy.txt", "abcwords here\n"), "go-to-line": (path, "abcwords here\n")}
        assert (app.path, app.view.text) == expected[dialog]
        assert app.focused is app.view and not (dirs / "other.txtabc").exists()
        assert path.read_text() == "words here\n"  # "x" was not saved
