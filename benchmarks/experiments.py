"""Proposed fixes, emulated inside the benchmark process only, to measure what they would buy.

Nothing here is on by default; each is switched on by an environment variable and recorded in the
results' details, so a figure measured with one is never mistaken for the product's.

- MORPH_BENCH_GC_FREEZE=1: `gc.freeze()` once the model is loaded (see keystroke.py).
- MORPH_BENCH_LINE_CACHE=1: DocumentView caches each rendered line by what the line shows. Textual's
  TextArea clears its line cache on every edit (`_build_highlight_map`) and, under soft wrap, keys it by
  the whole selection, so every keystroke re-renders every visible line, and a line with highlights
  costs about three times a plain one. A cache of DocumentView's own, keyed by (line, wrap section, its text, its highlight and Markdown spans, the selection/cursor
  only where they touch the line, ...), a keystroke re-renders only the lines it changed.
"""

from __future__ import annotations

import os


def active() -> dict[str, bool]:
    return {"gc_freeze": os.environ.get("MORPH_BENCH_GC_FREEZE") == "1",
            "line_cache": os.environ.get("MORPH_BENCH_LINE_CACHE") == "1"}


def install() -> None:
    if active()["line_cache"]:
        _install_line_cache()


def _install_line_cache() -> None:
    from morph.editor.document import DocumentView

    if getattr(DocumentView, "_bench_line_cache", False):
        return

    def content_key(self, y: int):
        scroll_x, scroll_y = self.scroll_offset
        wrapped = self.wrapped_document
        offset = y + scroll_y
        if offset >= wrapped.height or (not self.text and self.placeholder):
            return None
        try:
            info = wrapped._offset_to_line_info[offset]
        except IndexError:
            return None
        if info is None:
            return None
        row, section = info
        text = self.document[row]
        start = int(self.line_starts[row]) if row < len(self.line_starts) else 0
        overlay = tuple((a - start, b - start, slot, level)
                        for a, b, slot, level in self.overlay.between(start, start + len(text) + 1))
        markdown = tuple((a, b, str(style)) for a, b, style in self._markdown_line(row))
        selection = self.selection
        top, bottom = sorted(selection)
        touches = selection.start != selection.end and top[0] <= row <= bottom[0]
        on_cursor = selection.end[0] == row
        bracket = self._matching_bracket_location
        focus = self.focus_paragraph
        return ("morph-line", self.size, scroll_x, row, section, text, overlay, markdown,
                tuple(selection) if (touches or on_cursor) else None,
                (self._draw_cursor, self._cursor_visible, self.has_focus, self.suggestion) if on_cursor else None,
                bracket if bracket is not None and bracket[0] == row else None,
                None if focus is None else (focus[0] <= start <= focus[1]),
                self.theme, self.soft_wrap, self.show_line_numbers, self.gutter_width, self.read_only,
                self.show_cursor, self.document.line_count if self.show_line_numbers else None)

    def render_line(self, y: int):
        key = content_key(self, y)
        if key is None:
            return DocumentView.__mro__[1].render_line(self, y)
        cache = self.__dict__.get("_bench_lines")
        if cache is None:
            from textual.cache import LRUCache

            cache = self.__dict__["_bench_lines"] = LRUCache(2048)
        cached = cache.get(key)
        if cached is not None:
            return cached
        strip = self._render_line(y)
        cache[key] = strip
        return strip

    original_get_line = DocumentView.get_line

    def get_line(self, line_index: int):
        # A wrapped paragraph is one document line drawn as several visual lines, and TextArea calls
        # get_line (the full paragraph, styled) once per visual line: style it once, hand out copies.
        start = int(self.line_starts[line_index]) if line_index < len(self.line_starts) else 0
        text = self.document[line_index] if line_index < self.document.line_count else ""
        key = (line_index, text, id(self.overlay), len(self.overlay), self._markdown_by_line is None,
               self.focus_paragraph, start)
        memo = self.__dict__.get("_bench_styled")
        if memo is not None and memo[0] == key:
            return memo[1].copy()
        line = original_get_line(self, line_index)
        self.__dict__["_bench_styled"] = (key, line.copy())
        return line

    DocumentView.render_line = render_line
    DocumentView.get_line = get_line
    DocumentView._bench_line_cache = True
