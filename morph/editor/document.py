"""The writing surface: a TextArea that paints feature highlights and Markdown styling over the text."""

from __future__ import annotations

from typing import Callable

import numpy as np
from rich.color import Color, blend_rgb
from rich.style import Style
from rich.text import Text
from textual.document._edit import Edit
from textual.message import Message
from textual.widgets import TextArea

from morph.editor.overlay import LEVELS, Overlay

MarkdownSpans = Callable[[str], list]


class DocumentView(TextArea):
    """TextArea plus two layers drawn in `get_line`: Markdown styles and feature highlights."""

    class Scrolled(Message):
        """The lines in view changed: the features in view may have too."""

    DEFAULT_CSS = """
    DocumentView { border: none; padding: 0 1; }
    DocumentView:focus { border: none; }
    """

    def __init__(self, text: str = "", **kwargs) -> None:
        super().__init__(text, soft_wrap=True, tab_behavior="indent", **kwargs)
        self.overlay = Overlay.empty()
        self._span_styles: list[list[Style]] = []
        self._markdown_styles: dict[str, Style] = {}
        self._markdown_fn: MarkdownSpans | None = None
        self._markdown_by_line: dict[int, list[tuple[int, int, Style]]] | None = None
        self._line_starts: np.ndarray | None = None
        self.focus_paragraph: tuple[int, int] | None = None  # focus mode: dim all but this span
        self._dim_style = Style(dim=True)

    # --- layers -------------------------------------------------------------------------------
    def set_palette(self, colours: list[str], background: str) -> None:
        base = Color.parse(background).get_truecolor()
        self._span_styles = []
        for colour in colours:
            rgb = Color.parse(colour).get_truecolor()
            levels = []
            for level in range(LEVELS):
                mix = 0.28 + 0.62 * (level + 1) / LEVELS
                levels.append(Style(bgcolor=Color.from_triplet(blend_rgb(base, rgb, mix)),
                                    color=Color.parse("#000000" if _light(blend_rgb(base, rgb, mix)) else "#ffffff")))
            self._span_styles.append(levels)
        self.repaint()

    def set_markdown(self, spans_fn: MarkdownSpans | None, styles: dict[str, str]) -> None:
        self._markdown_fn = spans_fn
        self._markdown_styles = {k: Style.parse(v) for k, v in styles.items() if v}
        self._markdown_by_line = None
        self.repaint()

    def set_overlay(self, overlay: Overlay) -> None:
        self.overlay = overlay
        self.repaint()

    def repaint(self) -> None:
        self._line_cache.clear()
        self.refresh()

    def watch_scroll_y(self, old: float, new: float) -> None:
        if int(old) != int(new):
            self.post_message(self.Scrolled())

    # --- offsets ------------------------------------------------------------------------------
    @property
    def line_starts(self) -> np.ndarray:
        if self._line_starts is None:
            lengths = np.fromiter((len(line) + 1 for line in self.document.lines), dtype=np.int64)
            self._line_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(lengths) else np.zeros(1, np.int64)
        return self._line_starts

    def offset_of(self, location: tuple[int, int]) -> int:
        row, column = location
        return int(self.line_starts[min(row, len(self.line_starts) - 1)]) + column

    def location_of(self, offset: int) -> tuple[int, int]:
        starts = self.line_starts
        row = int(np.searchsorted(starts, offset, side="right")) - 1
        row = max(0, min(row, len(starts) - 1))
        return row, max(0, min(offset - int(starts[row]), len(self.document[row])))

    @property
    def cursor_offset(self) -> int:
        return self.offset_of(self.cursor_location)

    @property
    def selection_offsets(self) -> tuple[int, int]:
        start, end = sorted((self.selection.start, self.selection.end))
        return self.offset_of(start), self.offset_of(end)

    def visible_offsets(self) -> tuple[int, int]:
        """Character range of the lines on screen."""
        top = self.scroll_offset.y
        height = max(1, self.size.height)
        try:
            first = self.wrapped_document._offset_to_line_info[top][0]
            last_y = min(top + height, len(self.wrapped_document._offset_to_line_info)) - 1
            last = self.wrapped_document._offset_to_line_info[last_y][0]
        except (IndexError, AttributeError):
            first, last = 0, self.document.line_count - 1
        end_row = min(last + 1, self.document.line_count - 1)
        return self.offset_of((first, 0)), self.offset_of((end_row, len(self.document[end_row])))

    # --- edits --------------------------------------------------------------------------------
    def edit(self, edit: Edit):
        top, bottom = sorted((edit.from_location, edit.to_location))
        start, old_end = self.offset_of(top), self.offset_of(bottom)
        result = super().edit(edit)
        self._line_starts = None
        self._markdown_by_line = None
        self.overlay.shift(start, old_end, start + len(edit.text))
        return result

    # Undo, redo and load_text change the document without passing through `edit`: forget the layers.
    def _forget_layers(self) -> None:
        self._line_starts = None
        self._markdown_by_line = None
        self.overlay = Overlay.empty()

    def _undo_batch(self, edits) -> None:
        super()._undo_batch(edits)
        self._forget_layers()

    def _redo_batch(self, edits) -> None:
        super()._redo_batch(edits)
        self._forget_layers()

    def load_text(self, text: str) -> None:
        super().load_text(text)
        self._forget_layers()

    # --- drawing ------------------------------------------------------------------------------
    def _markdown_line(self, index: int) -> list[tuple[int, int, Style]]:
        if self._markdown_fn is None:
            return []
        if self._markdown_by_line is None:
            by_line: dict[int, list[tuple[int, int, Style]]] = {}
            starts = self.line_starts
            for span in self._markdown_fn(self.text):
                style = self._markdown_styles.get(span.style_key)
                if style is None:
                    continue
                row = int(np.searchsorted(starts, span.start, side="right")) - 1
                while row < len(starts) and starts[row] < span.end:
                    line_start = int(starts[row])
                    a, b = max(span.start, line_start) - line_start, span.end - line_start
                    by_line.setdefault(row, []).append((a, min(b, len(self.document[row])), style))
                    row += 1
            self._markdown_by_line = by_line
        return self._markdown_by_line.get(index, [])

    def get_line(self, line_index: int) -> Text:
        line = super().get_line(line_index)
        if not line.plain:
            return line
        for a, b, style in self._markdown_line(line_index):
            line.stylize(style, a, b)
        start = int(self.line_starts[line_index]) if line_index < len(self.line_starts) else 0
        if self._span_styles and len(self.overlay):
            for a, b, slot, level in self.overlay.between(start, start + len(line.plain)):
                line.stylize(self._span_styles[slot % len(self._span_styles)][level], a - start, b - start)
        if self.focus_paragraph is not None:
            lo, hi = self.focus_paragraph
            if not (lo <= start <= hi):
                line.stylize(self._dim_style)
        return line


def _light(rgb) -> bool:
    r, g, b = rgb
    return 0.299 * r + 0.587 * g + 0.114 * b > 150
