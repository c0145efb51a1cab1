"""Steering from the editor: Ctrl+E on a selection opens the pane beside the text; accept is one undo step,
close changes nothing, the writer keeps typing and saving while candidates generate, the passage is
followed through those edits, and an edit of the passage itself blocks accepting."""

from __future__ import annotations

import threading

import pytest

from morph.config import Settings
from morph.editor.app import MorphApp
from morph.editor.document import DocumentView
from morph.editor.steer_screen import SteerPane
from morph.features.engine import Engine
from tests.test_editor import TEXT, analysed, wait_for
from tests.test_steer_screen import FakeSteerer

PASSAGE = TEXT[:31]  # "The river ran past the old mill"
REWRITE = "The stream slid past the mill"


@pytest.fixture
def app(tiny_lens, tmp_path, monkeypatch):
    monkeypatch.setenv("MORPH_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("MORPH_STATE_DIR", str(tmp_path / "state"))
    return MorphApp(None, TEXT, Settings(debounce_ms=30), lambda _progress: Engine(tiny_lens))


async def open_steering(app, pilot, selection=((0, 0), (0, 31))) -> SteerPane:
    await wait_for(pilot, lambda: analysed(app))
    view = app.query_one(DocumentView)
    view.selection = selection
    await pilot.press("ctrl+e")
    pane = app.query_one(SteerPane)
    await wait_for(pilot, lambda: pane.is_open and pane.has_focus_within)
    assert len(app.screen_stack) == 1 and not app.panel.display  # no dialog; the pane has the panel's place
    return pane


async def test_accepting_a_candidate_is_one_undoable_edit(app):
    async with app.run_test(size=(130, 40)) as pilot:
        pane = await open_steering(app, pilot)
        await wait_for(pilot, lambda: pane.chosen_feature() is not None)
        await pilot.press("ctrl+g")  # the pane's key, not the app's go-to-line
        assert len(app.screen_stack) == 1
        await wait_for(pilot, lambda: pane.result is not None and pane.candidates, timeout=60)
        chosen = pane.candidates[0].text
        pane.action_accept()
        view = app.query_one(DocumentView)
        await wait_for(pilot, lambda: view.text != TEXT)
        assert view.text == chosen + TEXT[31:]
        assert "\x0b" not in chosen
        # the pane's Closed message comes after the edit: wait for it (a busy machine can be between them)
        await wait_for(pilot, lambda: not pane.is_open and app.panel.display)
        assert view.has_focus
        view.undo()
        assert view.text == TEXT
        view.redo()
        assert view.text == chosen + TEXT[31:]


async def test_closing_leaves_the_document_untouched(app):
    async with app.run_test(size=(130, 40)) as pilot:
        pane = await open_steering(app, pilot)
        # Back to the text, a new selection, Ctrl+E: the pane takes the new passage.
        await pilot.press("escape")
        app.view.selection = ((2, 0), (2, 14))
        await pilot.press("ctrl+e")
        assert pane.has_focus_within and pane.original == "In the evening"
        await pilot.press("f4")
        await wait_for(pilot, lambda: not pane.is_open)
        assert app.query_one(DocumentView).text == TEXT
        assert app.view.has_focus and app.panel.display


async def test_steering_without_a_selection_says_so(app):
    async with app.run_test(size=(130, 40)) as pilot:
        await wait_for(pilot, lambda: analysed(app))
        await pilot.press("ctrl+e")
        await pilot.pause(0.05)
        assert not app.query_one(SteerPane).is_open
        assert any("select the passage" in str(n.message) for n in app._notifications)


@pytest.fixture
def slow(monkeypatch):
    """The engine's steerer replaced by a fake that generates until `gate` is set, then offers REWRITE."""
    gate = threading.Event()
    fake = FakeSteerer(candidates=(REWRITE,), gate=gate)
    monkeypatch.setattr(Engine, "steerer", lambda self: fake)
    return fake


async def test_typing_and_saving_while_candidates_generate(tiny_lens, tmp_path, monkeypatch, slow):
    monkeypatch.setenv("MORPH_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("MORPH_STATE_DIR", str(tmp_path / "state"))
    path = tmp_path / "doc.md"
    path.write_text(TEXT)
    app = MorphApp(str(path), TEXT, Settings(debounce_ms=30), lambda _progress: Engine(tiny_lens))
    async with app.run_test(size=(130, 40)) as pilot:
        view = app.view
        pane = await open_steering(app, pilot, selection=((2, 0), (2, 10)))
        start = view.offset_of((2, 0))
        await wait_for(pilot, lambda: pane.chosen_feature() == 5)
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: slow.steps > 2)
        # Ctrl+E again: back to the text, which takes keys while it generates.
        await pilot.press("ctrl+e")
        assert view.has_focus and pane.generating
        view.move_cursor((0, 0))
        await pilot.press("N", "o", "w", "space")
        assert view.text == "Now " + TEXT
        await pilot.press("ctrl+s")  # saving works meanwhile
        await wait_for(pilot, lambda: path.read_text() == "Now " + TEXT)
        assert pane.generating and not slow.cancel.is_set()
        # Ctrl+E with the old passage still selected goes back to the pane.
        view.selection = (view.location_of(start + 4), view.location_of(start + 14))
        await pilot.press("ctrl+e")
        assert pane.has_focus_within and pane.passage_now() == (start + 4, start + 14)
        slow.gate.set()
        await wait_for(pilot, lambda: pane.result is not None)
        pane.action_accept()
        await wait_for(pilot, lambda: not pane.is_open)
        expected = "Now " + TEXT[:start] + REWRITE + TEXT[start + 10:]
        assert view.text == expected
        view.undo()
        assert view.text == "Now " + TEXT


async def test_editing_the_passage_blocks_accepting(app, slow):
    async with app.run_test(size=(130, 40)) as pilot:
        view = app.view
        pane = await open_steering(app, pilot)
        await wait_for(pilot, lambda: pane.chosen_feature() == 5)
        await pilot.press("ctrl+g")
        await pilot.press("escape")  # Escape: back to the text too
        assert view.has_focus
        view.move_cursor((0, 4))
        await pilot.press("x")  # inside the passage
        slow.gate.set()
        await wait_for(pilot, lambda: pane.result is not None)
        pane.action_accept()
        await pilot.pause(0.05)
        assert view.text == TEXT[:4] + "x" + TEXT[4:]
        assert pane.is_open
        assert any("passage was edited" in str(n.message) for n in app._notifications)
        # Undo the stray key: the passage reads as before and the rewrite goes in.
        view.undo()
        pane.action_accept()
        await wait_for(pilot, lambda: not pane.is_open)
        assert view.text == REWRITE + TEXT[31:]


async def test_keys_typed_in_the_pane_never_change_the_text(app):
    """Ctrl+W (once the pane's close key, a word deletion in the text), Tab past the pane's last widget, and the
    hidden features panel's keys (F9, Enter, F2, Shift+F9) leave the text alone and the focus in the pane."""
    async with app.run_test(size=(130, 40)) as pilot:
        pane = await open_steering(app, pilot)
        pinned = app.pinned
        inside = [w for w in app.screen.focus_chain if pane in w.ancestors]
        assert len(inside) >= 4
        for key in ["ctrl+w", *["tab"] * (len(inside) + 2), *["shift+tab"] * (len(inside) + 2), "f9", "enter",
                    "f2", "shift+f9", "ctrl+w", "backspace", "delete", "ctrl+z", "ctrl+y", "ctrl+x", "ctrl+k",
                    "ctrl+u"]:
            await pilot.press(key)
            assert app.view.text == TEXT, key
            assert pane.has_focus_within, key
        assert app.pinned == pinned and not app.panel.display
        # Tab goes round: from the last widget to the first.
        inside[-1].focus()
        await pilot.press("tab")
        assert app.focused is inside[0]
        await pilot.press("shift+tab")
        assert app.focused is inside[-1]


async def test_f9_from_the_text_with_the_pane_open_does_nothing_and_f4_closes(app):
    async with app.run_test(size=(130, 40)) as pilot:
        pane = await open_steering(app, pilot)
        await pilot.press("escape")
        assert app.view.has_focus
        await pilot.press("f9")  # would focus the hidden panel, where Enter pinned an unseen feature
        assert app.view.has_focus and pane.is_open and not app.panel.display
        assert app.view.text == TEXT
        await pilot.press("f4")
        await wait_for(pilot, lambda: not pane.is_open)
        assert app.view.has_focus and app.view.text == TEXT and app.panel.display
        await pilot.press("z")
        assert app.view.text.startswith("z")
