"""Writing comforts in the editor, driven with Textual's Pilot: find/replace, go to line, undo/redo,
preview, focus mode, themes that persist, keys from the settings, help, the command palette; and, on
a tiny model, Markdown styling beside feature highlights and the windowed analysis of large documents."""

from __future__ import annotations

import tomllib

import pytest
from textual.widgets import Input, Markdown

from morph.config import DEFAULT_KEYS, Settings, config_path, load_settings
from morph.editor.actions import ACTIONS
from morph.editor.app import MorphApp
from morph.editor.dialogs import GotoLineScreen, HelpScreen, SaveAsScreen
from morph.editor.document import DocumentView
from tests.pilot import wait_for

TEXT = (
    "# The mill\n"
    "\n"
    "The river ran past the old mill. The **miller** watched the river.\n"
    "\n"
    "In the evening the lamps were lit.\n"
    "Sailors sang by the river.\n"
    "\n"
    "Fog drifted in.\n"
)


pytestmark = pytest.mark.usefixtures("dirs")


def make(text: str = TEXT, **settings) -> MorphApp:
    return MorphApp(None, text, Settings(**settings), None)


async def ready(pilot, app: MorphApp) -> None:
    await wait_for(pilot, lambda: not app._flow_busy)


def notes(app: MorphApp) -> str:
    return "\n".join(str(n.message) for n in app._notifications)


def dimmed(view: DocumentView, row: int) -> bool:
    line = view.get_line(row)
    return any(span.style and getattr(span.style, "dim", False) for span in line.spans)


async def test_find_replace_all_is_one_undo_step(dirs):
    app = make()
    async with app.run_test(size=(110, 30)) as pilot:
        await ready(pilot, app)
        await pilot.press("ctrl+f", *"river")
        bar = app.findbar
        assert bar.is_open and app.view.selected_text == "river"
        await pilot.press("f3")
        assert app.view.selection.start == (2, TEXT.split("\n")[2].rindex("river"))
        await pilot.press("ctrl+r")
        assert bar.has_class("-replace")
        app.screen.query_one("#replace-input", Input).value = "stream"
        await pilot.click("#replace-all")
        assert app.view.text.count("stream") == 3 and "river" not in app.view.text
        assert app.modified
        await pilot.press("escape")  # closes the bar, back in the text
        assert not bar.is_open and app.focused is app.view
        await pilot.press("ctrl+z")
        assert app.view.text == TEXT
        await pilot.press("ctrl+y")
        assert app.view.text.count("stream") == 3
        await pilot.press("shift+f3")  # finds with the bar closed; not found is said
        await wait_for(pilot, lambda: "not found" in notes(app))


async def test_go_to_line(dirs):
    app = make()
    async with app.run_test(size=(110, 30)) as pilot:
        await ready(pilot, app)
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: isinstance(app.screen, GotoLineScreen))
        app.screen.query_one(Input).value = "5"
        await pilot.press("enter")
        await wait_for(pilot, lambda: not app._modal_open())
        assert app.view.cursor_location == (4, 0)
        assert app.status.state.row == 4


async def test_ctrl_home_and_ctrl_end_go_to_the_ends_of_the_document(dirs):
    app = make()
    async with app.run_test(size=(110, 30)) as pilot:
        await ready(pilot, app)
        view = app.view
        view.move_cursor((2, 3))
        await pilot.press("ctrl+end")
        assert view.cursor_location == view.document.end
        await pilot.press("ctrl+home")
        assert view.cursor_location == (0, 0)
        await pilot.press("ctrl+shift+end")
        assert view.selected_text == view.text
        view.move_cursor((2, 2))
        await pilot.press("ctrl+shift+home")
        assert view.selection.end == (0, 0) and view.selection.start == (2, 2)
        assert view.text == TEXT


async def test_undo_redo_and_counts(dirs):
    app = make("one two")
    async with app.run_test(size=(110, 30)) as pilot:
        await ready(pilot, app)
        await pilot.press("end", *" three")
        assert app.status.state.words == 3
        await pilot.press("ctrl+z")
        assert app.view.text == "one two"
        await pilot.press("ctrl+y")
        assert app.view.text == "one two three"
        rendered = str(app.status.render_state())
        assert "3 words · 13 chars · 1 min read" in rendered


async def test_find_keys_pressed_before_the_hidden_widgets_mount_are_kept(dirs):
    """The steering pane and the find bar are mounted just after the first paint (the paint is quicker
    without them): Ctrl+F and the letters after it, pressed at once, still open the bar and search."""
    app = make()
    async with app.run_test(size=(110, 30)) as pilot:
        assert not app.screen.query("FindBar")  # nothing waited for: the first paint came first
        await pilot.press("ctrl+f", *"mill")
        await wait_for(pilot, lambda: app._hidden_mounted.is_set() and app.findbar.is_open)
        await wait_for(pilot, lambda: app.view.selected_text == "mill")
        assert app.screen.query("SteerPane") and app.view.text == TEXT


