"""Soft wrapping whose cost follows the edit and the screen, not the document or the line.

Textual's WrappedDocument wraps a line with a Python loop over its words, rewraps the whole edited line on
every keystroke, keeps one Python list per line of screen-line numbers that it renumbers for every line below
an edit that changes the document's height, recomputes the height by summing over all lines, and cuts the
whole line into sections to find the cursor's column. Opening a 50 MB file took 2-3 minutes (five full wraps),
and a keystroke in a 5 MB line took tens of seconds.

`LineWrap` gives the same wrap (the same break positions as Textual's compute_wrap_offsets: property tests in
tests/test_wrapping.py) at the cost of:
- a regular expression per screen line instead of Python per word, for lines of one-cell characters without
  tabs (nearly all prose; the others go through Textual's function);
- an edit rewraps its line from a screen line before the edit only until the new breaks fall in step with the
  old ones (the wrap from a line start depends only on the text after it), so typing in a 5 MB line costs a
  few screen lines;
- screen-line numbers held as one numpy array of each line's first screen line: an edit replaces the heights
  of the lines it touched and sums them again (C speed), and looking up a screen line is a binary search;
- a full wrap for a width it already has (Textual asks for one on every resize, focus of the gutter, load...)
  is skipped when the lines are those it wrapped.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from functools import lru_cache
from itertools import accumulate
from typing import Any

import numpy as np
from textual._cells import cell_len, cell_width_to_column_index
from textual._wrap import compute_wrap_offsets
from textual.document._wrapped_document import WrappedDocument
from textual.expand_tabs import expand_tabs_inline, get_tab_widths
from textual.geometry import Offset

from morph.features.tokens import common_prefix, common_suffix

# Characters that are one cell wide (rich's table, checked in tests/test_wrapping.py): Latin, Greek, Cyrillic,
# general punctuation (quotes, dashes), currency, and the stand-ins morph.editor.linebreaks draws controls as.
_ONE_CELL = re.compile(
    "[\x20-\x7e\xa0-\u02ff\u0370-\u0482\u048a-\u052f\u2010-\u2027\u2030-\u205e\u20a0-\u20c0"
    "\U0010ff00-\U0010ff60]*"
)
INCREMENTAL_FROM = 2_000  # lines at least this long are rewrapped around the edit only
_NO_TABS: list[int] = [0]  # Textual's tab widths of a line without tabs (shared, never changed)


@lru_cache(maxsize=8)
def _line_pattern(width: int) -> re.Pattern[str]:
    """One screen line of one-cell text from a line start: as many whole chunks (a word and the spaces after
    it, Textual's unit) as fit in `width`, else, when the chunk at the start alone is wider, `width` characters
    of it (Textual folds such a word)."""
    return re.compile(r"(?s).{1,%d}(?:(?<=\s)(?=\S)|\Z)|.{%d}" % (width, width))


def one_cell(line: str) -> bool:
    """Whether every character of `line` is one cell wide, and none is a tab (see _ONE_CELL)."""
    if line.isascii():
        return line.isprintable()
    return _ONE_CELL.fullmatch(line) is not None


def wrap_offsets(line: str, width: int, tab_width: int, simple: bool | None = None) -> list[int]:
    """Where `line` breaks at `width` cells: Textual's compute_wrap_offsets, faster for most lines.
    `simple`: one_cell(line), when known."""
    if not width or not line:
        return []
    if simple is None:
        simple = one_cell(line)
    if not simple:
        return compute_wrap_offsets(line, width, tab_width, precomputed_tab_sections=get_tab_widths(line, tab_width))
    if len(line) <= width:
        return []
    ends = list(accumulate(map(len, _line_pattern(width).findall(line))))  # (no Python per screen line)
    ends.pop()  # the last screen line ends at the end of the line
    return ends


def _breaks_from(line: str, start: int, width: int, tab_width: int, simple: bool):
    """The breaks after `start`, a line start, in order (lazily: the caller stops when it has what it needs).
    Only for lines without tabs, whose wrap from a line start depends on the text after it alone."""
    if simple:
        end = len(line)
        for match in _line_pattern(width).finditer(line, start):
            if match.end() == end:
                return
            yield match.end()
        return
    size = max(4096, 64 * width)
    while start < len(line):
        piece = line[start:start + size]
        found = compute_wrap_offsets(piece, width, tab_width)
        yield from (start + b for b in found)  # each is a real break: a cut-off chunk only fits more easily
        if start + size >= len(line):
            return
        if found:
            start += found[-1]
        else:
            size *= 2  # a screen line longer than the piece (zero-width characters)


_CHUNK_REST = re.compile(r"\S*\s*")


def rewrap_line(old_line: str, new_line: str, old: list[int], width: int, tab_width: int,
                old_simple: bool, hint: tuple[int, int, int] | None = None,
                trusted: bool = False) -> tuple[list[int], bool]:
    """The breaks of `new_line`, an edit of `old_line` whose breaks were `old`, recomputed around the edit, and
    one_cell(new_line) (`old_simple`: one_cell(old_line)). `hint`: (first, old_end, new_end), where the edit is
    thought to be: old [first, old_end) became new [first, new_end); checked (unless `trusted`: the range of a
    single edit), else found."""
    n = min(len(old_line), len(new_line))
    first = old_end = new_end = -1
    if hint is not None:
        first, old_end, new_end = hint
        if not (0 <= first <= min(old_end, new_end) and len(old_line) - old_end == len(new_line) - new_end >= 0
                and (trusted or (old_line[:first] == new_line[:first] and old_line[old_end:] == new_line[new_end:]))):
            first = -1
    if first < 0:
        first = common_prefix(old_line, new_line, n)  # the edit: old [first, old_end) became new [first, new_end)
        tail = common_suffix(old_line, new_line, n - first)
        old_end, new_end = len(old_line) - tail, len(new_line) - tail
    simple = old_simple and one_cell(new_line[first:new_end])
    if width < 2 or (not simple and ("\t" in new_line or "\t" in old_line)):  # (a 2-cell character folds oddly at 1)
        return wrap_offsets(new_line, width, tab_width, simple), simple
    shift = new_end - old_end
    # Restart at the last break before the edit whose chunk (Textual's wrap decides by whole chunks) ends before
    # it: every break up to there, and the line start there, stay as they were.
    i = bisect_right(old, first) - 1
    while i >= 0:
        match = _CHUNK_REST.match(new_line, old[i], first)
        if match.end() < first:
            break
        i -= 1
    start = old[i] if i >= 0 else 0
    result = old[:i + 1]
    for b in _breaks_from(new_line, start, width, tab_width, simple):
        result.append(b)
        if b >= new_end:  # from here on the text is the old text, shifted: in step if b was an old break
            j = bisect_left(old, b - shift)
            if j < len(old) and old[j] == b - shift:
                result.extend(map(shift.__add__, old[j + 1:]))  # (C speed: a 5 MB line has 70,000 breaks)
                return result, simple
    return result, simple


class _ScreenLines:
    """Screen line y -> (line index, section), as Textual's `_offset_to_line_info` list, from the first screen
    line of each line."""

    def __init__(self, tops: np.ndarray) -> None:
        self._tops = tops

    def __len__(self) -> int:
        return int(self._tops[-1])

    def __getitem__(self, y: Any) -> Any:
        if isinstance(y, slice):
            return [self[i] for i in range(*y.indices(len(self)))]
        n = len(self)
        if y < 0:
            y += n
        if not 0 <= y < n:
            raise IndexError(y)
        row = int(np.searchsorted(self._tops, y, side="right")) - 1
        return row, y - int(self._tops[row])


class _LineScreenLines:
    """Line index -> the range of its screen lines, as Textual's `_line_index_to_offsets` list."""

    def __init__(self, tops: np.ndarray) -> None:
        self._tops = tops

    def __len__(self) -> int:
        return len(self._tops) - 1

    def __getitem__(self, row: Any) -> Any:
        if isinstance(row, slice):
            return [self[i] for i in range(*row.indices(len(self)))]
        n = len(self)
        if row < 0:
            row += n
        if not 0 <= row < n:
            raise IndexError(row)
        return range(int(self._tops[row]), int(self._tops[row + 1]))


class _Sections:
    """A line's sections (its screen lines' text), as Textual's `get_sections` list, cut only when asked."""

    def __init__(self, line: str, offsets: list[int]) -> None:
        self._line = line
        self._offsets = offsets

    def __len__(self) -> int:
        return len(self._offsets) + 1

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(i)
        offsets = self._offsets
        return self._line[offsets[i - 1] if i else 0:offsets[i] if i < len(offsets) else len(self._line)]


class LineWrap(WrappedDocument):
    """Textual's WrappedDocument with the costs of the module docstring."""

    def __init__(self, document: Any, width: int = 0, tab_width: int = 4) -> None:
        # WrappedDocument.__init__ sets its lists and wraps; this class keeps its own structures.
        self.document = document
        self._width = width
        self._tab_width = tab_width
        self._wrap_offsets: list[list[int]] = []
        self._tab_width_cache: list[list[int]] = []
        self._simple: list[bool] = []  # one_cell() of each line
        self._tops = np.zeros(1, dtype=np.int64)  # first screen line of each line, and the total at the end
        self._wrapped_lines: list[str] | None = None  # the lines as last wrapped
        self.single_edit = False  # set while TextArea.edit runs: wrap_range's range is that of one edit, exactly
        self.wrap(width, tab_width)

    # --- Textual's structures, as views ----------------------------------------------------------
    @property
    def _offset_to_line_info(self) -> _ScreenLines:  # type: ignore[override]
        return _ScreenLines(self._tops)

    @_offset_to_line_info.setter
    def _offset_to_line_info(self, _value: Any) -> None:
        pass  # derived from _tops

    @property
    def _line_index_to_offsets(self) -> _LineScreenLines:  # type: ignore[override]
        return _LineScreenLines(self._tops)

    @_line_index_to_offsets.setter
    def _line_index_to_offsets(self, _value: Any) -> None:
        pass

    @property
    def height(self) -> int:
        return int(self._tops[-1])

    def _set_heights(self, heights: np.ndarray) -> None:
        tops = np.zeros(len(heights) + 1, dtype=np.int64)
        np.cumsum(heights, out=tops[1:])
        self._tops = tops

    # --- wrapping ---------------------------------------------------------------------------------
    def _tabs(self, line: str) -> list[int]:
        if "\t" not in line:
            return _NO_TABS
        return [w for _, w in get_tab_widths(line, self._tab_width)]

    def wrap(self, width: int, tab_width: int | None = None) -> None:
        lines = self.document.lines
        if tab_width and tab_width != self._tab_width:
            self._tab_width = tab_width
            self._wrapped_lines = None
        same = self._wrapped_lines is not None and self._wrapped_lines == lines  # C speed: the same objects
        if same and width == self._width:
            return  # already wrapped at this width
        self._width = width
        if not width:  # not wrapped: one screen line a line (one_cell() is worked out at the first width)
            self._simple = self._simple if same else []
            offsets = [[] for _ in lines]
        else:
            if not same or len(self._simple) != len(lines):
                self._simple = [one_cell(line) for line in lines]
            offsets = [wrap_offsets(line, width, self._tab_width, s) for line, s in zip(lines, self._simple)]
        self._wrap_offsets = offsets
        self._tab_width_cache = [self._tabs(line) for line in lines]
        self._set_heights(np.fromiter(map(len, offsets), dtype=np.int64, count=len(offsets)) + 1)
        self._wrapped_lines = list(lines)

    def wrap_range(self, start: Any, old_end: Any, new_end: Any) -> None:
        lines = self.document.lines
        old_rows = len(self._wrap_offsets)
        if self._wrapped_lines is None or len(self._wrapped_lines) != old_rows:
            self._wrapped_lines = None
            self.wrap(self._width)
            return
        top = max(0, min(start[0], old_rows - 1, len(lines) - 1))
        old_bottom = max(top, min(max(start[0], old_end[0]), old_rows - 1))
        new_bottom = max(top, min(max(start[0], new_end[0]), len(lines) - 1))
        if len(lines) - old_rows != new_bottom - old_bottom:  # the range given does not match the change
            self._wrapped_lines = None
            self.wrap(self._width)
            return
        width, tab_width = self._width, self._tab_width
        new_lines = lines[top:new_bottom + 1]
        known = len(self._simple) == old_rows  # one_cell() of each line (not worked out while not wrapped)
        if not width:
            offsets, simples = [[] for _ in new_lines], None
        elif known and top == old_bottom == new_bottom and len(new_lines[0]) >= INCREMENTAL_FROM:
            breaks, simple = rewrap_line(self._wrapped_lines[top], new_lines[0], self._wrap_offsets[top], width,
                                         tab_width, self._simple[top], (start[1], old_end[1], new_end[1]),
                                         trusted=self.single_edit)
            offsets, simples = [breaks], [simple]
        else:
            simples = [one_cell(line) for line in new_lines]
            offsets = [wrap_offsets(line, width, tab_width, s) for line, s in zip(new_lines, simples)]
        if known:
            self._simple[top:old_bottom + 1] = simples if simples is not None else [one_cell(x) for x in new_lines]
        self._wrap_offsets[top:old_bottom + 1] = offsets
        self._tab_width_cache[top:old_bottom + 1] = [self._tabs(line) for line in new_lines]
        self._wrapped_lines[top:old_bottom + 1] = new_lines
        tops = self._tops
        ends = tops[top] + np.cumsum(np.fromiter(map(len, offsets), dtype=np.int64, count=len(offsets)) + 1)
        shift = int(ends[-1] - tops[old_bottom + 1])  # screen lines gained below the edit
        if new_bottom == old_bottom:  # (typing) in place: no copy of a 50 MB document's 700,000 screen lines
            tops[top + 1:new_bottom + 2] = ends
            if shift:
                tops[new_bottom + 2:] += shift
        else:
            self._tops = np.concatenate((tops[:top + 1], ends, tops[old_bottom + 2:] + shift))

    def one_cell_line(self, row: int) -> bool:
        """Whether line `row` is known to hold one-cell characters only, and no tab."""
        return row < len(self._simple) and self._simple[row]

    # --- lookups, by the section concerned instead of all of the line's ------------------------------
    def get_sections(self, line_index: int) -> _Sections:  # type: ignore[override]
        return _Sections(self.document[line_index], self._wrap_offsets[line_index])

    def location_to_offset(self, location: Any) -> Offset:
        line_index, column = location
        line_index = max(0, min(line_index, len(self._wrap_offsets) - 1))
        offsets = self._wrap_offsets[line_index]
        section = bisect_right(offsets, column)
        start = offsets[section - 1] if section else 0
        text = self.document[line_index]
        end = offsets[section] if section < len(offsets) else len(text)
        x = cell_len(expand_tabs_inline(text[start:end][:column - start], self._tab_width))
        return Offset(x, int(self._tops[line_index]) + section)

    def get_target_document_column(self, line_index: int, x_offset: int, y_offset: int) -> int:
        offsets = self._wrap_offsets[line_index]
        sections = len(offsets) + 1
        if y_offset < 0:
            y_offset += sections
        y_offset = max(0, min(y_offset, sections - 1))
        text = self.document[line_index]
        start = offsets[y_offset - 1] if y_offset else 0
        end = offsets[y_offset] if y_offset < len(offsets) else len(text)
        section = text[start:end]
        column = start + cell_width_to_column_index(section, x_offset, self._tab_width)
        if y_offset != sections - 1:
            column = min(column, start + len(section) - 1)
        return column
