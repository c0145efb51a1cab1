"""Steering from the editor: Ctrl+E on a selection, accept is one undo step, cancel changes nothing."""

from __future__ import annotations

import pytest

from morph.config import Settings
from morph.editor.app import MorphApp
from morph.editor.document import DocumentView
from morph.editor.steer_screen import SteerScreen
from morph.features.engine import Engine
from tests.test_editor import TEXT, analysed, wait_for


@pytest.fixture
def app(tiny_lens, tmp_path, monkeypatch):
    monkeypatch.setenv("MORPH_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("MORPH_STATE_DIR", str(tmp_path / "state"))
    return MorphApp(None, TEXT, Settings(debounce_ms=30), lambda: Engine(tiny_lens))


async def open_steering(app, pilot) -> SteerScreen:
    await wait_for(pilot, lambda: analysed(app))
    view = app.query_one(DocumentView)
    view.selection = ((0, 0), (0, 31))  # "The river ran past the old mill"
    await pilot.press("ctrl+e")
    await wait_for(pilot, lambda: isinstance(app.screen, SteerScreen))
    return app.screen


async def test_accepting_a_candidate_is_one_undoable_edit(app):
    async with app.run_test(size=(130, 40)) as pilot:
        screen = await open_steering(app, pilot)
        await wait_for(pilot, lambda: screen.chosen_feature() is not None)
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: screen.result is not None and screen.candidates, timeout=60)
        chosen = screen.candidates[0].text
        screen.action_accept()
        view = app.query_one(DocumentView)
        await wait_for(pilot, lambda: view.text != TEXT)  # the screen's callback runs after it closes
        assert view.text == chosen + TEXT[31:]
        assert "\x0b" not in chosen
        view.undo()
        assert view.text == TEXT
        view.redo()
        assert view.text == chosen + TEXT[31:]


async def test_cancel_leaves_the_document_untouched(app):
    async with app.run_test(size=(130, 40)) as pilot:
        await open_steering(app, pilot)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, SteerScreen))
        assert app.query_one(DocumentView).text == TEXT


async def test_steering_without_a_selection_says_so(app):
    async with app.run_test(size=(130, 40)) as pilot:
        await wait_for(pilot, lambda: analysed(app))
        await pilot.press("ctrl+e")
        await pilot.pause(0.05)
        assert not isinstance(app.screen, SteerScreen)
        assert any("select the passage" in str(n.message) for n in app._notifications)
