"""The side panel: the legend of the highlight colours, and the features of the cursor token, the current
paragraph and the selection."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.geometry import Size
from textual.reactive import Reactive
from textual.containers import VerticalScroll
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from morph.editor.actions import bindings

from morph.editor.messages import FeatureChosen


@dataclass(frozen=True)
class PanelRow:
    feature: int
    label: str
    value: float  # what the list is ranked by: how distinctive it is there (without statistics: activation)
    colour: str | None  # the feature's highlight colour, when it has one


class FeatureList(OptionList):
    # OptionList asks for a layout pass of the whole screen (~30 ms) whenever its content changes. In the
    # panel a list has a fixed height of PANEL_ROWS lines, one per feature (labels truncated to the
    # width), so new contents never change the layout.
    virtual_size = Reactive(Size(0, 0), layout=False)

    BINDINGS = bindings("panel")

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.rows: list[PanelRow] = []
        self._shown: tuple | None = None  # (rows or the empty message, width) on screen now

    def show(self, rows: list[PanelRow], empty: str) -> None:
        # Called on every cursor move and every analysis result: rebuild only on a change.
        width = self._text_width()
        shown = (rows if rows else empty, width)
        if shown == self._shown:
            return
        self._shown = shown
        self.rows = rows
        highlighted = self.highlighted
        self.clear_options()
        if not rows:
            self.add_option(Option(Text(empty, style="dim italic"), disabled=True))
        else:
            self.add_options([Option(_row_text(row, width), id=str(row.feature)) for row in rows])
            if highlighted is not None and highlighted < len(rows):
                self.highlighted = highlighted

    def _text_width(self) -> int:
        """Cells a row may take: OptionList wraps longer prompts onto a second line."""
        width = self.scrollable_content_region.width
        return width if width > 0 else DEFAULT_ROW_WIDTH

    def on_resize(self) -> None:
        if self._shown is not None and self._shown[1] != self._text_width():
            content = self._shown[0]
            self._shown = None
            self.show(self.rows, content if isinstance(content, str) else "")

    def _current(self) -> int | None:
        if self.highlighted is None or self.highlighted >= len(self.rows):
            return None
        return self.rows[self.highlighted].feature

    def action_detail(self) -> None:
        feature = self._current()
        if feature is not None:
            self.post_message(FeatureChosen(feature, detail=True))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id is not None:
            self.post_message(FeatureChosen(int(event.option.id)))


DEFAULT_ROW_WIDTH = 40  # the panel's rows before the first layout
PANEL_ROWS = 8  # features listed per section
LEGEND_ROWS = 6  # the overview colours at most this many features (morph.features.highlights.MAX_COLOURS)


def _row_text(row: PanelRow, width: int = DEFAULT_ROW_WIDTH) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append("██ " if row.colour else "   ", style=row.colour or "")
    text.append(f"{row.value:6.2f} ", style="bold")
    text.append(f"#{row.feature:<5} ", style="dim")
    text.append(row.label)
    text.truncate(max(1, width), overflow="ellipsis")
    return text


class FeaturePanel(VerticalScroll):
    # Fixed heights (a list is PANEL_ROWS lines, a title one line): new results change no size, so they
    # repaint the panel without a layout pass over the whole screen (~30 ms: the p99 of keystrokes typed
    # while an analysis result was drawn).
    DEFAULT_CSS = """
    FeaturePanel { width: 44; max-width: 44%%; border-left: vkey $panel; padding: 0 1; background: $surface; }
    FeaturePanel.-hidden { display: none; }
    FeaturePanel .section { color: $text-muted; text-style: bold; margin-top: 1; height: 1; width: 1fr;
                            text-wrap: nowrap; text-overflow: ellipsis; }
    FeaturePanel #pinned { color: $accent; margin-top: 1; width: 1fr; }
    FeaturePanel FeatureList { height: %d; border: none; background: $surface; padding: 0; }
    FeaturePanel #legend-features { height: %d; }
    FeaturePanel FeatureList:focus { border: none; background: $boost; }
    """ % (PANEL_ROWS, LEGEND_ROWS)

    def compose(self) -> ComposeResult:
        # Kept by reference, not queried: a result that arrives while the app is closing (children already
        # removed) must not raise.
        self._parts: dict[str, Label | FeatureList] = {
            "pinned": Label("", id="pinned"),
            "legend-title": Label("Highlighted", classes="section", id="legend-title"),
            "legend-features": FeatureList(id="legend-features"),
            "token-title": Label("Token", classes="section", id="token-title"),
            "token-features": FeatureList(id="token-features"),
            "paragraph-title": Label("Paragraph", classes="section", id="paragraph-title"),
            "paragraph-features": FeatureList(id="paragraph-features"),
            "selection-title": Label("Selection", classes="section", id="selection-title"),
            "selection-features": FeatureList(id="selection-features"),
        }
        yield from self._parts.values()

    def _list(self, name: str) -> FeatureList:
        return self._parts[f"{name}-features"]  # type: ignore[return-value]

    def show_legend(self, title: str, rows: list[PanelRow]) -> None:
        """What each highlight colour on screen means (the number: how distinctive it is in view)."""
        self._title("legend-title", title)
        self._list("legend").show(rows, "nothing stands out here")

    def show_token(self, token_text: str | None, rows: list[PanelRow]) -> None:
        self._title("token-title", f"Token {token_text!r}" if token_text is not None else "Token")
        self._list("token").show(rows, "no token under the cursor")

    def show_paragraph(self, title: str, rows: list[PanelRow]) -> None:
        self._title("paragraph-title", title)
        self._list("paragraph").show(rows, "no paragraph here")

    def show_selection(self, title: str, rows: list[PanelRow]) -> None:
        self._title("selection-title", title)
        self._list("selection").show(rows, "select text to see its features")

    def show_pinned(self, text: str) -> None:
        self._title("pinned", text)

    def _title(self, name: str, text: str) -> None:
        label = self._parts[name]
        if str(label.content) != text:
            label.update(text, layout=name == "pinned")  # the section titles are one line, always

    def show_message(self, text: str) -> None:
        """No analysis (yet): say why, in every section."""
        for name in ("legend", "token", "paragraph", "selection"):
            self._list(name).show([], text)