async def test_quitting_before_the_hidden_widgets_mount_is_clean(dirs):
    app = make()
    async with app.run_test(size=(110, 30)):
        app.exit()
    assert app.return_code in (0, None)


async def test_preview_toggle_shows_rendered_markdown_and_follows_typing(dirs):
    app = make(debounce_ms=30)
    async with app.run_test(size=(110, 30)) as pilot:
        await ready(pilot, app)
        assert not app.preview.display
        await pilot.press("f12")
        assert app.preview.display and not app.panel.display  # beside the text, in the panel's place
        await wait_for(pilot, lambda: app.preview.query("MarkdownH1"))
        markdown = app.preview.query_one(Markdown)
        assert "The mill" in str(app.preview.query_one("MarkdownH1").render())
        assert markdown.source.startswith("# The mill")
        app.view.move_cursor(app.view.document.end)
        await pilot.press(*"\n## Coda\n")
        await wait_for(pilot, lambda: app.preview.query("MarkdownH2"))
        await pilot.press("f12")
        assert not app.preview.display and app.panel.display


async def test_focus_mode_dims_all_but_the_current_paragraph(dirs):
    app = make()
    async with app.run_test(size=(110, 30)) as pilot:
        await ready(pilot, app)
        app.view.move_cursor((4, 3))
        await pilot.press("f6")
        assert app.focus_mode
        view = app.view
        assert not dimmed(view, 4) and not dimmed(view, 5)  # the paragraph under the cursor
        assert dimmed(view, 0) and dimmed(view, 2) and dimmed(view, 7)
        await pilot.press(*["up"] * 8)  # moving the cursor moves the focus (line 2 wraps)
        await pilot.pause(0.05)
        assert not dimmed(view, 0) and dimmed(view, 4)
        await pilot.press("f6")
        assert not dimmed(view, 4) and view.focus_paragraph is None


async def test_theme_switches_persist_to_the_config(dirs):
    app = make()
    async with app.run_test(size=(110, 30)) as pilot:
        await ready(pilot, app)
        assert app.theme_name == "morph-dark"
        await pilot.press("ctrl+t")
        assert app.theme_name != "morph-dark" and app.theme == app.theme_name
        first = app.theme_name
        assert tomllib.loads(config_path().read_text())["theme"] == first
        # through the command palette, as a writer would
        await pilot.press("ctrl+p")
        await pilot.pause(0.2)
        await pilot.press(*"Theme: morph-paper")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.theme_name == "morph-paper")
        assert tomllib.loads(config_path().read_text())["theme"] == "morph-paper"
    again = MorphApp(None, "", load_settings(), None)
    async with again.run_test(size=(80, 20)) as pilot:
        assert again.theme_name == "morph-paper"


async def test_a_bad_user_theme_is_a_notification(dirs):
    themes = dirs / "config" / "themes"
    themes.mkdir(parents=True)
    (themes / "broken.toml").write_text("dark = 3\n")
    app = make()
    async with app.run_test(size=(110, 30)) as pilot:
        await ready(pilot, app)
        assert "broken.toml" in notes(app)
        assert app.theme_name == "morph-dark"


async def test_keys_come_from_the_settings(dirs):
    keys = {**DEFAULT_KEYS, "save": "f10", "toggle_preview": "ctrl+k"}
    app = make(keys=keys)
    async with app.run_test(size=(110, 30)) as pilot:
        await ready(pilot, app)
        await pilot.press("ctrl+s")  # no longer save
        await pilot.pause(0.05)
        assert not app._modal_open()
        await pilot.press("f10")
        await wait_for(pilot, lambda: isinstance(app.screen, SaveAsScreen))
        await pilot.press("escape")
        await wait_for(pilot, lambda: not app._modal_open() and not app._flow_busy)
        await pilot.press("ctrl+k")  # beats the text area's own ctrl+k
        assert app.preview.display and app.view.text == TEXT
        await pilot.press("f1")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        listed = dict(app.screen.bindings_list)
        assert listed["f10"] == "Save" and listed["ctrl+k"].startswith("Markdown preview")
        await pilot.press("escape")


async def test_texts_name_the_keys_in_force(dirs):
    """A remapped key is the one the help, the palette and the notes name (they read the bindings' keys)."""
    app = make(keys={**DEFAULT_KEYS, "toggle_analysis": "f10", "focus_panel": "ctrl+k"})
    async with app.run_test(size=(110, 30)) as pilot:
        await ready(pilot, app)
        await pilot.press("f7")  # no longer pauses the analysis
        assert app.analysis_enabled
        await pilot.press("f10")
        assert not app.analysis_enabled and app.status.state.detail == "(live analysis paused: F10)"
        await pilot.press("f8")  # next occurrence, with nothing pinned: the note names the panel's key
        await wait_for(pilot, lambda: "choose it in the panel: Ctrl+K, then Enter" in notes(app))
        palette = {c.title: c.help for c in app.get_system_commands(app.screen)}
        assert palette["Analysis: pause/resume live analysis"].endswith("(F10)")


