"""Very long lines and very large documents in the editor: typing, moving and scrolling cost the screen lines
they change, not the line or the document (no timing here: the work done is counted), what is drawn equals
what Textual draws, and the counts, offsets and wrap stay exact."""

from __future__ import annotations

import random

import numpy as np
import pytest
from rich.segment import Segment

import morph.editor.document as document_module
import morph.editor.wrapping as wrapping
from morph.config import Settings
from morph.editor.app import MorphApp
from morph.editor.document import DocumentView
from morph.features.highlights import Overlay
from morph.features.engine import Engine
from tests.pilot import wait_for

WORDS = "the river ran past the old mill and the miller's daughter watched the water turn the wheel".split()


def one_line(n_chars: int, seed: int = 1) -> str:
    rng = random.Random(seed)
    words = []
    total = 0
    while total < n_chars:
        word = rng.choice(WORDS) + rng.choice(["", "", "", ",", "."])
        words.append(word)
        total += len(word) + 1
    return " ".join(words)[:n_chars]


def cells(strip) -> list[tuple[str, object]]:
    """A strip as (character, style) per cell: strips drawn differently but looking the same compare equal."""
    return [(char, segment.style) for segment in Segment.simplify(strip) for char in segment.text]


class Work:
    """Counts what a keystroke costs: characters styled for drawing, and breaks found while rewrapping."""

    def __init__(self, monkeypatch) -> None:
        self.styled: list[int] = []
        self.breaks = 0
        styled = DocumentView._styled
        breaks_from = wrapping._breaks_from

        def counting_styled(view, row, a, b, text, relative=True):
            self.styled.append(len(text))
            return styled(view, row, a, b, text, relative)

        def counting_breaks(*args):
            for b in breaks_from(*args):
                self.breaks += 1
                yield b

        monkeypatch.setattr(DocumentView, "_styled", counting_styled)
        monkeypatch.setattr(wrapping, "_breaks_from", counting_breaks)

    def reset(self) -> None:
        self.styled.clear()
        self.breaks = 0


async def test_a_five_megabyte_line_is_edited_at_the_cost_of_a_screen(dirs, monkeypatch):
    line = one_line(5_000_000)
    app = MorphApp(None, line + "\n", Settings(), None)
    work = Work(monkeypatch)
    async with app.run_test(size=(100, 30)) as pilot:
        view = app.view
        width = view.wrap_width
        await pilot.pause()
        assert view.wrapped_document.height > 5_000_000 // width  # wrapped as TextArea wraps
        steps = [
            (["x", "y", "z"], (0, 3)),
            (["right"], (0, 4)),
            (["down", "down"], None),
            (["pagedown", "pagedown"], None),
            (["end"], None),
            (["h", "i", "backspace"], None),
            (["ctrl+end"], (1, 0)),
            (["ctrl+home", "q"], (0, 1)),
        ]
        for keys, where in steps:
            work.reset()
            for key in keys:
                await pilot.press(key)
            await pilot.pause()
            if where is not None:
                assert view.cursor_location == where
            # Each screen line is styled from its own section, and a rewrap stops within a few screen lines.
            assert all(n <= width + 1 for n in work.styled), (keys, max(work.styled))
            assert sum(work.styled) <= 4 * 30 * (width + 1) * len(keys)
            assert work.breaks <= 100 * len(keys)  # of the line's ~70,000
        text = view.text
        assert text.startswith("qxyz" + line[:1]) and len(text) == len(line) + 1 + 5
        await wait_for(pilot, lambda: app.status.state.chars == len(text))  # counted after a pause (large)
        assert app.status.state.words == len(text.split())
        row, column = view.cursor_location
        assert view.wrapped_document._wrap_offsets[0] == wrapping.wrap_offsets(view.document[0], width, 4)
        await pilot.press("ctrl+z")
        await pilot.pause()
        assert view.text.startswith("xyz")


