"""Soft wrapping (morph.editor.wrapping): the same breaks as Textual's compute_wrap_offsets, an edit's rewrap
equal to a full wrap, and Textual's structures (screen lines, sections, cursor offsets) as Textual computes them."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.cells import get_character_cell_size
from textual._wrap import compute_wrap_offsets
from textual.document._document import Document
from textual.document._wrapped_document import WrappedDocument
from textual.expand_tabs import get_tab_widths

from morph.editor.wrapping import _ONE_CELL, LineWrap, one_cell, rewrap_line, wrap_offsets

ALPHABET = ["a", "b", "word", "Holmes", " ", " ", "  ", "\xa0", ".", "—", "“", "é", "x" * 30, "中", "\t", "\u0301"]


def textual(line: str, width: int) -> list[int]:
    return compute_wrap_offsets(line, width, 4, precomputed_tab_sections=get_tab_widths(line, 4)) if width else []


def random_line(rng: random.Random, n: int, plain: bool = False) -> str:
    parts = ALPHABET[:13] if plain else ALPHABET
    return "".join(rng.choice(parts) for _ in range(n))


def test_one_cell_characters_are_one_cell():
    pattern = _ONE_CELL.pattern[1:-2]  # the character class
    import re

    cls = re.compile(pattern)
    wide = [c for c in map(chr, range(0x20, 0x110000)) if cls.fullmatch(c) and get_character_cell_size(c) != 1]
    assert wide == []
    assert not one_cell("a\tb") and not one_cell("中") and not one_cell("e\u0301") and one_cell("“naïve” — ok")


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(0, 120), width=st.integers(0, 40))
def test_same_breaks_as_textual(seed, n, width):
    line = random_line(random.Random(seed), n)
    assert wrap_offsets(line, width, 4) == textual(line, width)


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 10**6), width=st.integers(1, 30), plain=st.booleans())
def test_rewrap_after_an_edit_equals_a_full_wrap(seed, width, plain):
    rng = random.Random(seed)
    old_line = random_line(rng, rng.randint(0, 400), plain=plain)
    a = rng.randint(0, len(old_line))
    b = rng.randint(a, min(len(old_line), a + rng.choice([0, 1, 1, 5, 50])))
    new_line = old_line[:a] + random_line(rng, rng.choice([0, 1, 1, 2, 10]), plain=plain) + old_line[b:]
    old = wrap_offsets(old_line, width, 4)
    breaks, simple = rewrap_line(old_line, new_line, old, width, 4, one_cell(old_line))
    assert breaks == textual(new_line, width)
    assert not simple or one_cell(new_line)


def test_long_line_structures_match_textual():
    rng = random.Random(5)
    lines = [random_line(rng, rng.choice([0, 3, 40, 800]), plain=True) for _ in range(20)]
    ours = LineWrap(Document("\n".join(lines)), 37)
    theirs = WrappedDocument(Document("\n".join(lines)), 37)
    assert ours._wrap_offsets == theirs._wrap_offsets and ours.height == theirs.height
    assert list(ours._offset_to_line_info[0:ours.height]) == theirs._offset_to_line_info
    assert [list(r) for r in ours._line_index_to_offsets[0:len(lines)]] == theirs._line_index_to_offsets
    assert ours._offset_to_line_info[-1] == theirs._offset_to_line_info[-1]
    for row in range(len(lines)):
        assert list(ours.get_sections(row)) == theirs.get_sections(row)
        for column in range(0, len(lines[row]) + 1, 13):
            assert ours.location_to_offset((row, column)) == theirs.location_to_offset((row, column))
        for section in range(-1, len(theirs.get_sections(row))):
            for x in (0, 5, 36):
                assert (ours.get_target_document_column(row, x, section)
                        == theirs.get_target_document_column(row, x, section))


def test_edits_keep_the_structures_in_step():
    """Typing, deleting, joining and splitting lines: after each edit the wrap equals a fresh one."""
    rng = random.Random(9)
    doc = Document("\n".join(random_line(rng, rng.choice([5, 80, 2500]), plain=True) for _ in range(12)))
    wrapped = LineWrap(doc, 23)
    for _ in range(200):
        row = rng.randrange(doc.line_count)
        col = rng.randint(0, len(doc[row]))
        kind = rng.random()
        if kind < 0.5:
            start, end, text = (row, col), (row, col), rng.choice(["a", " ", "word ", "x" * 30])
        elif kind < 0.8:
            start, end, text = (row, max(0, col - 3)), (row, col), ""
        elif kind < 0.9:
            start, end, text = (row, col), (row, col), "\n"
        else:
            end_row = min(doc.line_count - 1, row + 1)
            start, end, text = (row, col), (end_row, min(3, len(doc[end_row]))), ""
        result = doc.replace_range(start, end, text)
        wrapped.wrap_range(start, end, result.end_location)
        fresh = WrappedDocument(Document(doc.text), 23)
        assert wrapped._wrap_offsets == fresh._wrap_offsets
        assert wrapped.height == fresh.height
        assert [list(r) for r in wrapped._line_index_to_offsets[0:doc.line_count]] == fresh._line_index_to_offsets
