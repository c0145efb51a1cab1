"""The writing surface: a TextArea that paints feature highlights and Markdown styling over the text.

Drawing is what a keystroke costs. Textual's TextArea empties its line cache on every edit and, under soft
wrap, keys it by the whole selection, and every cursor move repaints the whole widget: each keystroke
re-renders every visible line, and a highlighted line costs about three times a plain one. DocumentView
instead caches each screen line by what it shows (its text, its highlight and Markdown spans, the
selection and cursor only where they touch it), and repaints only the screen lines an edit or a cursor
move changed; everything else on screen comes from the cache.

Every change of the text (a typed edit, an undo, a redo, a load) is published once, as a `TextEdit` (where: start,
old end, new end as character offsets; the edit count after it; which kind), to the listeners `subscribe` adds:
the one stream of edits the host and the steering pane follow. `edit_count` is the one edit counter.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
from rich.color import Color, blend_rgb
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual._cells import cell_len
from textual.cache import LRUCache
from textual.document._edit import Edit
from textual.document._document_navigator import DocumentNavigator
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.strip import Strip
from textual.widgets import TextArea
from textual.widgets.text_area import EditResult, Location, Selection

from morph.editor.actions import bindings
from morph.editor.key_order import OwnKeysInOrder
from morph.editor.linebreaks import NewlineOnlyDocument, shown
from morph.editor.wrapping import LineWrap
from morph.features.highlights import LEVELS, Overlay

# Textual internals this module relies on (Textual's major version is pinned; tests/test_textual_internals.py
# fails when one of them disappears): TextArea members, and private modules imported above.
TEXTAREA_INTERNALS = ("_build_highlight_map", "_draw_cursor", "_line_cache", "_matching_bracket_location",
                      "_render_line", "_scroll_update")
PRIVATE_MODULES = ("textual.document._edit", "textual.document._document_navigator",
                   "textual.document._wrapped_document")

MarkdownSpans = Callable[[str], list]
# Screen lines kept: a few screenfuls. Each strip is ~30 objects the garbage collector walks on every full
# pass, so a bigger cache makes the rare full pass cost a keystroke more (4,096 lines: ~120 ms).
LINE_CACHE = 512
DRAWN_LINES = 1024  # screen lines whose drawn key is remembered (see _refresh_changed_lines)
# Rows at least this long are drawn a screen line at a time from their own section (_render_section):
# TextArea styles the whole row and cuts it at every break for each screen line it draws (a 1 MB row: ~5 s a
# keystroke, about 15,000 sections cut for each of the 30 lines on screen).
LONG_ROW = 2_000
# Unwrapped, a row is one screen line drawn whole, and TextArea measures every row after each edit to size the
# view: past these sizes soft wrap stays on (a 5 MB line took seconds a keystroke).
NO_WRAP_ROW = 10_000
NO_WRAP_DOCUMENT = 1_000_000

EditKind = Literal["edit", "undo", "redo", "load"]


@dataclass(frozen=True)
class TextEdit:
    """One change of the text: the old text[start:old_end] is now text[start:new_end]; `count` is the view's
    edit count after it. An undo or redo of several edits is one TextEdit covering them all; a load replaces
    the whole text (start 0)."""

    start: int
    old_end: int
    new_end: int
    count: int
    kind: EditKind


EditListener = Callable[[TextEdit], None]


def _compose(first: tuple[int, int, int] | None, then: tuple[int, int, int]) -> tuple[int, int, int]:
    """The one region (start, old end, new end) of two replacements made one after the other (`then` in the
    coordinates of the text `first` left): text past both regions' ends is unchanged by either."""
    if first is None:
        return then
    s1, o1, n1 = first
    a, b, c = then
    return min(s1, a), o1 + max(0, b - n1), c + max(0, n1 - b)


