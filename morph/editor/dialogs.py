"""Dialogs the editor pushes, and a find/replace bar that works on the writing surface (`DocumentView`).

Modal screens (push with `app.push_screen(screen, callback)` or `await app.push_screen_wait(screen)`):

- `ConfirmScreen(question, ...)` -> "yes" | "no" | "cancel"
- `GotoLineScreen(line_count, current=1)` -> 1-based line number | None
- `HelpScreen(bindings)` -> None; `bindings` are (key, description) pairs
- `RecoveryScreen(name, recovered, on_disk, saved_at)` -> "restore" | "discard" | "later"
- `OpenFileScreen(...)` / `SaveAsScreen(...)` -> `Path` | None (absolute, ~ expanded)

`FindBar(text_area)` is a widget the app docks (bottom) and opens with `open(replace=...)`; the search
functions under it (`find_matches`, `find_in`, `replace_current`, `replace_all`) work on a DocumentView, through
its offsets and its `replace_span` (one undo step).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Input, Label, Static
from textual.widgets.text_area import Selection

from morph.editor.document import DocumentView

__all__ = [
    "ConfirmResult",
    "ConfirmScreen",
    "FindBar",
    "GotoLineScreen",
    "HelpScreen",
    "OpenFileScreen",
    "PathScreen",
    "PathSuggester",
    "RecoveryResult",
    "RecoveryScreen",
    "SaveAsScreen",
    "SearchResult",
    "find_in",
    "find_matches",
    "format_key",
    "replace_all",
    "replace_current",
]

ConfirmResult = Literal["yes", "no", "cancel"]
RecoveryResult = Literal["restore", "discard", "later"]

_DIALOG_CSS = """
{name} {{
    align: center middle;
}}
{name} > #dialog {{
    width: 72;
    max-width: 90%;
    height: auto;
    max-height: 90%;
    padding: 1 2;
    border: thick $primary 80%;
    background: $surface;
}}
{name} #title {{
    text-style: bold;
    color: $primary;
    margin-bottom: 1;
}}
{name} #buttons {{
    height: auto;
    margin-top: 1;
    align-horizontal: right;
}}
{name} #buttons Button {{
    margin-left: 1;
}}
{name} .error {{
    color: $error;
    height: auto;
}}
"""


def _css(name: str, extra: str = "") -> str:
    return _DIALOG_CSS.format(name=name) + extra


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

    BINDINGS = [
        Binding("escape", "close", "Close", show=False),
        Binding("f3", "next", "Next", show=False),
        Binding("shift+f3", "previous", "Previous", show=False),
        Binding("alt+c", "toggle_case", "Match case", show=False),
    ]

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
            yield Input(placeholder="text to find", id="find-input", compact=True)
            yield Button("↑", id="find-previous", tooltip="Previous match (Shift+F3)", compact=True)
            yield Button("↓", id="find-next", tooltip="Next match (F3 or Enter)", compact=True)
            yield Checkbox("Aa", id="find-case", tooltip="Match case (Alt+C)", compact=True)
            yield Label("", id="find-status")
            yield Button("✕", id="find-close", tooltip="Close (Escape)", compact=True)
        with Horizontal(id="replace-row"):
            yield Label("Replace", classes="find-label")
            yield Input(placeholder="replacement", id="replace-input", compact=True)
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
        find_input.focus()
        self._set_status(self._count_status())

    def close(self) -> None:
        """Hide the bar and give focus back to the text."""
        self.remove_class("-open")
        self.text_area.focus()
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


# --------------------------------------------------------------------------------------------------
# Modal screens


class ConfirmScreen(ModalScreen[ConfirmResult]):
    """A question with yes / no / cancel buttons. Y and N choose, Escape cancels (or says no when
    there is no cancel button). Dismisses with "yes", "no" or "cancel"."""

    DEFAULT_CSS = _css("ConfirmScreen")
    BINDINGS = [
        Binding("escape", "choose('cancel')", "Cancel", show=False),
        Binding("y", "choose('yes')", "Yes", show=False),
        Binding("n", "choose('no')", "No", show=False),
        Binding("left", "app.focus_previous", show=False),
        Binding("right", "app.focus_next", show=False),
    ]

    def __init__(
        self,
        question: str,
        *,
        title: str = "Confirm",
        yes: str = "Yes",
        no: str = "No",
        cancel: str | None = "Cancel",
        default: ConfirmResult = "yes",
    ) -> None:
        super().__init__()
        self.question, self.title_text = question, title
        self.labels = {"yes": yes, "no": no, "cancel": cancel}
        self.default = default

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.title_text, id="title")
            yield Static(self.question, id="question")
            with Horizontal(id="buttons"):
                for key in ("yes", "no", "cancel"):
                    label = self.labels[key]
                    if label is not None:
                        variant = "primary" if key == "yes" else ("error" if key == "no" else "default")
                        yield Button(label, id=key, variant=variant)  # type: ignore[arg-type]

    def on_mount(self) -> None:
        default = self.default if self.labels.get(self.default) is not None else "yes"
        self.query_one(f"#{default}", Button).focus()

    def action_choose(self, choice: ConfirmResult) -> None:
        if choice == "cancel" and self.labels["cancel"] is None:
            choice = "no"
        self.dismiss(choice)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id)  # type: ignore[arg-type]


class GotoLineScreen(ModalScreen[int | None]):
    """Ask for a line number (1..line_count). Dismisses with it, or None on Escape."""

    DEFAULT_CSS = _css("GotoLineScreen", "GotoLineScreen > #dialog { width: 44; }")
    BINDINGS = [Binding("escape", "cancel", "Cancel", show=False)]

    def __init__(self, line_count: int, current: int = 1) -> None:
        super().__init__()
        self.line_count = max(1, line_count)
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(f"Go to line (1–{self.line_count})", id="title")
            yield Input(str(self.current), type="integer", id="line-input")
            yield Label("", id="error", classes="error")

    def on_mount(self) -> None:
        self.query_one("#line-input", Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            line = int(event.value.strip())
        except ValueError:
            line = 0
        if not 1 <= line <= self.line_count:
            self.query_one("#error", Label).update(f"Enter a line from 1 to {self.line_count}")
            return
        self.dismiss(line)

    def action_cancel(self) -> None:
        self.dismiss(None)


def format_key(key: str) -> str:
    """'ctrl+shift+s' -> 'Ctrl+Shift+S'; 'f1,question_mark' -> 'F1 / ?'."""
    names = {"question_mark": "?", "escape": "Esc", "pageup": "PgUp", "pagedown": "PgDn",
             "space": "Space", "enter": "Enter", "tab": "Tab", "delete": "Del", "backspace": "Backspace",
             "up": "↑", "down": "↓", "left": "←", "right": "→", "plus": "+", "minus": "-"}

    def one(k: str) -> str:
        return "+".join(names.get(p, p.upper() if len(p) == 1 else p.capitalize()) for p in k.split("+"))

    return " / ".join(one(k.strip()) for k in key.split(",") if k.strip())


class HelpScreen(ModalScreen[None]):
    """A list of key bindings, given as (key, description) pairs. Escape, Q or F1 closes."""

    DEFAULT_CSS = _css("HelpScreen", "HelpScreen #help-body { height: auto; max-height: 30; }")
    BINDINGS = [
        Binding("escape", "close", "Close", show=False),
        Binding("q", "close", "Close", show=False),
        Binding("f1", "close", "Close", show=False),
    ]

    def __init__(
        self, bindings: Sequence[tuple[str, str]], *, title: str = "Keys", intro: str | None = None
    ) -> None:
        super().__init__()
        self.bindings_list = list(bindings)
        self.title_text = title
        self.intro = intro

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for key, description in self.bindings_list:
            table.add_row(format_key(key), description)
        with Vertical(id="dialog"):
            yield Label(self.title_text, id="title")
            if self.intro:
                yield Static(self.intro, id="intro")
            with VerticalScroll(id="help-body"):
                yield Static(table, id="help-table")
            yield Label(Text("Esc to close", style="dim"))

    def action_close(self) -> None:
        self.dismiss(None)


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 90:
        return f"{seconds} s ago"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min ago"
    if seconds < 36 * 3600:
        return f"{round(seconds / 3600)} h ago"
    return f"{round(seconds / 86400)} days ago"


def _first_difference(a: str, b: str) -> int | None:
    """1-based line number of the first line that differs, or None if equal."""
    la, lb = a.split("\n"), b.split("\n")
    for i, (x, y) in enumerate(zip(la, lb)):
        if x != y:
            return i + 1
    return None if len(la) == len(lb) else min(len(la), len(lb)) + 1


class RecoveryScreen(ModalScreen[RecoveryResult]):
    """Offer a recovery file that is newer than the document: Restore (R), Discard (D), or decide
    later (Escape: keep the recovery file, open the file as it is on disk)."""

    DEFAULT_CSS = _css("RecoveryScreen", "RecoveryScreen #preview { color: $text-muted; margin-top: 1; }")
    BINDINGS = [
        Binding("escape", "choose('later')", "Later", show=False),
        Binding("r", "choose('restore')", "Restore", show=False),
        Binding("d", "choose('discard')", "Discard", show=False),
    ]

    def __init__(self, name: str, recovered: str, on_disk: str | None, saved_at: float) -> None:
        super().__init__()
        self.doc_name = name
        self.recovered = recovered
        self.on_disk = on_disk
        self.saved_at = saved_at

    def describe(self) -> tuple[str, str]:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.saved_at))
        words = len(self.recovered.split())
        head = f"Morph kept unsaved text for {self.doc_name} from {when} ({_ago(time.time() - self.saved_at)})."
        if self.on_disk is None:
            detail = f"Recovered: {words:,} words. The file is not on disk."
        else:
            line = _first_difference(self.on_disk, self.recovered)
            detail = (
                f"Recovered: {words:,} words; on disk: {len(self.on_disk.split()):,} words."
                + (f" First difference at line {line}." if line else "")
            )
        return head, detail

    def compose(self) -> ComposeResult:
        head, detail = self.describe()
        with Vertical(id="dialog"):
            yield Label("Recover unsaved text?", id="title")
            yield Static(head)
            yield Static(detail, id="preview")
            with Horizontal(id="buttons"):
                yield Button("Restore", id="restore", variant="primary")
                yield Button("Discard", id="discard", variant="error")
                yield Button("Later", id="later")

    def on_mount(self) -> None:
        self.query_one("#restore", Button).focus()

    def action_choose(self, choice: RecoveryResult) -> None:
        self.dismiss(choice)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id)  # type: ignore[arg-type]


class PathSuggester(Suggester):
    """Completes file and folder names as you type a path (accept with → / End)."""

    def __init__(self, base_dir: Path | None = None) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.base_dir = base_dir

    async def get_suggestion(self, value: str) -> str | None:
        if not value or value.endswith(("/.", "/..")):
            return None
        expanded = Path(os.path.expanduser(value))
        if not expanded.is_absolute():
            expanded = (self.base_dir or Path.cwd()) / expanded
        folder, prefix = (expanded, "") if value.endswith(os.sep) else (expanded.parent, expanded.name)
        try:
            with os.scandir(folder) as it:
                names = sorted(
                    (e.name, e.is_dir()) for _, e in zip(range(2000), it)
                    if e.name.startswith(prefix) and (prefix.startswith(".") or not e.name.startswith("."))
                )
        except OSError:
            return None
        for name, is_dir in names:
            if name != prefix or is_dir:
                suffix = name[len(prefix):] + (os.sep if is_dir else "")
                return value + suffix if suffix else None
        return None


class PathScreen(ModalScreen[Path | None]):
    """Ask for a file path (with completion). Dismisses with an absolute Path, or None on Escape.

    Refuses folders and paths whose folder does not exist; with `confirm_overwrite`, an existing
    file needs Enter a second time.
    """

    DEFAULT_CSS = _css("PathScreen")
    BINDINGS = [Binding("escape", "cancel", "Cancel", show=False)]

    def __init__(
        self,
        title: str,
        *,
        initial: str = "",
        action: str = "Open",
        base_dir: Path | None = None,
        must_exist: bool = False,
        confirm_overwrite: bool = False,
    ) -> None:
        super().__init__()
        self.title_text = title
        self.initial = initial
        self.action_label = action
        self.base_dir = base_dir or Path.cwd()
        self.must_exist = must_exist
        self.confirm_overwrite = confirm_overwrite
        self._confirmed: Path | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.title_text, id="title")
            yield Input(
                self.initial, placeholder="path/to/file.md", id="path-input",
                suggester=PathSuggester(self.base_dir),
            )
            yield Label("", id="error", classes="error")
            with Horizontal(id="buttons"):
                yield Button(self.action_label, id="ok", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#path-input", Input).focus()

    def resolve(self, value: str) -> Path:
        path = Path(os.path.expanduser(value.strip()))
        if not path.is_absolute():
            path = self.base_dir / path
        return Path(os.path.abspath(path))

    def check(self, value: str) -> tuple[Path | None, str]:
        """(path, "") if acceptable, else (None, why) or (path, warning) awaiting confirmation."""
        if not value.strip():
            return None, "Type a file name"
        path = self.resolve(value)
        if path.is_dir():
            return None, f"{path} is a folder"
        if not path.parent.is_dir():
            return None, f"folder {path.parent} does not exist"
        if self.must_exist and not path.exists():
            return None, f"{path} does not exist"
        if self.confirm_overwrite and path.exists() and self._confirmed != path:
            self._confirmed = path
            return None, f"{path.name} exists: press Enter again to replace it"
        return path, ""

    def _submit(self) -> None:
        value = self.query_one("#path-input", Input).value
        path, message = self.check(value)
        self.query_one("#error", Label).update(message)
        if path is not None:
            self.dismiss(path)

    @on(Input.Changed)
    def _changed(self) -> None:
        self._confirmed = None
        self.query_one("#error", Label).update("")

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._submit()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "ok":
            self._submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class OpenFileScreen(PathScreen):
    """Ask for a file to open; a name that does not exist yet (in an existing folder) is a new file."""

    def __init__(self, *, initial: str = "", base_dir: Path | None = None) -> None:
        super().__init__("Open file", initial=initial, action="Open", base_dir=base_dir)


class SaveAsScreen(PathScreen):
    """Ask where to save; replacing an existing file needs Enter twice."""

    def __init__(self, *, initial: str = "", base_dir: Path | None = None) -> None:
        super().__init__("Save as", initial=initial, action="Save", base_dir=base_dir, confirm_overwrite=True)