async def test_keys_are_off_while_a_dialog_is_open(dirs):
    app = make()
    async with app.run_test(size=(110, 30)) as pilot:
        await ready(pilot, app)
        await pilot.press("f1")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.press("f12", "ctrl+g")
        assert isinstance(app.screen, HelpScreen) and not app.preview.display
        await pilot.press("f1")  # the help screen's own F1 closes it
        await wait_for(pilot, lambda: not app._modal_open())


async def test_every_action_is_in_the_command_palette(dirs):
    app = make()
    async with app.run_test(size=(110, 30)) as pilot:
        await ready(pilot, app)
        titles = {command.title for command in app.get_system_commands(app.screen)}
        for title in (action.title for action in ACTIONS if action.title):  # the registry's palette titles
            assert title in titles
        assert {"Theme: morph-dark", "Theme: morph-light", "View: soft wrap on/off",
                "File: recovered text…"} <= titles
        assert "Theme" not in titles and "Quit" not in titles  # replaced by Morph's own


async def test_soft_wrap_setting_and_toggle(dirs):
    app = make(soft_wrap=False)
    async with app.run_test(size=(110, 30)) as pilot:
        await ready(pilot, app)
        assert app.view.soft_wrap is False
        app._toggle_setting("soft_wrap")
        assert app.view.soft_wrap is True
        assert tomllib.loads(config_path().read_text())["soft_wrap"] is True


async def test_steer_without_a_selection_says_what_to_do(dirs):
    app = make()
    async with app.run_test(size=(110, 30)) as pilot:
        await ready(pilot, app)
        await pilot.press("ctrl+e")
        await wait_for(pilot, lambda: "select" in notes(app))
        assert app.view.text == TEXT


# --- with a (tiny) model -------------------------------------------------------------------------


def analysed(app: MorphApp) -> bool:
    return (app.analysis is not None and app.analysis.generation == app.generation
            and app.analysis.stats.complete and app.status.state.state == "idle")


@pytest.fixture
def engine_factory(tiny_lens):
    from morph.features.engine import Engine

    return lambda _progress: Engine(tiny_lens)


async def test_markdown_styles_and_feature_highlights_coexist(dirs, engine_factory):
    app = MorphApp(None, TEXT, Settings(debounce_ms=30), engine_factory)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: analysed(app), timeout=30)
        view = app.view
        assert len(view.overlay) > 0
        bold = app.morph_themes["morph-dark"].markdown_style("bold")
        line = view.get_line(2)  # "... The **miller** watched the river."
        start = line.plain.index("miller")
        styles = [span.style for span in line.spans]
        assert any(s and s.bgcolor for s in styles)  # feature highlights
        assert any(span.start <= start < span.end and span.style == bold for span in line.spans)
        heading = view.get_line(0)
        assert any(span.style == app.morph_themes["morph-dark"].markdown_style("heading")
                   for span in heading.spans)


async def test_large_documents_are_analysed_around_the_cursor(dirs, engine_factory):
    paragraph = "The lamps were lit along the harbour and the sailors sang of the sea.\n\n"
    text = paragraph * 60  # about 4,300 characters
    app = MorphApp(None, text, Settings(debounce_ms=30, analysis_max_chars=1000), engine_factory)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: analysed(app), timeout=30)
        assert app.analysis_base == 0 and app.analysis.text_length <= 1000
        assert "large document: analysing" in app.status.state.note
        assert "around the cursor" in str(app.status.render_state())
        app.view.move_cursor(app.view.document.end)  # far outside the window: the window follows
        await wait_for(pilot, lambda: analysed(app) and app.analysis_base > 0, timeout=30)
        assert app.analysis_base + app.analysis.text_length >= len(text) - 2
        assert len(app.view.overlay) > 0


async def test_markdown_styling_pauses_for_very_large_documents(dirs, monkeypatch):
    import morph.editor.app as app_module

    monkeypatch.setattr(app_module, "LARGE_STYLING", 200)
    app = make("# Title\n\nshort\n")
    async with app.run_test(size=(110, 30)) as pilot:
        await ready(pilot, app)
        assert app.view._markdown_fn is not None
        app.view.insert("word " * 50)
        await wait_for(pilot, lambda: app.view._markdown_fn is None)
        assert "Markdown styling is off" in notes(app)
        await pilot.press("ctrl+z")
        await wait_for(pilot, lambda: app.view._markdown_fn is not None)


@pytest.mark.parametrize("columns, panel_width", [(140, 44), (100, 44), (80, 35), (60, 26)])
async def test_the_side_panel_narrows_on_a_narrow_terminal(dirs, columns, panel_width):
    app = make()
    async with app.run_test(size=(columns, 24)) as pilot:
        await ready(pilot, app)
        assert app.panel.outer_size.width == panel_width
        assert app.view.outer_size.width == columns - panel_width
