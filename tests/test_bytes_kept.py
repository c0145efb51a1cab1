"""A file is saved exactly as it was read, except where the writer edited it: VT, FF, FS, GS, RS, NEL, U+2028
and U+2029 stay what they are (Textual's Document made every one of them a line break on any save)."""

from __future__ import annotations

from pathlib import Path

import pytest

from morph.editor.document import DocumentView
from morph.editor.linebreaks import NewlineOnlyDocument, shown
from morph.textio import read_document, write_document
from tests.pilot import wait_for
from tests.test_app_files import open_app, settle

SEPARATORS = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
BODY = "".join(f"part {i}{sep}" for i, sep in enumerate(SEPARATORS)) + "end\n\nsecond paragraph\n"

pytestmark = pytest.mark.usefixtures("dirs")


@pytest.mark.parametrize("data", [
    BODY.encode(),
    b"\xef\xbb\xbf" + BODY.replace("\n", "\r\n").encode(),
    "only\u2028separators\u2029here\x85".encode(),
])
def test_textio_round_trip_keeps_every_separator(tmp_path: Path, data: bytes):
    path = tmp_path / "doc.txt"
    path.write_bytes(data)
    loaded = read_document(path)
    write_document(path, loaded.text, loaded)
    assert path.read_bytes() == data


def test_lines_break_at_newline_only():
    document = NewlineOnlyDocument(BODY)
    assert document.line_count == 4
    assert document.text == BODY
    document.replace_range((2, 0), (2, 0), "a\u2028b\x0bc\r\nd")  # pasted: CRLF still breaks, the rest does not
    assert document.line_count == 5
    assert document.get_text_range((2, 0), (4, 0)) == "a\u2028b\x0bc\ndsecond paragraph\n"
    assert document.text == BODY.replace("second", "a\u2028b\x0bc\ndsecond")


def test_controls_are_held_as_one_cell_stand_ins_and_drawn_as_pictures():
    """Textual measures a line by what the document holds: one cell per control, as it is drawn."""
    from textual._cells import cell_len

    line = BODY.split("\n")[0]
    document = NewlineOnlyDocument(BODY)
    held = document.get_line(0)
    assert len(held) == len(line) and cell_len(held) == len(line)
    drawn = shown(held)
    assert cell_len(drawn) == len(drawn) == len(line)
    assert not set(SEPARATORS) & set(drawn)
    assert "\u240b" in drawn and "\u240c" in drawn and "\u2424" in drawn  # VT, FF, NEL pictures
    assert shown("tab\tstays") == "tab\tstays"
    assert shown("esc\x1b[2J") == "esc\u241b[2J"  # never sent to the terminal as an escape sequence


@pytest.mark.parametrize("when", ["in the file", "pasted"])
def test_a_text_holding_the_stand_ins_own_characters_is_kept_exactly(when):
    from morph.editor.linebreaks import _STAND_IN_BASE

    odd = f"private {chr(_STAND_IN_BASE + 9)} use"
    text = f"vt\x0bhere\n{odd}\n" if when == "in the file" else "vt\x0bhere\n"
    document = NewlineOnlyDocument(text)
    if when == "pasted":
        document.replace_range(document.end, document.end, odd + "\n")
    assert document.text == f"vt\x0bhere\n{odd}\n"
    document.replace_range((0, 0), (0, 0), "x\x0c")
    assert document.text == f"x\x0cvt\x0bhere\n{odd}\n"


async def test_save_without_an_edit_is_byte_for_byte(dirs):
    path = dirs / "seps.txt"
    data = BODY.encode()
    path.write_bytes(data)
    app = open_app(path)
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot, app)
        view = app.query_one(DocumentView)
        assert view.document.line_count == 4
        assert "\u240b" in view.get_line(0).plain
        view.select_all()
        assert view.selected_text == BODY  # what is copied is the writer's text
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "saved seps.txt" in "\n".join(str(n.message) for n in app._notifications))
    assert path.read_bytes() == data


async def test_save_after_edits_elsewhere_keeps_the_rest_byte_for_byte(dirs):
    path = dirs / "seps.md"
    data = b"\xef\xbb\xbf" + BODY.replace("\n", "\r\n").encode()
    path.write_bytes(data)
    app = open_app(path)
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot, app)
        await pilot.press("X")
        view = app.query_one(DocumentView)
        view.move_cursor(view.document.end)
        await pilot.press(*"tail", "ctrl+s")
        await wait_for(pilot, lambda: not app.modified)
    expected = b"\xef\xbb\xbfX" + BODY.replace("\n", "\r\n").encode() + b"tail"
    assert path.read_bytes() == expected


async def test_an_edit_next_to_a_separator_keeps_it(dirs):
    path = dirs / "line.txt"
    path.write_bytes("one\u2028two\n".encode())
    app = open_app(path)
    async with app.run_test(size=(100, 24)) as pilot:
        await settle(pilot, app)
        view = app.query_one(DocumentView)
        view.move_cursor((0, 3))
        await pilot.press("!", "right", "?")  # before the separator, then after it
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not app.modified)
    assert path.read_bytes() == "one!\u2028?two\n".encode()


async def test_a_line_with_controls_wraps_and_draws_every_character(dirs):
    """What is drawn is as wide as what Textual measured: the end of a line with controls is not cut off."""
    path = dirs / "wrap.txt"
    line = "".join(f"w{i}{sep}" for i, sep in enumerate(SEPARATORS * 3)) + "END"
    path.write_bytes((line + "\n").encode())
    app = open_app(path)
    async with app.run_test(size=(70, 24)) as pilot:
        await settle(pilot, app)
        view = app.query_one(DocumentView)
        width = view.content_region.width
        rows = [view.render_line(y).text for y in range(view.size.height)]
        drawn = "".join(row.rstrip() for row in rows if row.strip())
        assert drawn == shown(line)
        assert all(len(row.rstrip()) <= width for row in rows)
