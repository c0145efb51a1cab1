"""The modal dialogs the editor pushes.

Modal screens (push with `app.push_screen(screen, callback)` or `await app.push_screen_wait(screen)`):

- `ConfirmScreen(question, ...)` -> "yes" | "no" | "cancel"
- `GotoLineScreen(line_count, current=1)` -> 1-based line number | None
- `HelpScreen(bindings)` -> None; `bindings` are (key, description) pairs
- `RecoveryScreen(name, recovered, on_disk, saved_at)` -> "restore" | "discard" | "later"
- `OpenFileScreen(...)` / `SaveAsScreen(...)` -> `Path` | None (absolute, ~ expanded)
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Literal, Sequence

from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Button, Input, Label, Static

from morph.editor.actions import bindings, format_key, key_text

__all__ = [
    "ConfirmResult",
    "ConfirmScreen",
    "GotoLineScreen",
    "HelpScreen",
    "OpenFileScreen",
    "PathScreen",
    "PathSuggester",
    "RecoveryResult",
    "RecoveryScreen",
    "SaveAsScreen",
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
# Modal screens


class ConfirmScreen(ModalScreen[ConfirmResult]):
    """A question with yes / no / cancel buttons. Y and N choose, Escape cancels (or says no when
    there is no cancel button). Dismisses with "yes", "no" or "cancel"."""

    DEFAULT_CSS = _css("ConfirmScreen")
    BINDINGS = bindings("confirm")

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
    BINDINGS = bindings("goto_line")

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


class HelpScreen(ModalScreen[None]):
    """A list of key bindings, given as (key, description) pairs. Escape, Q or F1 closes."""

    DEFAULT_CSS = _css("HelpScreen", "HelpScreen #help-body { height: auto; max-height: 30; }")
    BINDINGS = bindings("help")

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
            yield Label(Text(f"{key_text('help.close')} to close", style="dim"))

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
    BINDINGS = bindings("recovery")

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
    BINDINGS = bindings("path_dialog")

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
            return None, f"{path.name} exists: press {key_text('path_dialog.submit')} again to replace it"
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
