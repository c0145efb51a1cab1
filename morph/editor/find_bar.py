"""The find/replace bar and the search functions under it, on the writing surface (`DocumentView`).

`FindBar(text_area)` is a widget the app docks (bottom) and opens with `open(replace=...)`; the search functions
(`find_matches`, `find_in`, `replace_current`, `replace_all`) work on a DocumentView, through its offsets and its
`replace_span` (one undo step).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Input, Label
from textual.widgets.text_area import Selection

from morph.editor.actions import bindings, key_text
from morph.editor.document import DocumentView
from morph.editor.key_order import TextInput, focus_now

__all__ = ["FindBar", "SearchResult", "find_in", "find_matches", "replace_all", "replace_current"]


# --------------------------------------------------------------------------------------------------
# Search and replace on the writing surface


@dataclass(frozen=True)
class SearchResult:
    """What a find or replace did."""

    found: bool
    index: int = 0
    """1-based number of the selected match among all matches (0 if none)."""
    total: int = 0
    wrapped: bool = False
    replaced: int = 0

    def describe(self) -> str:
        """A short status line: '3 of 12', '3 of 12 (wrapped)', 'not found'."""
        parts = []
        if self.replaced:
            parts.append(f"replaced {self.replaced}")
        if not self.found:
            parts.append("no more matches" if self.total else "not found")
        else:
            parts.append(f"{self.index} of {self.total}" + (" (wrapped)" if self.wrapped else ""))
        return ", ".join(parts)


def find_matches(text: str, query: str, *, case_sensitive: bool = False) -> list[tuple[int, int]]:
    """Non-overlapping (start, end) character offsets of `query` in `text`."""
    if not query:
        return []
    flags = 0 if case_sensitive else re.IGNORECASE
    return [(m.start(), m.end()) for m in re.finditer(re.escape(query), text, flags)]


def _select(ta: DocumentView, start: int, end: int) -> None:
    ta.selection = Selection(ta.location_of(start), ta.location_of(end))
    ta.scroll_cursor_visible(center=True)


def find_in(
    ta: DocumentView,
    query: str,
    *,
    forward: bool = True,
    case_sensitive: bool = False,
    wrap: bool = True,
    origin: int | None = None,
) -> SearchResult:
    """Select the next (or previous) match of `query` after (before) the selection; wraps around.

    `origin` (a character offset) overrides where the search starts from.
    """
    matches = find_matches(ta.text, query, case_sensitive=case_sensitive)
    if not matches:
        return SearchResult(found=False)
    a, b = ta.selection_offsets
    wrapped = False
    if forward:
        start_from = origin if origin is not None else b
        index = next((i for i, (s, _) in enumerate(matches) if s >= start_from), None)
        if index is None and wrap:
            index, wrapped = 0, True
    else:
        start_from = origin if origin is not None else a
        index = next((i for i in range(len(matches) - 1, -1, -1) if matches[i][1] <= start_from), None)
        if index is None and wrap:
            index, wrapped = len(matches) - 1, True
    if index is None:
        return SearchResult(found=False, total=len(matches))
    _select(ta, *matches[index])
    return SearchResult(found=True, index=index + 1, total=len(matches), wrapped=wrapped)


def replace_current(
    ta: DocumentView, query: str, replacement: str, *, case_sensitive: bool = False
) -> SearchResult:
    """Replace the selected match (one undoable edit) and select the next; if the selection is not
    a match, just select the next match."""
    matches = find_matches(ta.text, query, case_sensitive=case_sensitive)
    a, b = ta.selection_offsets
    replaced = 0
    if (a, b) in matches and not ta.read_only:
        ta.replace_span(a, b, replacement)
        after = a + len(replacement)
        ta.selection = Selection.cursor(ta.location_of(after))
        replaced = 1
        result = find_in(ta, query, case_sensitive=case_sensitive, origin=after)
    else:
        result = find_in(ta, query, case_sensitive=case_sensitive)
    return SearchResult(result.found, result.index, result.total, result.wrapped, replaced)


def replace_all(ta: DocumentView, query: str, replacement: str, *, case_sensitive: bool = False) -> int:
    """Replace every match as ONE undoable edit; returns the number replaced. The cursor stays by
    the same text it was next to."""
    if ta.read_only:
        return 0
    text = ta.text
    matches = find_matches(text, query, case_sensitive=case_sensitive)
    if not matches:
        return 0
    first, last = matches[0][0], matches[-1][1]
    pieces: list[str] = []
    pos = first
    for s, e in matches:
        pieces += [text[pos:s], replacement]
        pos = e
    segment = "".join(pieces)

    def shift_before(limit: int) -> int:
        return sum(len(replacement) - (e - s) for s, e in matches if e <= limit)

    cursor = ta.offset_of(ta.selection.end)
    inside = next(((s, e) for s, e in matches if s < cursor < e), None)
    if inside is not None:  # the cursor was inside a match: put it after its replacement
        new_cursor = inside[0] + shift_before(inside[0]) + len(replacement)
    else:
        new_cursor = cursor + shift_before(cursor)
    ta.replace_span(first, last, segment)
    ta.selection = Selection.cursor(ta.location_of(new_cursor))
    return len(matches)


class FindBar(Widget):
    """A find/replace bar for the writing surface. Dock it (it docks at the bottom by default), hidden until
    `open()`. Enter finds the next match (in the replace box: replaces), F3 / Shift+F3 next /
    previous, Alt+C toggles case sensitivity, Escape closes and gives focus back to the text."""

    DEFAULT_CSS = """
    FindBar {
        dock: bottom;
        height: auto;
        background: $panel;
        padding: 0 1;
        display: none;
    }
    FindBar.-open { display: block; }
    FindBar Horizontal { height: 1; }
    FindBar .find-label { width: 9; color: $text-muted; }
    FindBar Input { width: 1fr; }
    FindBar Button { min-width: 3; margin-left: 1; }
    FindBar Checkbox { margin-left: 1; }
    FindBar #find-status { width: 24; padding: 0 1; color: $text-muted; }
    FindBar #replace-row { display: none; }
    FindBar.-replace #replace-row { display: block; }
    """

    BINDINGS = bindings("find_bar")

    case_sensitive: reactive[bool] = reactive(False)

    class Closed(Message):
        """The bar was closed (Escape or its close button)."""

    def __init__(self, text_area: DocumentView, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.text_area = text_area
        self._anchor: int | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="find-row"):
            yield Label("Find", classes="find-label")
            yield TextInput(placeholder="text to find", id="find-input", compact=True)
            yield Button("↑", id="find-previous", tooltip=f"Previous match ({key_text('find_bar.previous')})",
                         compact=True)
            yield Button("↓", id="find-next", compact=True,
                         tooltip=f"Next match ({key_text('find_bar.next')} or {key_text('find_bar.submit')})")
            yield Checkbox("Aa", id="find-case", tooltip=f"Match case ({key_text('find_bar.toggle_case')})", compact=True)
            yield Label("", id="find-status")
            yield Button("✕", id="find-close", tooltip=f"Close ({key_text('find_bar.close')})", compact=True)
        with Horizontal(id="replace-row"):
            yield Label("Replace", classes="find-label")
            yield TextInput(placeholder="replacement", id="replace-input", compact=True)
            yield Button("Replace", id="replace-one", compact=True)
            yield Button("All", id="replace-all", tooltip="Replace all (one undo step)", compact=True)

    # -- public API ---------------------------------------------------------------------------------

    @property
    def query_text(self) -> str:
        return self.query_one("#find-input", Input).value

    @property
    def replacement(self) -> str:
        return self.query_one("#replace-input", Input).value

    @property
    def is_open(self) -> bool:
        return self.has_class("-open")

    def open(self, *, replace: bool = False, query: str | None = None) -> None:
        """Show the bar (with the replace row if `replace`) and focus the find box. Without `query`,
        a one-line selection in the text becomes the query."""
        self.add_class("-open")
        self.set_class(replace, "-replace")
        if query is None:
            selected = self.text_area.selected_text
            if selected and "\n" not in selected:
                query = selected
        find_input = self.query_one("#find-input", Input)
        if query is not None:
            with self.prevent(Input.Changed):
                find_input.value = query
        self._anchor = self.text_area.selection_offsets[0]
        focus_now(find_input)
        self._set_status(self._count_status())

    def close(self) -> None:
        """Hide the bar and give focus back to the text."""
        self.remove_class("-open")
        focus_now(self.text_area)
        self.post_message(self.Closed())

    def find_next(self) -> SearchResult:
        return self._show(find_in(self.text_area, self.query_text, case_sensitive=self.case_sensitive))

    def find_previous(self) -> SearchResult:
        return self._show(
            find_in(self.text_area, self.query_text, forward=False, case_sensitive=self.case_sensitive)
        )

    def replace_one(self) -> SearchResult:
        if self.text_area.read_only:
            self._set_status("read-only")
            return SearchResult(found=False)
        return self._show(
            replace_current(self.text_area, self.query_text, self.replacement, case_sensitive=self.case_sensitive)
        )

    def replace_all(self) -> int:
        if self.text_area.read_only:
            self._set_status("read-only")
            return 0
        count = replace_all(self.text_area, self.query_text, self.replacement, case_sensitive=self.case_sensitive)
        self._set_status(f"replaced {count}" if count else "not found")
        return count

    # -- internals ----------------------------------------------------------------------------------

    def _show(self, result: SearchResult) -> SearchResult:
        self._set_status(result.describe() if self.query_text else "")
        return result

    def _set_status(self, text: str) -> None:
        self.query_one("#find-status", Label).update(text)

    def _count_status(self) -> str:
        if not self.query_text:
            return ""
        n = len(find_matches(self.text_area.text, self.query_text, case_sensitive=self.case_sensitive))
        return f"{n} match{'es' if n != 1 else ''}" if n else "not found"

    def watch_case_sensitive(self, value: bool) -> None:
        if self.is_mounted:
            self.query_one("#find-case", Checkbox).value = value
            self._set_status(self._count_status())

    def action_close(self) -> None:
        self.close()

    def action_next(self) -> None:
        self.find_next()

    def action_previous(self) -> None:
        self.find_previous()

    def action_toggle_case(self) -> None:
        self.case_sensitive = not self.case_sensitive

    @on(Input.Changed, "#find-input")
    def _query_changed(self, event: Input.Changed) -> None:
        # search as you type, from where the bar was opened
        if not event.value:
            self._set_status("")
            return
        self._show(
            find_in(self.text_area, event.value, case_sensitive=self.case_sensitive, origin=self._anchor or 0)
        )

    @on(Input.Submitted, "#find-input")
    def _find_submitted(self) -> None:
        self.find_next()

    @on(Input.Submitted, "#replace-input")
    def _replace_submitted(self) -> None:
        self.replace_one()

    @on(Checkbox.Changed, "#find-case")
    def _case_changed(self, event: Checkbox.Changed) -> None:
        self.case_sensitive = event.value

    @on(Button.Pressed)
    def _button(self, event: Button.Pressed) -> None:
        actions = {
            "find-next": self.find_next,
            "find-previous": self.find_previous,
            "find-close": self.close,
            "replace-one": self.replace_one,
            "replace-all": self.replace_all,
        }
        if event.button.id in actions:
            event.stop()
            actions[event.button.id]()


