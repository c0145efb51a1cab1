"""DocumentView repaints only the screen lines an edit or a cursor move changed, from a cache keyed by what
each line shows. Whatever the writer does, the screen drawn that way must equal the screen drawn from scratch."""

from __future__ import annotations

import pytest
from textual.geometry import Region

from morph.config import Settings
from morph.editor.app import MorphApp
from morph.editor.document import DocumentView
from morph.features.engine import Engine
from tests.pilot import wait_for

PARAGRAPH = ("The river ran past the old mill, and the miller's daughter watched the water turn the wheel "
             "while the lamps were lit along the harbour and the sailors sang of home. ")
TEXT = "# A title\n\n" + "\n\n".join(PARAGRAPH * (1 + i % 3) for i in range(12)) + "\n"


def shown(view: DocumentView) -> list[str]:
    """The view's lines as the compositor gets them now: cached strips where nothing marked them dirty."""
    width, height = view.size
    strips = view.render_lines(Region(0, 0, width + 2, height))
    return ["".join(f"{segment.text}|{segment.style}" for segment in strip) for strip in strips]


def from_scratch(view: DocumentView) -> list[str]:
    view._styles_cache.clear()
    view._line_cache.clear()
    view._lines.clear()
    view._highlights_changed()
    return shown(view)


def analysed(app: MorphApp) -> bool:
    return (app.analysis is not None and app.analysis.generation == app.generation
            and app.analysis.stats.complete and app.status.state.state == "idle")


@pytest.fixture
def app(tiny_lens, dirs) -> MorphApp:
    return MorphApp(None, TEXT, Settings(debounce_ms=30), lambda _progress: Engine(tiny_lens))


async def test_incremental_drawing_equals_drawing_from_scratch(app):
    async with app.run_test(size=(70, 24)) as pilot:
        await wait_for(pilot, lambda: analysed(app))
        view = app.query_one(DocumentView)
        view.cursor_blink = False
        assert len(view.overlay) > 0
        view.move_cursor((2, 40))
        await pilot.pause()
        steps = [
            ("type in a wrapped paragraph", ["w", "o", "r", "d", "s", "space"]),
            ("type until the paragraph wraps once more", ["x"] * 40),
            ("delete back", ["backspace"] * 12),
            ("split the paragraph", ["enter"]),
            ("join it again", ["backspace"]),
            ("move across rows", ["down", "down", "up", "end", "home"]),
            ("select across rows", ["shift+down", "shift+down", "shift+right"]),
            ("shrink the selection", ["shift+up"]),
            ("collapse it", ["left"]),
            ("type over a selection", ["shift+right", "shift+right", "z"]),
            ("undo and redo", ["ctrl+z", "ctrl+y"]),
            ("open a code fence: every row below changes style", ["end", "enter", "enter", "`", "`", "`"]),
            ("close it again", ["backspace"]),
        ]
        for what, keys in steps:
            await pilot.press(*keys)
            await pilot.pause()
            assert shown(view) == from_scratch(view), what
        # highlights for the new text arrive and replace the shifted ones
        await wait_for(pilot, lambda: analysed(app))
        await pilot.pause()
        assert shown(view) == from_scratch(view), "new highlights"


@pytest.fixture
def quiet_app(tiny_lens, dirs) -> MorphApp:
    """An editor whose debounce never fires during a test: analyse_once runs the one analysis."""
    return MorphApp(None, TEXT, Settings(debounce_ms=5000), lambda _progress: Engine(tiny_lens))


async def analyse_once(pilot, app: MorphApp) -> DocumentView:
    await wait_for(pilot, lambda: app.engine is not None)
    app.live.start()
    await wait_for(pilot, lambda: analysed(app))
    view = app.query_one(DocumentView)
    view.cursor_blink = False
    return view


async def test_a_keystroke_repaints_only_the_edited_paragraph(quiet_app):
    app = quiet_app
    async with app.run_test(size=(70, 24)) as pilot:
        view = await analyse_once(pilot, app)
        view.move_cursor((2, 10))
        await pilot.pause()
        drawn: list[int] = []
        original = view._render_line

        def counting(y: int):
            drawn.append(y)
            return original(y)

        view._render_line = counting
        await pilot.press("a")
        await pilot.pause()
        sections = len(view.wrapped_document._line_index_to_offsets[2])
        assert 0 < len(drawn) <= sections  # the edited paragraph's screen lines, nothing else


async def test_opening_a_code_fence_redraws_the_rows_below(tiny_lens, dirs):
    app = MorphApp(None, TEXT, Settings(debounce_ms=5000), lambda _progress: Engine(tiny_lens))  # no highlights arrive
    async with app.run_test(size=(70, 24)) as pilot:
        view = app.query_one(DocumentView)
        view.cursor_blink = False
        view.move_cursor((1, 0))  # the empty line under the title
        await pilot.pause()
        below = view._layers_of(4)
        await pilot.press("`", "`", "`")
        await pilot.pause()
        assert view._layers_of(4) != below  # the rows below are code now
        assert shown(view) == from_scratch(view)


