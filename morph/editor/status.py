"""The status bar: model and SAE, analysis state and latency, counts, cursor position."""

from __future__ import annotations

from dataclasses import dataclass, replace

from rich.text import Text
from textual.widgets import Static

WORDS_PER_MINUTE = 230


@dataclass(frozen=True)
class StatusState:
    model: str = "no model"
    state: str = "idle"  # loading model | idle | waiting | analysing | error | off | no model | server down | key refused
    detail: str = ""
    latency_ms: float | None = None
    words: int = 0
    chars: int = 0
    row: int = 0
    column: int = 0
    modified: bool = False
    file: str = "untitled"
    note: str = ""


class StatusBar(Static):
    DEFAULT_CSS = """
    StatusBar { dock: bottom; height: 1; background: $panel; color: $text; padding: 0 1; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.state = StatusState()

    def update_state(self, **changes) -> None:
        state = replace(self.state, **changes)
        if state == self.state and self.is_mounted:
            return
        self.state = state
        # One docked line whose size never changes: no layout pass (it re-arranged the whole screen on
        # every keystroke and every analysis progress message).
        self.update(self.render_state(), layout=False)

    def render_state(self) -> Text:
        s = self.state
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(("● " if s.modified else "") + s.file, style="bold")
        text.append("  ")
        colour = {"error": "red", "server down": "red", "key refused": "red", "analysing": "yellow", "loading model": "yellow", "waiting": "yellow"}.get(s.state, "green")
        text.append(f"{s.state}{(' ' + s.detail) if s.detail else ''}", style=colour)
        if s.latency_ms is not None:
            text.append(f" · {s.latency_ms:.0f} ms", style="dim")
        if s.note:
            text.append(f" · {s.note}", style="italic")
        minutes = max(1, round(s.words / WORDS_PER_MINUTE)) if s.words else 0
        text.append(f"  {s.words} words · {s.chars} chars · {minutes} min read", style="dim")
        text.append(f"  Ln {s.row + 1}, Col {s.column + 1}", style="dim")
        text.append(f"  {s.model}", style="italic dim")
        return text
