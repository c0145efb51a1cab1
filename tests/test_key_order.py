"""Keys typed in one breath act in the order typed and follow the focus a key among them moved: the keys are
posted to the app all at once (Pilot's press waits for the app to go idle after each, which hides both faults)."""

from __future__ import annotations

from textual import events

from morph.editor.find_bar import FindBar
from morph.editor.steer_pane import SteerPane
from tests.pilot import wait_for
from tests.test_app_steer import app, open_steering  # noqa: F401 - the fixture
from tests.test_editor import TEXT, analysed

PASSAGE = ((0, 0), (0, 31))  # "The river ran past the old mill"


def typed_at_once(app, *keys: str) -> None:
    for key in keys:
        app.post_message(events.Key(key, key if len(key) == 1 else None))


async def idle(pilot) -> None:
    await pilot.pause(0.3)
    await pilot.pause()


async def test_editing_keys_act_in_the_order_typed(app):
    """Backspace, Left and Home are bindings, not characters: Textual acted on them in the app, behind the
    letters typed after them ("abc", Backspace, "d"... read "abcde" with the last letter deleted)."""
    async with app.run_test(size=(130, 40)) as pilot:
        app.view.selection = ((0, 0), (0, 0))
        typed_at_once(app, "a", "b", "c", "backspace", "d", "left", "e", "home", "f")
        await idle(pilot)
        assert app.view.text == "fabed" + TEXT
        assert app.view.selection.end == (0, 1)


async def test_ctrl_e_then_a_word_searches_concepts_and_leaves_the_passage(app):
    async with app.run_test(size=(130, 40)) as pilot:
        await wait_for(pilot, lambda: analysed(app))
        app.view.selection = PASSAGE
        typed_at_once(app, "ctrl+e", "c", "a", "l", "m", "x", "backspace")
        await idle(pilot)
        pane = app.query_one(SteerPane)
        assert app.view.text == TEXT  # once: "calm" typed over the passage being steered
        assert pane.is_open and pane.query_one("#search").value == "calm"
        assert pane.query_one("#search").has_focus


async def test_keys_after_leaving_or_closing_the_pane_go_to_the_text(app):
    async with app.run_test(size=(130, 40)) as pilot:
        pane = await open_steering(app, pilot, PASSAGE)
        typed_at_once(app, "escape", "ctrl+end", "x")  # Escape: back to the text, the pane stays open
        await idle(pilot)
        assert app.view.text == TEXT + "x" and app.view.has_focus and pane.is_open
        assert pane.query_one("#search").value == ""
        await pilot.press("ctrl+e")
        await wait_for(pilot, lambda: pane.has_focus_within)
        typed_at_once(app, "f4", "ctrl+end", "y")  # F4: close
        await idle(pilot)
        assert app.view.text == TEXT + "xy" and app.view.has_focus and not pane.is_open


async def test_find_then_a_word_is_the_query_and_escape_then_keys_go_to_the_text(app):
    async with app.run_test(size=(130, 40)) as pilot:
        await wait_for(pilot, lambda: analysed(app))
        app.view.selection = ((0, 4), (0, 4))
        typed_at_once(app, "ctrl+f", "m", "i", "x", "backspace", "l")
        await idle(pilot)
        bar = app.query_one(FindBar)
        assert app.view.text == TEXT and bar.query_text == "mil"
        typed_at_once(app, "escape", "ctrl+end", "z")
        await idle(pilot)
        assert app.view.text == TEXT + "z" and app.view.has_focus
        assert bar.query_text == "mil"


async def test_a_selection_made_with_keys_then_ctrl_e_steers_that_selection(app):
    """Ctrl+E acts in the app, ahead of the selection keys still waiting at the text: it waits for them."""
    async with app.run_test(size=(130, 40)) as pilot:
        await wait_for(pilot, lambda: analysed(app))
        app.view.selection = ((0, 0), (0, 0))
        typed_at_once(app, "shift+end", "ctrl+e", "s", "e", "a")
        await idle(pilot)
        pane = app.query_one(SteerPane)
        assert app.view.text == TEXT and pane.is_open
        assert pane.original == TEXT.split("\n")[0][:len(pane.original)] and len(pane.original) > 20
        assert pane.query_one("#search").value == "sea"


async def test_letters_then_save_in_one_breath_save_the_letters(tiny_lens, tmp_path, monkeypatch):
    from morph.config import Settings
    from morph.editor.app import MorphApp
    from morph.features.engine import Engine

    monkeypatch.setenv("MORPH_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("MORPH_STATE_DIR", str(tmp_path / "state"))
    path = tmp_path / "draft.txt"
    path.write_text(TEXT, encoding="utf-8")
    app = MorphApp(path, TEXT, Settings(debounce_ms=30), lambda _progress: Engine(tiny_lens))
    async with app.run_test(size=(130, 40)) as pilot:
        app.view.selection = ((0, 0), (0, 0))
        typed_at_once(app, "x", "y", "backspace", "z", "ctrl+s")
        await idle(pilot)
        await wait_for(pilot, lambda: path.read_text(encoding="utf-8") != TEXT)
        assert path.read_text(encoding="utf-8") == "xz" + TEXT