def test_the_editor_sets_textuals_frame_rate_unless_the_user_did():
    import os
    import subprocess
    import sys

    code = "import morph.editor.app, textual.constants as c; print(c.MAX_FPS)"
    env = {k: v for k, v in os.environ.items() if k != "TEXTUAL_FPS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "120"
    out = subprocess.run([sys.executable, "-c", code], env={**env, "TEXTUAL_FPS": "30"}, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "30"


async def test_the_line_being_written_shows_its_highlights(app):
    async with app.run_test(size=(70, 24)) as pilot:
        view = app.query_one(DocumentView)
        view.move_cursor((2, len(view.document[2])))
        await pilot.press("space", "w", "o", "r", "d", "s")
        await wait_for(pilot, lambda: analysed(app))
        await pilot.pause()
        row = view.cursor_location[0]
        start = view.offset_of((row, 0))
        assert view.overlay.between(start, start + len(view.document[row]))
        y = view.wrapped_document._line_index_to_offsets[row][0] - view.scroll_offset.y
        backgrounds = {segment.style.bgcolor for segment in view.render_line(y) if segment.style}
        assert len(backgrounds) > 2  # the highlight colours, not one current-line shade over them all


async def test_each_screen_line_of_a_paragraph_is_styled_as_the_whole_row_would_be(app):
    # get_line styles only the section being drawn; what reaches the screen must equal TextArea's way of
    # styling the whole row and cutting it into sections.
    async with app.run_test(size=(70, 24)) as pilot:
        await wait_for(pilot, lambda: analysed(app))
        view = app.query_one(DocumentView)
        view.cursor_blink = False
        view.move_cursor((2, 30))
        view.select_line(4)  # a selection across a wrapped paragraph too
        await pilot.pause()
        row_lines = [y for y, (row, _) in enumerate(view.wrapped_document._offset_to_line_info[:view.size.height])
                     if row in (2, 4)]
        assert len(row_lines) > 4 and len(view.overlay) > 0
        for y in row_lines:
            view._section = None
            whole_row = list(view._render_line(y))  # the whole row styled, then cut
            view._lines.clear()
            assert list(view.render_line(y)) == whole_row, y


async def test_a_paragraph_growing_a_line_lays_out_nothing(app):
    # TextArea's virtual_size change lays out the whole screen; the view updates its scrollbar instead.
    async with app.run_test(size=(70, 24)) as pilot:
        await wait_for(pilot, lambda: analysed(app))
        view = app.query_one(DocumentView)
        view.cursor_blink = False
        view.move_cursor((2, len(view.document[2])))
        await pilot.pause()
        layouts: list[object] = []
        screen = app.screen
        original = screen._refresh_layout

        def counting(*args, **kwargs):
            layouts.append(args)
            return original(*args, **kwargs)

        screen._refresh_layout = counting
        height = view.wrapped_document.height
        while view.wrapped_document.height == height:
            await pilot.press("x")
        await pilot.pause()
        assert layouts == []
        assert view.virtual_size.height == view.wrapped_document.height == height + 1
        assert view.vertical_scrollbar.window_virtual_size == height + 1
        assert shown(view) == from_scratch(view)
        screen._refresh_layout = original
        view.select_all()
        await pilot.press("backspace")  # the scrollbar goes: that still lays out
        await pilot.pause()
        assert view.virtual_size.height == view.wrapped_document.height
        assert not view.show_vertical_scrollbar


def test_frame_timer_wakes_on_the_next_slot():
    from morph.editor.frames import next_slot

    # slots every 10 ms from 0: woken at 53 ms, the next wake-up is start + (count + 1) * interval = 60 ms
    assert (next_slot(0.0, 0.053, 0.01) + 1) * 0.01 == pytest.approx(0.06)
    assert (next_slot(0.0, 0.0599, 0.01) + 1) * 0.01 == pytest.approx(0.06)
    assert (next_slot(1.0, 1.0001, 0.01) + 1) * 0.01 == pytest.approx(0.01)


async def test_the_editor_screen_draws_on_a_frame_timer(app):
    from morph.editor.frames import FrameTimer, PacedScreen

    async with app.run_test(size=(70, 24)) as pilot:
        view = app.query_one(DocumentView)
        assert isinstance(app.screen, PacedScreen)
        assert isinstance(app.screen._update_timer, FrameTimer)
        await pilot.press("a", "b")
        await pilot.pause()
        assert "ab" in view.text
        assert shown(view) == from_scratch(view)


async def test_a_keystroke_refreshes_only_the_screen_lines_it_changed(quiet_app):
    app = quiet_app
    async with app.run_test(size=(70, 24)) as pilot:
        view = await analyse_once(pilot, app)
        row = 4
        assert len(view.wrapped_document._line_index_to_offsets[row]) >= 3  # a paragraph of 3+ screen lines
        view.move_cursor((row, len(view.document[row]) - 1))
        await pilot.pause()
        refreshed: list[int] = []
        original = view.refresh_lines

        def counting(y_start: int, line_count: int = 1) -> None:
            refreshed.extend(range(y_start, y_start + line_count))
            original(y_start, line_count)

        view.refresh_lines = counting
        await pilot.press("a")
        await pilot.pause()
        assert 0 < len(set(refreshed)) <= 2  # the paragraph's last line (and its cursor), not all of it
        assert shown(view) == from_scratch(view)


async def test_a_resize_that_keeps_the_height_redraws_the_rewrapped_lines(app):
    # A column more or less rewraps the paragraphs, often without changing the document's height: TextArea
    # did not repaint then, and the screen kept lines wrapped for the old width.
    async with app.run_test(size=(70, 24)) as pilot:
        view = app.query_one(DocumentView)
        view.cursor_blink = False
        await pilot.pause()
        same_height = 0
        for width in range(71, 90):
            before = view.wrapped_document.height, view.wrapped_document._width
            await pilot.resize_terminal(width, 24)
            await pilot.pause()
            after = view.wrapped_document.height, view.wrapped_document._width
            same_height += after[0] == before[0] and after[1] != before[1]
            assert shown(view) == from_scratch(view), width
        assert same_height  # some of those resizes rewrapped without a change of height
