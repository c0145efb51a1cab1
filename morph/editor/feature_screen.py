"""The feature detail view: label, promoted tokens, statistics, and every place it fires in the document."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, OptionList, Static
from textual.widgets.option_list import Option

from morph.editor.actions import bindings, key_text
from morph.features.engine import FeatureReport

SNIPPET = 32


class FeatureDetailScreen(ModalScreen):
    """Dismisses with ("pin", feature), ("goto", offset) or None."""

    BINDINGS = bindings("feature_details")
    DEFAULT_CSS = """
    FeatureDetailScreen { align: center middle; }
    FeatureDetailScreen > Vertical { width: 90; max-width: 95%; height: 80%; border: round $primary;
        background: $surface; padding: 1 2; }
    FeatureDetailScreen #title { text-style: bold; color: $accent; }
    FeatureDetailScreen .facts { color: $text-muted; margin-bottom: 1; }
    FeatureDetailScreen OptionList { height: 1fr; border: none; }
    FeatureDetailScreen Horizontal { height: auto; align-horizontal: right; }
    FeatureDetailScreen Button { margin-left: 1; }
    """

    def __init__(self, report: FeatureReport, text: str, offset_base: int = 0, colour: str | None = None) -> None:
        super().__init__()
        self.report = report
        self.text = text
        self.offset_base = offset_base
        self.colour = colour

    def compose(self) -> ComposeResult:
        r, info = self.report, self.report.info
        with Vertical():
            yield Label(f"Feature #{info.id} · {info.label}", id="title")
            if len(info.explanations) > 1:  # the first is the title
                yield Static("\n".join(["Neuronpedia's other explanations:"]
                                       + [f"  · {e.description}" for e in info.explanations[1:]]),
                             classes="facts", id="explanations")
            facts = []
            if info.words:
                facts.append("fires on words: " + ", ".join(w for w, _, _ in info.words[:10]))
            elif info.top_tokens:
                facts.append("fires most on: " + " ".join(t for t, _ in info.top_tokens[:10]))
            facts += info.output_lines()
            if info.density is not None:
                typical = f", typical max {info.typical_max:.2f}" if info.typical_max else ""
                facts.append(f"corpus: density {info.density:.4f}, mean when active {info.mean_act or 0:.2f}"
                             f"{typical}, max {info.max_act or 0:.2f}")
            facts.append(f"this document: active on {r.active_tokens} of {r.total_tokens} tokens, "
                         f"max {r.max_act:.2f}, mean when active {r.mean_when_active:.2f}")
            yield Static("\n".join(facts), classes="facts", id="facts")
            if info.contexts:
                yield Label("Where it fires most in the corpus:")
                yield Static(self._corpus_contexts(), classes="facts", id="contexts")
            yield Label(f"Where it fires (strongest first; {key_text('feature_details.jump')} jumps there):")
            yield OptionList(*self._occurrence_options(), id="occurrences")
            with Horizontal():
                yield Button(f"Pin ({key_text('feature_details.pin')})", id="pin", variant="primary")
                yield Button(f"Close ({key_text('feature_details.close')})", id="close")

    def _corpus_contexts(self) -> Text:
        text = Text()
        for i, c in enumerate(self.report.info.contexts):
            if i:
                text.append("\n")
            text.append(f"{c.activation:6.2f}  ", style="bold")
            before, token, after = c.shown()
            text.append("…" + before.lstrip(), style="dim")
            text.append(token, style=f"bold reverse {self.colour or ''}".strip())
            text.append(after.rstrip() + "…", style="dim")
        return text

    def _occurrence_options(self) -> list[Option]:
        ranked = sorted(self.report.occurrences, key=lambda o: -o.activation)[:200]
        options = []
        for occ in ranked:
            a, b = occ.start - self.offset_base, occ.end - self.offset_base
            before = self.text[max(0, a - SNIPPET):a].replace("\n", " ")
            after = self.text[b:b + SNIPPET].replace("\n", " ")
            line = Text(f"{occ.activation:6.2f}  ", style="bold")
            line.append("…" + before, style="dim")
            line.append(self.text[a:b].replace("\n", "⏎"), style=f"bold reverse {self.colour or ''}".strip())
            line.append(after + "…", style="dim")
            options.append(Option(line, id=str(occ.start)))
        if not options:
            options.append(Option(Text("it does not fire in this document", style="dim italic"), disabled=True))
        return options

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id is not None:
            self.dismiss(("goto", int(event.option.id)))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "pin":
            self.action_pin()
        else:
            self.action_close()

    def action_pin(self) -> None:
        self.dismiss(("pin", self.report.info.id))

    def action_close(self) -> None:
        self.dismiss(None)
