from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from textual.app import App, ComposeResult
from textual.screen import Screen
from textual.widgets import Input, Label, Static, TextArea
from textual.widgets.text_area import Selection

from morph.editor.actions import format_key
from morph.editor.dialogs import (
    ConfirmScreen,
    GotoLineScreen,
    HelpScreen,
    OpenFileScreen,
    PathSuggester,
    RecoveryScreen,
    SaveAsScreen,
)
from morph.editor.document import DocumentView
from morph.editor.find_bar import FindBar, find_in, find_matches, replace_all

TEXT = "The cat sat.\nA CAT ran; the Cat hid.\nNo dogs here.\ncat"


class EditorApp(App[None]):
    def __init__(self, text: str = TEXT) -> None:
        super().__init__()
        self.initial = text
        self.results: list[Any] = []

    def compose(self) -> ComposeResult:
        ta = DocumentView(self.initial, id="ta")  # the find functions work on the writing surface
        yield ta
        yield FindBar(ta, id="find")

    @property
    def ta(self) -> TextArea:
        return self.query_one("#ta", TextArea)

    @property
    def bar(self) -> FindBar:
        return self.query_one("#find", FindBar)

    def ask(self, screen: Screen[Any]) -> None:
        self.push_screen(screen, self.results.append)


def selected(ta: TextArea) -> str:
    return ta.selected_text


# -- pure search ----------------------------------------------------------------------------------


def test_find_matches() -> None:
    assert find_matches(TEXT, "cat") == [(4, 7), (15, 18), (28, 31), (51, 54)]
    assert find_matches(TEXT, "cat", case_sensitive=True) == [(4, 7), (51, 54)]
    assert find_matches(TEXT, "") == []
    assert find_matches("a.b axb", ".") == [(1, 2)]  # literal, not a regex
    assert find_matches("aaaa", "aa") == [(0, 2), (2, 4)]


def test_format_key() -> None:
    assert format_key("ctrl+shift+s") == "Ctrl+Shift+S"
    assert format_key("f1,question_mark") == "F1 / ?"
    assert format_key("escape") == "Esc"


# -- find bar -------------------------------------------------------------------------------------


async def test_find_next_previous_wrap() -> None:
    app = EditorApp()
    async with app.run_test() as pilot:
        ta = app.ta
        r = find_in(ta, "cat")
        assert r.found and r.index == 1 and r.total == 4 and not r.wrapped
        assert ta.selection == Selection((0, 4), (0, 7))
        for expected in (2, 3, 4):
            assert find_in(ta, "cat").index == expected
        r = find_in(ta, "cat")
        assert r.index == 1 and r.wrapped
        assert r.describe() == "1 of 4 (wrapped)"
        r = find_in(ta, "cat", forward=False)
        assert r.index == 4 and r.wrapped and selected(ta) == "cat"
        assert find_in(ta, "cat", forward=False).index == 3
        assert selected(ta) == "Cat"
        assert find_in(ta, "cat", case_sensitive=True, forward=False).index == 1
        assert not find_in(ta, "zebra").found
        assert find_in(ta, "zebra").describe() == "not found"
        ta.selection = Selection.cursor((3, 3))
        assert not find_in(ta, "cat", wrap=False).found
        await pilot.pause()


async def test_find_bar_typing_and_keys() -> None:
    app = EditorApp()
    async with app.run_test() as pilot:
        app.ta.selection = Selection.cursor((1, 0))
        app.bar.open()
        await pilot.pause()
        assert app.bar.is_open and app.bar.display
        assert isinstance(app.focused, Input) and app.focused.id == "find-input"
        await pilot.press("c", "a", "t")  # search as you type, from the cursor
        assert app.ta.selection == Selection((1, 2), (1, 5))
        assert "2 of 4" in str(app.bar.query_one("#find-status", Label).render())
        await pilot.press("enter")
        assert app.ta.selection == Selection((1, 15), (1, 18))
        await pilot.press("f3")
        assert app.ta.selection == Selection((3, 0), (3, 3))
        await pilot.press("shift+f3")
        assert app.ta.selection == Selection((1, 15), (1, 18))
        await pilot.press("alt+c")  # match case
        assert app.bar.case_sensitive
        await pilot.press("f3")
        assert app.ta.selection == Selection((3, 0), (3, 3))
        await pilot.press("escape")
        await pilot.pause()
        assert not app.bar.is_open and app.focused is app.ta


