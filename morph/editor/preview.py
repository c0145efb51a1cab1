"""The Markdown preview pane: the document rendered by Textual's `Markdown` widget, beside the text.

The app calls `show_text(text, cursor)` on a debounce while the pane is visible. Rendering mounts one
widget per block, so a long document is previewed in a window of about `WINDOW_CHARS` around the
cursor (cut at paragraph breaks) and the pane says so. The `Markdown` widget is made at the first render:
its imports (markdown-it, Pygments' lexer table) cost the editor's first paint ~0.1 s otherwise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Label

if TYPE_CHECKING:
    from textual.widgets import Markdown

WINDOW_CHARS = 40_000


def window_around(text: str, cursor: int, limit: int = WINDOW_CHARS) -> tuple[int, int]:
    """(start, end) of the part of `text` to render: all of it if short, else about `limit`
    characters around `cursor`, cut at blank lines so no block is split."""
    if len(text) <= limit:
        return 0, len(text)
    start = max(0, min(cursor - limit // 2, len(text) - limit))
    end = min(len(text), start + limit)
    if start > 0:
        cut = text.find("\n\n", start, start + limit // 4)
        start = cut + 2 if cut >= 0 else start
    if end < len(text):
        cut = text.rfind("\n\n", end - limit // 4, end)
        end = cut + 1 if cut >= 0 else end
    return start, end


class PreviewPane(VerticalScroll):
    """A scrollable rendered-Markdown view of the document (hidden until toggled)."""

    DEFAULT_CSS = """
    PreviewPane { width: 1fr; height: 1fr; border-left: vkey $panel; background: $surface; display: none; }
    PreviewPane.-open { display: block; }
    PreviewPane #preview-note { color: $text-muted; text-style: italic; padding: 0 2; display: none; }
    PreviewPane #preview-note.-shown { display: block; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rendered: str | None = None
        """The Markdown source last rendered (None before the first render)."""

    def compose(self) -> ComposeResult:
        yield Label("", id="preview-note")

    @property
    def is_open(self) -> bool:
        return self.has_class("-open")

    @property
    def markdown(self) -> Markdown | None:
        """The rendering widget (None before the first render)."""
        from textual.widgets import Markdown

        found = self.query("#preview-markdown")
        return found.first(Markdown) if found else None

    def show_text(self, text: str, cursor: int = 0) -> bool:
        """Render `text` (or the window of it around `cursor`); False if it is already shown."""
        start, end = window_around(text, cursor)
        note = self.query_one("#preview-note", Label)
        if (start, end) != (0, len(text)):
            note.update(f"preview of {end - start:,} of {len(text):,} characters, around the cursor")
            note.add_class("-shown")
        else:
            note.remove_class("-shown")
        source = text[start:end]
        if source == self.rendered:
            return False
        self.rendered = source
        markdown = self.markdown
        if markdown is None:
            from textual.widgets import Markdown

            self.mount(Markdown(source, id="preview-markdown"))
        else:
            markdown.update(source)
        return True