async def test_long_rows_are_drawn_as_textual_draws_them(dirs):
    """A row of 3,000 characters: every screen line drawn from its section equals TextArea's own drawing of it
    (cut from the whole row), with a selection across sections, the cursor at a break, line numbers."""
    text = "Short first line.\n" + one_line(3_000, seed=4) + "\nlast"
    app = MorphApp(None, text, Settings(), None)
    async with app.run_test(size=(70, 40)) as pilot:
        view = app.view
        view.cursor_blink = False
        view.show_line_numbers = True
        await pilot.pause()
        offsets = view.wrapped_document._wrap_offsets[1]
        # highlights: spans every 37 characters of the row, some across breaks
        base = len("Short first line.\n")
        starts = np.arange(base, base + 3_000, 37, dtype=np.int64)
        ends = starts + 11
        n = len(starts)
        view.set_overlay(Overlay(starts, ends, np.arange(n) % 5, np.arange(n) % 4, np.zeros(n, dtype=np.int64)))
        assert any(a < b < a + 11 for a in starts - base for b in offsets)
        assert len(offsets) > 30
        cases = [
            ((1, offsets[3]), (1, offsets[3])),  # the cursor at a break
            ((1, 5), (1, offsets[6] + 4)),  # a selection over sections
            ((0, 3), (1, offsets[2])),  # from the row above
            ((1, offsets[-1] + 2), (2, 2)),  # into the row below
            ((1, 3000), (1, 3000)),  # the end of the row
        ]
        compared = set()
        for start, end in cases:
            view.selection = view.selection.__class__(start, end)
            await pilot.pause()
            for top in range(0, view.wrapped_document.height, view.size.height // 2):
                view.scroll_to(y=top, animate=False, immediate=True)
                for y in range(view.size.height):
                    row, section = view.wrapped_document._offset_to_line_info[
                        min(y + view.scroll_offset.y, view.wrapped_document.height - 1)]
                    if row != 1:
                        continue
                    key = view._line_key(y)
                    ours = view._render_section(row, section, key[2], key[3])
                    theirs = view._render_line(y)  # TextArea's: get_line of the whole row, cut at every break
                    assert cells(ours) == cells(theirs), (start, end, section)
                    compared.add(section)
        assert compared == set(range(len(offsets) + 1))


async def test_counts_offsets_and_wrap_stay_exact_through_edits_undo_and_redo(dirs):
    rng = random.Random(3)
    text = "\n".join(one_line(rng.choice([0, 40, 2_500]), seed=i) for i in range(30))
    app = MorphApp(None, text, Settings(), None)
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.view
        await pilot.pause()
        for step in range(120):
            row = rng.randrange(view.document.line_count)
            column = rng.randint(0, len(view.document[row]))
            choice = rng.random()
            if choice < 0.6:
                view.insert(rng.choice(["a", " ", "word ", "\n", "two\nlines "]), (row, column))
            elif choice < 0.85:
                view.delete((row, max(0, column - rng.randint(1, 30))), (row, column))
            elif choice < 0.95:
                view.undo()
            else:
                view.redo()
            if step % 10 == 0:
                await pilot.pause()
            current = view.text
            assert view.document.counts() == (len(current.split()), len(current))
            starts = [0]
            for line in view.document.lines[:-1]:
                starts.append(starts[-1] + len(line) + 1)
            assert view.line_starts.tolist() == starts
            fresh = [wrapping.wrap_offsets(line, view.wrap_width, 4) for line in view.document.lines]
            assert view.wrapped_document._wrap_offsets == fresh
            assert view.wrapped_document.height == sum(len(o) + 1 for o in fresh)


async def test_soft_wrap_stays_on_for_very_long_lines(dirs):
    app = MorphApp(None, "short\n" + one_line(document_module.NO_WRAP_ROW + 10) + "\n", Settings(), None)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.view.soft_wrap = False
        await pilot.pause()
        assert app.view.soft_wrap
        assert any("Soft wrap stays on" in n.message for n in app._notifications)
    small = MorphApp(None, "short\nlines\n", Settings(), None)
    async with small.run_test(size=(80, 24)) as pilot:
        small.view.soft_wrap = False
        await pilot.pause()
        assert not small.view.soft_wrap
        small.view.insert(one_line(document_module.NO_WRAP_ROW + 10))  # a long line pasted in
        await pilot.pause()
        assert small.view.soft_wrap


async def test_a_long_line_is_analysed_around_the_cursor_and_says_so(tiny_lens, dirs):
    line = one_line(30_000, seed=7)
    app = MorphApp(None, line + "\n", Settings(debounce_ms=30, analysis_max_chars=4_000),
                   lambda _progress: Engine(tiny_lens))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.analysis is not None and app.status.state.state == "idle", timeout=60)
        assert app.analysis.text_length <= 4_000
        assert "large document: analysing" in str(app.status.render_state())
        assert len(app.view.overlay) > 0  # highlights in the long row, drawn section by section
        await pilot.press("ctrl+end")
        await pilot.press("x")
        await wait_for(pilot, lambda: app.analysis is not None and app.analysis_base > 20_000
                       and app.analysis.generation == app.generation, timeout=60)