async def test_open_uses_selection_as_query() -> None:
    app = EditorApp()
    async with app.run_test() as pilot:
        app.ta.selection = Selection((2, 3), (2, 7))
        app.bar.open(replace=True)
        await pilot.pause()
        assert app.bar.query_text == "dogs"
        assert app.bar.query_one("#replace-row").display


async def test_replace_one_then_next() -> None:
    app = EditorApp()
    async with app.run_test() as pilot:
        bar = app.bar
        bar.open(replace=True, query="cat")
        await pilot.pause()
        bar.query_one("#replace-input", Input).value = "dog"
        r = bar.replace_one()  # selection is not a match yet: selects the first
        assert r.replaced == 0 and selected(app.ta) == "cat"
        r = bar.replace_one()
        assert r.replaced == 1 and app.ta.text.startswith("The dog sat.")
        assert selected(app.ta) == "CAT" and r.total == 3
        bar.query_one("#replace-input", Input).focus()
        await pilot.press("enter")  # Enter in the replace box replaces
        assert app.ta.text.split("\n")[1] == "A dog ran; the Cat hid."
        app.ta.undo()
        assert app.ta.text.split("\n")[1] == "A CAT ran; the Cat hid."


async def test_replace_all_is_one_undo_step() -> None:
    app = EditorApp()
    async with app.run_test() as pilot:
        ta = app.ta
        ta.selection = Selection.cursor((2, 0))
        await pilot.press("x")  # an edit of the writer's own, before replacing
        before = ta.text
        assert before != TEXT
        ta.selection = Selection.cursor((1, 12))  # after "A CAT ran; t"
        count = replace_all(ta, "cat", "kitten")
        assert count == 4
        assert ta.text == before.replace("cat", "kitten").replace("CAT", "kitten").replace("Cat", "kitten")
        assert ta.selection == Selection.cursor((1, 15))  # same place in the text (3 chars later)
        ta.undo()
        assert ta.text == before  # one step undoes all four, and only them
        ta.redo()
        assert ta.text.count("kitten") == 4
        ta.undo()
        ta.undo()
        assert ta.text == TEXT


async def test_replace_all_single_chars_not_merged_with_typing() -> None:
    app = EditorApp("a b a")
    async with app.run_test() as pilot:
        ta = app.ta
        ta.selection = Selection.cursor((0, 5))
        await pilot.press("backspace")  # a deletion (a replacement in history terms)
        assert ta.text == "a b "
        assert replace_all(ta, "b", "") == 1
        assert ta.text == "a  "
        ta.undo()
        assert ta.text == "a b "
        ta.undo()
        assert ta.text == "a b a"


async def test_replace_all_via_bar_and_case(tmp_path: Path) -> None:
    app = EditorApp()
    async with app.run_test() as pilot:
        bar = app.bar
        bar.open(replace=True, query="cat")
        bar.case_sensitive = True
        await pilot.pause()
        bar.query_one("#replace-input", Input).value = "owl"
        await pilot.click("#replace-all")
        assert app.ta.text == TEXT.replace("cat", "owl")
        assert "replaced 2" in str(bar.query_one("#find-status", Label).render())


async def test_read_only_text_is_not_replaced() -> None:
    app = EditorApp()
    async with app.run_test() as pilot:
        app.ta.read_only = True
        app.bar.open(replace=True, query="cat")
        await pilot.pause()
        assert app.bar.replace_all() == 0
        assert app.ta.text == TEXT


# -- modal screens --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "keys, expected",
    [(["y"], "yes"), (["n"], "no"), (["escape"], "cancel"), (["enter"], "yes"), (["tab", "enter"], "no")],
)
async def test_confirm_keys(keys: list[str], expected: str) -> None:
    app = EditorApp()
    async with app.run_test() as pilot:
        app.ask(ConfirmScreen("Save changes to essay.md?", yes="Save", no="Don't save"))
        await pilot.pause()
        await pilot.press(*keys)
        await pilot.pause()
        assert app.results == [expected]
        assert not isinstance(app.screen, ConfirmScreen)


async def test_confirm_click_and_no_cancel_button() -> None:
    app = EditorApp()
    async with app.run_test() as pilot:
        app.ask(ConfirmScreen("Reload?"))
        await pilot.pause()
        await pilot.click("#cancel")
        app.ask(ConfirmScreen("Quit?", cancel=None, default="no"))
        await pilot.pause()
        assert not app.screen.query("#cancel")
        assert app.screen.focused is not None and app.screen.focused.id == "no"
        await pilot.press("escape")  # without a cancel button, Escape says no
        await pilot.pause()
        assert app.results == ["cancel", "no"]