class DocumentView(OwnKeysInOrder, TextArea):
    """TextArea plus two layers drawn in `get_line`: Markdown styles and feature highlights."""

    class Scrolled(Message):
        """The lines in view changed: the features in view may have too."""

    BINDINGS = bindings("document")

    DEFAULT_CSS = """
    DocumentView { border: none; padding: 0 1; }
    DocumentView:focus { border: none; }
    """

    # TextArea repaints the whole widget on every selection change; DocumentView repaints the rows the
    # change touches (see _watch_selection).
    selection = reactive(Selection(), init=False, always_update=True, repaint=False)
    _in_edit = False  # inside edit(): see _refresh_size
    # Text changes made so far (edits, undos, redos, loads): the one edit counter. It moves with the text, before
    # any message about the change is handled (TextArea posts SelectionChanged before Changed for the same edit).
    edit_count = 0

    def __init__(self, text: str = "", **kwargs) -> None:
        # No current-line shading: TextArea paints it over the whole row after get_line, so it hid the
        # feature highlights on the very line being written.
        kwargs.setdefault("highlight_cursor_line", False)
        # TextArea.__init__ builds a Document and a WrappedDocument of the text, then _set_document builds them
        # again: given the text once, at the end (a 50 MB file: 6 s less to open).
        super().__init__("", soft_wrap=True, tab_behavior="indent", **kwargs)
        self.overlay = Overlay.empty()
        self._span_styles: list[list[Style]] = []
        self._markdown_styles: dict[str, Style] = {}
        self._markdown_fn: MarkdownSpans | None = None
        self._markdown_by_line: dict[int, list[tuple[int, int, Style]]] | None = None
        self._line_starts: np.ndarray | None = None
        self.focus_paragraph: tuple[int, int] | None = None  # focus mode: dim all but this span
        self._dim_style = Style(dim=True)
        self._lines: LRUCache[tuple, Strip] = LRUCache(LINE_CACHE)  # screen lines by what they show
        self._layers_version = 0  # bumped whenever the styling of any line may have changed
        self._row_layers: dict[int, tuple] = {}  # row -> its spans, for the current layers version
        self._drawn: dict[int, tuple] = {}  # screen line (document y) -> the key of what render_line drew there
        self._row_highlights: dict[int, tuple] = {}  # row -> its highlight spans (kept across edits of other rows)
        self._section: tuple[int, int, int] | None = None  # (row, start, end) of the screen line being drawn
        self._listeners: list[EditListener] = []
        self._region: tuple[int, int, int] | None = None  # the replacements of the change under way, as one
        if text:
            self._set_document(text, None)

    def validate_soft_wrap(self, soft_wrap: bool) -> bool:
        return soft_wrap or self._keep_wrapping()

    def _keep_wrapping(self, rows: range | None = None) -> bool:
        """Whether the document (or, after an edit, `rows`) is too large to leave unwrapped; says so if it is."""
        lines = self.document.lines
        longest = max(map(len, lines if rows is None else (lines[row] for row in rows)), default=0)
        chars = self.document.counts()[1] if isinstance(self.document, NewlineOnlyDocument) else 0
        if longest > NO_WRAP_ROW:
            reason = f"a line is {longest:,} characters long"
        elif chars > NO_WRAP_DOCUMENT:
            reason = f"the document is {chars:,} characters long"
        else:
            return False
        self.notify(f"Soft wrap stays on: {reason} (unwrapped, every keystroke would measure and draw all of it)",
                    title="Soft wrap", timeout=10)
        return True

    def _find_columns_to_next_tab_stop(self) -> int:
        """TextArea works this out on every key (to have it ready should the key be Tab): the cell width of the
        row before the cursor, expanded (a 5 MB line: ~30 ms a keystroke). Modulo the indent only the part after
        the last tab counts (a tab ends at a tab stop), and one-cell text is as wide as it is long."""
        row, column = self.cursor_location
        line = self.document[row]
        width = self.indent_width
        if not line:
            return width
        start = line.rfind("\t", 0, column) + 1
        wrap = self.wrapped_document
        simple = isinstance(wrap, LineWrap) and wrap.one_cell_line(row)
        before = column - start if simple else cell_len(line[start:column])
        return width - ((width + before) % width)

    def _watch_language(self, language: str | None) -> None:
        if language is not None:  # never in Morph: TextArea would rebuild the document for a language
            super()._watch_language(language)

    def action_cursor_document_start(self, select: bool = False) -> None:
        self.move_cursor((0, 0), select=select)

    def action_cursor_document_end(self, select: bool = False) -> None:
        self.move_cursor(self.document.end, select=select)

    def _set_document(self, text: str, language: str | None) -> None:
        """TextArea's, for plain text (Morph styles Markdown itself), on a NewlineOnlyDocument."""
        self._highlight_query = None
        self.document = NewlineOnlyDocument(text)
        self.document.replaced = self._replaced
        self._line_starts = None
        self.wrapped_document = LineWrap(self.document, tab_width=self.indent_width)
        self.navigator = DocumentNavigator(self.wrapped_document)
        self._build_highlight_map()
        self.move_cursor((0, 0))

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
        # New highlights mostly differ from the old ones in the edited paragraph: repaint only the rows
        # on screen whose spans changed (the line cache is keyed by them, so nothing needs clearing).
        before = self._layers_in_view()
        self.overlay = overlay
        self._highlights_changed()
        self._refresh_changed_rows(before)

    def _layers_in_view(self) -> dict[int, tuple]:
        """The spans of every row on screen (see _layers_of), to compare after a change."""
        info = self.wrapped_document._offset_to_line_info
        top = self.scroll_offset.y
        return {row: self._layers_of(row) for row in sorted({row for row, _ in info[top:top + self.size.height]})}

    def _refresh_changed_rows(self, before: dict[int, tuple]) -> None:
        for row, layers in before.items():
            if self._layers_of(row) != layers:
                self._refresh_rows(row, row)

    def repaint(self) -> None:
        """Draw every line again (palette, Markdown styles or focus changed)."""
        self._line_cache.clear()
        self._lines.clear()
        self._highlights_changed()
        self.refresh()

    def notify_style_update(self) -> None:
        self._lines.clear()
        self._highlights_changed()
        super().notify_style_update()

    def _layers_changed(self) -> None:
        self._layers_version += 1
        self._row_layers.clear()

    def _highlights_changed(self) -> None:
        self._row_highlights.clear()
        self._layers_changed()

    def _highlights_edited(self, first: int, last: int, delta: int) -> None:
        """Rows first..last were replaced by rows first..last + delta: the highlight spans of the rows
        around them are kept (relative to their row, an edit elsewhere does not move them), renumbered."""
        kept = self._row_highlights
        # a row next to the edit may hold a span that crossed into it: recompute those too
        self._row_highlights = {row if row < first else row + delta: spans for row, spans in kept.items()
                                if row < first - 1 or row > last + 1}
        self._layers_changed()

    def watch_scroll_y(self, old: float, new: float) -> None:
        if int(old) != int(new):
            self.post_message(self.Scrolled())

    # --- offsets ------------------------------------------------------------------------------
    @property
    def line_starts(self) -> np.ndarray:
        if self._line_starts is None:
            lines = self.document.lines
            starts = np.zeros(max(1, len(lines)), dtype=np.int64)
            if len(lines) > 1:
                np.cumsum(np.fromiter(map(len, lines), dtype=np.int64, count=len(lines) - 1) + 1, out=starts[1:])
            self._line_starts = starts
        return self._line_starts

    def _edit_line_starts(self, first: int, old_last: int, new_last: int) -> None:
        """Rows first..old_last became rows first..new_last: their starts worked out again, the later rows'
        shifted (C speed: an edit near the top of a 50 MB document no longer walks every row in Python)."""
        starts = self._line_starts
        if starts is None:
            return
        lines = self.document.lines
        lengths = np.fromiter((len(lines[row]) + 1 for row in range(first, new_last + 1)), dtype=np.int64)
        ends = starts[first] + np.cumsum(lengths)  # the starts of rows first + 1 .. new_last + 1
        shift = int(ends[-1] - starts[old_last + 1]) if old_last + 1 < len(starts) else 0
        if new_last == old_last:  # (typing) in place
            starts[first + 1:new_last + 1] = ends[:-1]
            if shift:
                starts[new_last + 1:] += shift
        else:
            self._line_starts = np.concatenate((starts[:first + 1], ends[:-1], starts[old_last + 1:] + shift))

    def offset_of(self, location: tuple[int, int]) -> int:
        """The character offset of (row, column): the editor's one conversion (with location_of)."""
        row, column = location
        return int(self.line_starts[min(row, len(self.line_starts) - 1)]) + column

    def location_of(self, offset: int) -> tuple[int, int]:
        """The (row, column) of a character offset, clamped to the text."""
        starts = self.line_starts
        row = int(np.searchsorted(starts, offset, side="right")) - 1
        row = max(0, min(row, len(starts) - 1))
        return row, max(0, min(offset - int(starts[row]), len(self.document[row])))

    def text_between(self, start: int, end: int) -> str:
        """`text[start:end]`, from the rows concerned (`text` joins every row: ~50 ms for 50 MB)."""
        if end <= start:
            return ""
        return self.document.get_text_range(self.location_of(start), self.location_of(end))

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
    def subscribe(self, listener: EditListener) -> Callable[[], None]:
        """Call `listener` with every TextEdit from now on (inside the change, once the text has changed);
        returns the call that unsubscribes it."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def replace_span(self, start: int, end: int, text: str) -> EditResult:
        """Replace text[start:end] with `text` as one undo step of its own (the history batch is closed before
        and after it), the selection left where TextArea.replace leaves it."""
        self.history.checkpoint()
        result = self.replace(text, self.location_of(start), self.location_of(end), maintain_selection_offset=False)
        self.history.checkpoint()
        return result

    def _replaced(self, top: Location, bottom: Location, result: EditResult) -> None:
        """The document replaced rows top..bottom (every edit, undo and redo step passes here): the line starts
        follow, and the replacement joins the region of the change under way. The rows before `top` did not
        move, so top's offset is the same before and after."""
        self._edit_line_starts(top[0], bottom[0], result.end_location[0])
        start = self.offset_of(top)
        self._region = _compose(self._region, (start, start + len(result.replaced_text),
                                               self.offset_of(result.end_location)))

    def _publish(self, kind: EditKind) -> TextEdit | None:
        """Count the change just made and tell the listeners (nothing changed, as in an undo with nothing to
        undo: nothing is counted or told)."""
        region, self._region = self._region, None
        if region is None:
            return None
        self.edit_count += 1
        change = TextEdit(*region, count=self.edit_count, kind=kind)
        for listener in tuple(self._listeners):
            listener(change)
        return change

    def edit(self, edit: Edit):
        top, bottom = sorted((edit.from_location, edit.to_location))
        height = self.wrapped_document.height
        rows = self.document.line_count
        before = self._layers_in_view() if self.is_mounted else {}
        self._in_edit = True
        self._region = None
        wrap = self.wrapped_document
        single = isinstance(wrap, LineWrap)
        if single:
            wrap.single_edit = True  # the range TextArea gives wrap_range is this edit's own
        try:
            result = super().edit(edit)
        finally:
            self._in_edit = False
            if single:
                wrap.single_edit = False
        region = self._region
        if not self.soft_wrap and self._keep_wrapping(range(top[0], result.end_location[0] + 1)):
            self.soft_wrap = True
        self._markdown_by_line = None
        if region is not None:
            self.overlay.shift(*region)
        self._highlights_edited(top[0], bottom[0], result.end_location[0] - bottom[0])
        if self.wrapped_document.height != height or self.document.line_count != rows:
            self._refresh_rows(edit.top[0], None)  # lines below moved: repaint down to the bottom
        else:
            self._refresh_rows(edit.top[0], result.end_location[0])
            # Markdown state carries across lines: typing ``` restyles every row below it
            self._refresh_changed_rows(before)
        self._publish("edit")
        return result

    def _refresh_size(self) -> None:
        # TextArea sets `virtual_size`, a reactive that lays out the whole screen when it changes: every
        # keystroke that made a paragraph one screen line longer or shorter re-rendered every widget (the
        # slowest keystrokes, with or without analysis). The view's own size does not depend on its
        # content, so after an edit only the scrollbar needs updating (a scrollbar appearing or going
        # still lays out, through show_vertical_scrollbar); edit() repaints the rows that moved.
        size = Size(0, self.wrapped_document.height)
        if not (self._in_edit and self.soft_wrap and self.is_mounted) or size == self.virtual_size:
            super()._refresh_size()
            return
        self.set_reactive(DocumentView.virtual_size, size)
        self._scroll_update(size)

    def _rewrap_and_refresh_virtual_size(self) -> None:
        # A resize or a wrap setting rewraps every paragraph, but TextArea repaints only when the document's
        # height changes: a terminal one column wider kept showing lines wrapped for the old width.
        super()._rewrap_and_refresh_virtual_size()
        self.refresh()

    # An undo or redo may span many rows and a load replaces everything: the layers are forgotten.
    def _forget_layers(self) -> None:
        self._markdown_by_line = None
        self.overlay = Overlay.empty()
        self._highlights_changed()
        self.refresh()

    def _undo_batch(self, edits) -> None:
        self._region = None
        super()._undo_batch(edits)
        self._forget_layers()
        self._publish("undo")

    def _redo_batch(self, edits) -> None:
        self._region = None
        super()._redo_batch(edits)
        self._forget_layers()
        self._publish("redo")

    def load_text(self, text: str) -> None:
        lines = self.document.lines
        old_length = sum(map(len, lines)) + len(lines) - 1
        super().load_text(text)
        self._forget_layers()
        self._region = (0, old_length, len(text))
        self._publish("load")
        if not self.soft_wrap and self._keep_wrapping():
            self.soft_wrap = True

    # --- repainting -------------------------------------------------------------------------
    def _watch_selection(self, previous: Selection, selection: Selection) -> None:
        super()._watch_selection(previous, selection)
        if not self.is_mounted:
            return
        rows = [*previous, *selection]
        self._refresh_rows(min(r for r, _ in rows), max(r for r, _ in rows))

    def _refresh_rows(self, first: int, last: int | None) -> None:
        """Repaint the screen lines of document rows first..last (None: to the end of the view)."""
        offsets = self.wrapped_document._line_index_to_offsets
        if not offsets:
            self.refresh()
            return
        first = max(0, min(first, len(offsets) - 1))
        top = offsets[first][0]
        if last is None:
            bottom = self.scroll_offset.y + self.size.height
        else:
            bottom = offsets[max(first, min(last, len(offsets) - 1))][-1] + 1
        view_top = self.scroll_offset.y
        top, bottom = max(top, view_top), min(bottom, view_top + self.size.height)
        if bottom > top:
            self._refresh_changed_lines(top, bottom)

    def _refresh_changed_lines(self, top: int, bottom: int) -> None:
        """Refresh the screen lines top..bottom - 1 (document coordinates) that would not look as drawn:
        a keystroke changes one or two lines of a wrapped paragraph, and every line refreshed costs the
        compositor work in proportion to its segments (a highlighted line has dozens)."""
        view_top = self.scroll_offset.y
        drawn = self._drawn
        run = None
        for y in range(top, bottom):
            key = self._line_key(y - view_top)
            if key is None or drawn.get(y) != key:
                if run is None:
                    run = y
            elif run is not None:
                self.refresh_lines(run, y - run)
                run = None
        if run is not None:
            self.refresh_lines(run, bottom - run)

    # --- drawing ------------------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        key = self._line_key(y)
        drawn = self._drawn
        if len(drawn) > DRAWN_LINES:
            drawn.clear()  # lines not in this record are refreshed when asked: forgetting only costs work
        if key is None:
            drawn.pop(y + self.scroll_offset.y, None)
            return super().render_line(y)
        drawn[y + self.scroll_offset.y] = key
        strip = self._lines.get(key)
        if strip is None:
            row, number, a, section = key[:4]
            if self.soft_wrap and len(self.document[row]) >= LONG_ROW:
                strip = self._render_section(row, number, a, section)
            else:
                self._section = (row, a, a + len(section))  # get_line styles only this section of the row
                try:
                    strip = self._render_line(y)
                finally:
                    self._section = None
            self._lines[key] = strip
        return strip

    def _render_section(self, row: int, number: int, a: int, section: str) -> Strip:
        """Screen line `number` of long row `row`, `section` = the row's characters from `a`, drawn from the
        section alone, as TextArea._render_line draws it from the whole row: the text area's selection, cursor,
        matching bracket and gutter, the layers of get_line, the cell the cursor rests in at the row's end."""
        theme = self._theme
        base_style = theme.base_style if theme and theme.base_style is not None else self.rich_style
        b = a + len(section)
        row_length = len(self.document[row])
        last = b == row_length
        line = self._styled(row, a, b, section)
        if last:
            line.set_length(len(section) + 1)
        start, end = self.selection
        (top_row, top_column), (bottom_row, bottom_column) = sorted((start, end))
        if start != end and top_row <= row <= bottom_row and theme and theme.selection_style:
            lo = top_column if row == top_row else 0
            hi = bottom_column if row == bottom_row else row_length
            lo, hi = max(lo, a) - a, min(hi, b) - a
            if hi > lo:
                line.stylize(theme.selection_style, lo, hi)
        cursor_row, cursor_column = end
        cursor_here = cursor_row == row and (a <= cursor_column < b or (last and cursor_column == b))
        bracket = self._matching_bracket_location
        brackets = self._has_cursor and self.match_cursor_bracket and bracket is not None and start == end
        bracket_style = theme.bracket_matching_style if theme else None
        if cursor_here:
            if brackets and bracket_style:
                line.stylize(bracket_style, cursor_column - a, cursor_column - a + 1)
            if self._draw_cursor and theme and theme.cursor_style:
                line.stylize(theme.cursor_style, cursor_column - a, cursor_column - a + 1)
        if brackets and bracket_style and bracket[0] == row and a <= bracket[1] < b:
            line.stylize(bracket_style, bracket[1] - a, bracket[1] - a + 1)
        line.expand_tabs(self.indent_width)
        gutter_width = self.gutter_width
        strip = Strip(line.render(self.app.console), cell_length=line.cell_len)
        strip = strip.extend_cell_length(self.scrollable_content_region.size.width - gutter_width,
                                         theme.base_style if theme else None)
        if self.show_line_numbers and theme:
            number_text = str(row + self.line_number_start) if number == 0 else ""
            gutter = Segment(f"{number_text:>{gutter_width - 2}}  ", theme.gutter_style)
            strip = Strip.join([Strip([gutter], cell_length=gutter_width), strip])
        return strip.apply_style(base_style)

    def _line_key(self, y: int) -> tuple | None:
        """Everything that decides how screen line y looks; None where TextArea draws it itself.

        A wrapped paragraph is one row drawn as several screen lines (sections); the key holds only this
        section's text and spans, so typing at the end of a paragraph redraws its last line alone."""
        if self.placeholder and not self.text:
            return None
        scroll_x, scroll_y = self.scroll_offset
        wrapped = self.wrapped_document
        try:
            row, section = wrapped._offset_to_line_info[y + scroll_y]
            cuts = wrapped._wrap_offsets[row]
        except IndexError:
            return None
        text = self.document[row]
        a = cuts[section - 1] if section > 0 else 0
        b = cuts[section] if section < len(cuts) else len(text)
        highlights, markdown, dimmed, palette = self._layers_of(row)
        selection = self.selection
        top, bottom = sorted(selection)
        in_selection = selection.start != selection.end and top[0] <= row <= bottom[0]
        on_cursor = selection.end[0] == row
        column = selection.end[1]
        bracket = self._matching_bracket_location
        return (row, section, a, text[a:b], _clip_sorted(highlights, a, b), _clip(markdown, a, b), dimmed, palette,
                self.size, scroll_x, on_cursor,
                tuple(selection) if in_selection else None,
                (column, self._draw_cursor, self.has_focus, self.suggestion)
                if on_cursor and (a <= column <= b or self.suggestion) else None,
                bracket if bracket is not None and (bracket[0] == row or on_cursor) else None,
                self.theme, self.soft_wrap, self.indent_width, self.show_line_numbers, self.line_number_start,
                self.gutter_width, self.read_only, self.show_cursor, self.highlight_cursor_line,
                self.match_cursor_bracket)

    def _layers_of(self, row: int) -> tuple:
        """The row's highlight and Markdown spans relative to its start, and whether focus mode dims it."""
        layers = self._row_layers.get(row)
        if layers is None:
            start = int(self.line_starts[row]) if row < len(self.line_starts) else 0
            end = start + len(self.document[row])
            highlights = self._row_highlights.get(row)
            if highlights is None:
                highlights = self._row_highlights[row] = tuple(
                    (a - start, b - start, slot, level) for a, b, slot, level in self.overlay.between(start, end + 1)) \
                    if self._span_styles else ()
            markdown = tuple((a, b, id(style)) for a, b, style in self._markdown_line(row))
            focus = self.focus_paragraph
            dimmed = focus is not None and not (focus[0] <= start <= focus[1])
            layers = self._row_layers[row] = (highlights, markdown, dimmed, id(self._span_styles))
        return layers

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
        """The row, with its Markdown styles and its highlight spans. render_line draws one screen line, a
        section of a wrapped paragraph: TextArea styles the whole row and cuts it into sections, so only the
        section being drawn gets its highlight spans (else a keystroke at the end of a long highlighted
        paragraph cost more the longer it was). Drawn lines are cached by render_line, not here."""
        text = self.document.get_line(line_index)
        section = self._section
        a, b = section[1:] if section is not None and section[0] == line_index else (0, len(text))
        return self._styled(line_index, a, b, text, relative=False)

    def _styled(self, row: int, a: int, b: int, text: str, relative: bool = True) -> Text:
        """`text` (the row, or with `relative` its characters a..b) as drawn, with the Markdown styles and the
        highlights of characters a..b of the row."""
        line = Text(shown(text), end="", no_wrap=True)
        if not line.plain:
            return line
        shift = a if relative else 0
        highlights, _, dimmed, _ = self._layers_of(row)
        for x, y, style in (_clip(self._markdown_line(row), a, b) if relative else self._markdown_line(row)):
            line.stylize(style, x, y)
        if self._span_styles:
            styles = self._span_styles
            for x, y, slot, level in _clip_sorted(highlights, a, b, relative=False):
                line.stylize(styles[slot % len(styles)][level], x - shift, y - shift)
        if dimmed:
            line.stylize(self._dim_style)
        return line


def _clip(spans: tuple, a: int, b: int) -> tuple:
    """Spans (start, end, ...) of a row that overlap [a, b], relative to a."""
    return tuple((max(x, a) - a, min(y, b) - a, *rest) for x, y, *rest in spans if x <= b and y >= a)


def _clip_sorted(spans: tuple, a: int, b: int, relative: bool = True) -> tuple:
    """_clip for spans that do not overlap one another, in order (highlights): found by bisection, so
    the cost is the section's spans, not the row's. relative=False keeps the row's columns."""
    lo = bisect_left(spans, a, key=_span_end)
    hi = bisect_right(spans, b, lo=lo, key=_span_start)
    shift = a if relative else 0
    return tuple((max(x, a) - shift, min(y, b) - shift, *rest) for x, y, *rest in spans[lo:hi])


def _span_start(span: tuple) -> int:
    return span[0]


def _span_end(span: tuple) -> int:
    return span[1]


def _light(rgb) -> bool:
    r, g, b = rgb
    return 0.299 * r + 0.587 * g + 0.114 * b > 150
