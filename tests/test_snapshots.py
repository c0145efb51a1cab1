"""Snapshots (SVG) of the editor's main screens in two themes, with pytest-textual-snapshot.

Deterministic: no model, a fixed terminal size and text, the cursor blink off, settings that name a
fixed config path. Regenerate after an intended UI change with
`pytest tests/test_snapshots.py --snapshot-update` and look at the SVGs before committing them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input

from morph.config import Settings
from morph.editor.app import MorphApp

SIZE = (100, 28)
TEXT = """# The mill by the river

The river ran past the old mill, and the **miller's daughter** watched the water.
Nobody knew where it went after the *bend*.

> In the evening the lamps were lit along the harbour.

- sailors sang
- the fog drifted in
- `Holmes` lit his pipe

See [the map](https://example.org/map) for the way.
"""


@pytest.fixture(autouse=True)
def dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("MORPH_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("MORPH_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)


def make(theme: str) -> MorphApp:
    settings = Settings(theme=theme, source=Path("~/.config/morph/config.toml"))
    return MorphApp(None, TEXT, settings, None)


def steady(*keys: str, cursor: tuple[int, int] = (2, 10)):
    """A run_before that places the cursor, presses `keys`, and stops every cursor blinking."""

    async def run_before(pilot) -> None:
        app = pilot.app
        await pilot.pause()
        app.view.move_cursor(cursor)
        for key in keys:
            await pilot.press(key)
        await pilot.pause(0.3)
        if app.preview.display:  # the preview renders in the background: wait until it is complete
            seen = -1
            for _ in range(200):
                count = len(app.preview.query("MarkdownBlock"))
                if count == seen and app.preview.query("MarkdownBulletList"):
                    break
                seen = count
                await pilot.pause(0.1)
            await pilot.wait_for_scheduled_animations()
            await pilot.pause(0.2)
        for screen in app.screen_stack:
            for widget in screen.query("Input, TextArea"):
                widget.cursor_blink = False
        if not app._modal_open() and not app.findbar.is_open:
            app.view.focus()
        app.view.repaint()
        await pilot.pause(0.1)

    return run_before


@pytest.mark.parametrize("theme", ["morph-dark", "morph-light"])
def test_editor(snap_compare, theme):
    assert snap_compare(make(theme), terminal_size=SIZE, run_before=steady())


@pytest.mark.parametrize("theme", ["morph-dark", "morph-light"])
def test_preview(snap_compare, theme):
    assert snap_compare(make(theme), terminal_size=SIZE, run_before=steady("f12"))


def test_focus_mode(snap_compare):
    assert snap_compare(make("morph-paper"), terminal_size=SIZE, run_before=steady("f6", cursor=(6, 4)))


def test_find_and_replace(snap_compare):
    async def run_before(pilot) -> None:
        await steady("ctrl+r")(pilot)
        pilot.app.screen.query_one("#find-input", Input).value = "river"
        pilot.app.screen.query_one("#replace-input", Input).value = "stream"
        await pilot.pause(0.2)

    assert snap_compare(make("morph-light"), terminal_size=SIZE, run_before=run_before)


def test_help(snap_compare):
    assert snap_compare(make("morph-dark"), terminal_size=(100, 40), run_before=steady("f1"))


def test_unsaved_changes_prompt(snap_compare):
    assert snap_compare(make("morph-contrast"), terminal_size=SIZE, run_before=steady("x", "ctrl+q"))