async def test_goto_line() -> None:
    app = EditorApp()
    async with app.run_test() as pilot:
        app.ask(GotoLineScreen(line_count=4, current=2))
        await pilot.pause()
        field = app.screen.query_one("#line-input", Input)
        assert field.value == "2"
        field.value = "99"
        await pilot.press("enter")
        await pilot.pause()
        assert app.results == []
        assert "1 to 4" in str(app.screen.query_one("#error", Label).render())
        field.value = "3"
        await pilot.press("enter")
        await pilot.pause()
        app.ask(GotoLineScreen(line_count=4))
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        assert app.results == [3, None]


async def test_help_screen_lists_bindings() -> None:
    app = EditorApp()
    async with app.run_test(size=(100, 40)) as pilot:
        app.ask(HelpScreen([("ctrl+s", "Save"), ("f1,question_mark", "This help")], intro="Morph keys"))
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        body = app.screen.query_one("#help-table", Static)
        lines = [strip.text for strip in body.render_lines(body.region.reset_offset)] if body.region else []
        rendered = "\n".join(lines)
        assert "Ctrl+S" in rendered and "Save" in rendered and "F1 / ?" in rendered
        await pilot.press("escape")
        await pilot.pause()
        assert app.results == [None]


@pytest.mark.parametrize("key, expected", [("r", "restore"), ("d", "discard"), ("escape", "later"), ("enter", "restore")])
async def test_recovery_screen(key: str, expected: str) -> None:
    app = EditorApp()
    async with app.run_test() as pilot:
        app.ask(RecoveryScreen("essay.md", "one two\nthree four five\n", "one two\nthree\n", time.time() - 300))
        await pilot.pause()
        await pilot.press(key)
        await pilot.pause()
        assert app.results == [expected]


def test_recovery_description() -> None:
    screen = RecoveryScreen("essay.md", "a b\nc d e\n", "a b\nc\n", time.time() - 300)
    head, detail = screen.describe()
    assert "essay.md" in head and "5 min ago" in head
    assert detail == "Recovered: 5 words; on disk: 3 words. First difference at line 2."
    _, detail = RecoveryScreen("new", "x y", None, time.time()).describe()
    assert "not on disk" in detail


async def test_save_as_confirms_overwrite(tmp_path: Path) -> None:
    (tmp_path / "exists.md").write_text("x")
    app = EditorApp()
    async with app.run_test() as pilot:
        app.ask(SaveAsScreen(base_dir=tmp_path))
        await pilot.pause()
        field = app.screen.query_one("#path-input", Input)
        error = app.screen.query_one("#error", Label)
        for value, message in [("", "Type a file name"), ("nope/x.md", "does not exist"), (".", "is a folder")]:
            field.value = value
            await pilot.press("enter")
            await pilot.pause()
            assert message in str(error.render())
        field.value = "exists.md"
        await pilot.press("enter")
        await pilot.pause()
        assert "press Enter again" in str(error.render()) and app.results == []
        await pilot.press("enter")
        await pilot.pause()
        assert app.results == [tmp_path / "exists.md"]


async def test_open_file_screen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    app = EditorApp()
    async with app.run_test() as pilot:
        app.ask(OpenFileScreen(base_dir=tmp_path))
        await pilot.pause()
        app.screen.query_one("#path-input", Input).value = "~/new-draft.md"  # new files are fine
        await pilot.click("#ok")
        await pilot.pause()
        app.ask(OpenFileScreen(base_dir=tmp_path))
        await pilot.pause()
        await pilot.click("#cancel")
        await pilot.pause()
        assert app.results == [tmp_path / "new-draft.md", None]


async def test_path_suggester(tmp_path: Path) -> None:
    (tmp_path / "drafts").mkdir()
    (tmp_path / "drafts" / "chapter-one.md").write_text("x")
    (tmp_path / ".hidden").write_text("x")
    s = PathSuggester(tmp_path)
    assert await s.get_suggestion("dr") == "drafts/"
    assert await s.get_suggestion("drafts/") == "drafts/chapter-one.md"
    assert await s.get_suggestion("drafts/chapter-one.md") is None
    assert await s.get_suggestion(".h") == ".hidden"
    assert await s.get_suggestion("zz") is None
    assert await s.get_suggestion(str(tmp_path / "dr")) == str(tmp_path / "drafts") + "/"