@pytest.mark.parametrize("chars", [document_module.NO_WRAP_DOCUMENT + 1])
async def test_a_large_document_rewraps_only_the_rows_an_edit_touches(dirs, monkeypatch, chars):
    paragraph = one_line(400, seed=2) + "\n\n"
    text = paragraph * (chars // len(paragraph) + 1)
    app = MorphApp(None, text, Settings(), None)
    calls = []
    original = wrapping.wrap_offsets

    def counting(line, *args, **kwargs):
        calls.append(len(line))
        return original(line, *args, **kwargs)

    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        monkeypatch.setattr(wrapping, "wrap_offsets", counting)
        for key in ["ctrl+end", "up", "up", "a", "b", "enter", "c", "backspace", "backspace", "pagedown"]:
            await pilot.press(key)
        await pilot.pause()
        assert len(calls) <= 20  # the edited rows, not the document's 5,000
        await wait_for(pilot, lambda: app.status.state.words == len(app.view.text.split()))


def test_recovery_of_a_large_text_is_written_a_piece_at_a_time_as_one_json(dirs, monkeypatch):
    """save_recovery encodes the text in pieces (the UI thread gets the interpreter between them): the file is
    byte for byte json.dumps of the whole record."""
    import json

    import morph.recovery as recovery

    monkeypatch.setattr(recovery, "_PIECE", 7)
    text = 'a "quoted" line\\\n\x0b\u2028é中\U0001F600\udc80 end' * 5
    file = recovery.save_recovery(None, text, "s1")
    record = json.loads(file.read_bytes().decode("utf-8", "surrogatepass"))
    assert record["text"] == text
    assert file.read_bytes() == json.dumps(record, ensure_ascii=False).encode("utf-8", "surrogatepass")


async def test_autosave_takes_the_lines_and_joins_them_in_the_worker(dirs):
    from morph.recovery import load_recovery

    text = "first \x0b line\n" + one_line(50_000) + "\n\u2028last\n"
    app = MorphApp(None, text, Settings(autosave_seconds=0.5), None)
    async with app.run_test(size=(80, 24)) as pilot:
        snapshot = app.view.document.snapshot()
        await pilot.press("x")
        assert snapshot() == text  # as it was when taken
        assert app.view.document.snapshot()() == app.view.text == "x" + text
        await wait_for(pilot, lambda: (load_recovery(None, app.recovery_session) or None) is not None
                       and load_recovery(None, app.recovery_session).text == "x" + text)


async def test_the_columns_to_the_next_tab_stop_are_textuals(dirs):
    """TextArea measures the row before the cursor on every key (for Tab); DocumentView only what follows the
    last tab: the same answer, for plain, tabbed and wide text."""
    from textual.widgets import TextArea

    rows = ["plain words here", "a\ttab\tand more", "\t\tdeep", "中文 wide\tthen", "x" * 3_000]
    app = MorphApp(None, "\n".join(rows) + "\n", Settings(), None)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        view = app.view
        for row, line in enumerate(rows):
            for column in range(0, len(line) + 1, max(1, len(line) // 40)):
                view.move_cursor((row, column))
                assert view._find_columns_to_next_tab_stop() == TextArea._find_columns_to_next_tab_stop(view)
