"""The steered-rewrite screen: pick a concept, a direction and a strength, generate, accept a candidate.

`SteerScreen(steerer, text, start, end)` dismisses with the accepted candidate's text (the replacement for
text[start:end], whitespace included) or None. `steerer` is any object with the engine calls of
`morph.features.steering.Steerer`: concepts(text, start, end, k), search(query, limit),
stream(text, start, end, request, cancel) and label(feature). The screen never imports the app.
"""

from __future__ import annotations

import difflib
import re
import threading
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, RadioButton, RadioSet, Static
from textual.widgets.option_list import Option

from morph.errors import MorphError
from morph.features.steering import (
    PRESETS,
    Candidate,
    CandidateReady,
    SteerDone,
    SteerProgress,
    SteerRequest,
    strength_value,
)

MODES = ("toward", "away", "suppress")
_DIFF_TOKENS = re.compile(r"\s+|\w+|[^\w\s]")


def word_diff(original: str, candidate: str) -> Text:
    """`candidate` against `original` word by word: kept words plain, new ones green, removed ones struck."""
    a, b = _DIFF_TOKENS.findall(original), _DIFF_TOKENS.findall(candidate)
    text = Text()
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            text.append("".join(b[j1:j2]))
            continue
        if op in ("delete", "replace"):
            removed = "".join(a[i1:i2])
            if removed.strip():
                text.append(removed, style="strike red")
        if op in ("insert", "replace"):
            text.append("".join(b[j1:j2]), style="bold green")
    return text


def _one_line(err: BaseException) -> str:
    if isinstance(err, MorphError):
        return str(err)
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:160]}" if lines else type(err).__name__


class _Cancel:
    """The cancel token the engine checks between tokens: our event or the worker's own cancel flag."""

    def __init__(self, event: threading.Event, worker: Any) -> None:
        self.event, self.worker = event, worker

    def is_set(self) -> bool:
        return self.event.is_set() or bool(getattr(self.worker, "is_cancelled", False))


class SteerScreen(ModalScreen[str | None]):
    """Steered rewrites of the selection text[start:end]."""

    BINDINGS = [
        Binding("escape", "close", "Cancel"),
        Binding("ctrl+g", "generate", "Generate"),
    ]
    DEFAULT_CSS = """
    SteerScreen { align: center middle; }
    SteerScreen > Vertical { width: 110; max-width: 96%; height: 92%; border: round $primary;
        background: $surface; padding: 0 1; }
    SteerScreen #title { text-style: bold; color: $accent; }
    SteerScreen #original { color: $text-muted; max-height: 4; margin-bottom: 1; }
    SteerScreen #body { height: 1fr; }
    SteerScreen #left { width: 44; height: 1fr; margin-right: 1; }
    SteerScreen #right { width: 1fr; height: 1fr; }
    SteerScreen #concepts { height: 1fr; }
    SteerScreen #candidates { height: 1fr; }
    SteerScreen RadioSet { width: auto; height: auto; layout: horizontal; }
    SteerScreen RadioSet > RadioButton { width: auto; margin-right: 2; }
    SteerScreen .row { height: auto; margin-bottom: 1; }
    SteerScreen .row Label { width: 11; }
    SteerScreen .row Input { margin-left: 1; }
    SteerScreen #strength-number { width: 14; }
    SteerScreen #count { width: 6; margin-left: 0; }
    SteerScreen #status { height: auto; color: $text-muted; }
    SteerScreen #error { height: auto; color: $error; }
    SteerScreen #buttons { height: auto; align-horizontal: right; }
    SteerScreen #buttons Button { margin-left: 1; }
    """

    class Concepts(Message):
        def __init__(self, concepts: list, note: str) -> None:
            super().__init__()
            self.concepts, self.note = concepts, note

    class Event(Message):
        def __init__(self, run: int, event: Any) -> None:
            super().__init__()
            self.run, self.event = run, event

    class Failed(Message):
        def __init__(self, run: int | None, error: str) -> None:
            super().__init__()
            self.run, self.error = run, error

    def __init__(self, steerer: Any, text: str, start: int, end: int, *, n: int = 4, seed: int | None = None,
                 concepts_k: int = 12) -> None:
        super().__init__()
        self.steerer = steerer
        self.text, self.start, self.end = text, start, end
        self.original = text[start:end]
        self.n = n
        self.seed = seed
        self.concepts_k = concepts_k
        self.candidates: list[Candidate] = []
        self.result: Any = None
        self._run = 0
        self._runs = 0
        self._cancel: threading.Event | None = None
        self._span_concepts: list = []

    # ----- layout ----------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        shown = self.original.strip().replace("\n", " ⏎ ")
        with Vertical():
            yield Label("Rewrite the selection, steered by a concept", id="title")
            yield Static(Text(shown if len(shown) <= 400 else shown[:400] + "…"), id="original")
            with Horizontal(id="body"):
                with Vertical(id="left"):
                    yield Input(placeholder="search concepts by label, or a feature number", id="search")
                    yield OptionList(Option(Text("reading the selection…", style="dim italic"), disabled=True),
                                     id="concepts")
                with Vertical(id="right"):
                    with Horizontal(classes="row"):
                        yield Label("Direction")
                        with RadioSet(id="mode", compact=True):
                            for k, mode in enumerate(MODES):
                                yield RadioButton(mode, value=k == 0, id=f"mode-{mode}")
                    with Horizontal(classes="row"):
                        yield Label("Strength")
                        with RadioSet(id="strength", compact=True):
                            for name in PRESETS:
                                yield RadioButton(name, value=name == "medium", id=f"strength-{name}")
                        yield Input(placeholder="or a number", id="strength-number", compact=True)
                    with Horizontal(classes="row"):
                        yield Label("Candidates")
                        yield Input(str(self.n), type="integer", id="count", compact=True)
                    yield Static("", id="status")
                    yield Static("", id="error")
                    yield OptionList(id="candidates")
            with Horizontal(id="buttons"):
                yield Button("Generate (Ctrl+G)", id="generate", variant="primary")
                yield Button("Accept (Enter)", id="accept", disabled=True)
                yield Button("Cancel (Esc)", id="close")

    def on_mount(self) -> None:
        self.query_one("#concepts", OptionList).focus()
        self._load_concepts()

    # ----- concepts ----------------------------------------------------------------------------------------
    @work(thread=True, group="steer-concepts", exclusive=True, exit_on_error=False, name="steer concepts")
    def _load_concepts(self) -> None:
        try:
            found = self.steerer.concepts(self.text, self.start, self.end, self.concepts_k)
        except Exception as err:  # noqa: BLE001 - shown in the screen
            self.post_message(self.Failed(None, _one_line(err)))
            return
        self.post_message(self.Concepts(found, "active in the selection" if found else
                                        "no feature fires on the selection: search for one"))

    @work(thread=True, group="steer-concepts", exclusive=True, exit_on_error=False, name="steer search")
    def _search(self, query: str) -> None:
        try:
            found = self.steerer.search(query, 20)
        except Exception as err:  # noqa: BLE001 - a search that matches nothing is an InputError
            self.post_message(self.Concepts([], _one_line(err)))
            return
        self.post_message(self.Concepts(found, f"labels matching {query!r}"))

    @on(Input.Changed, "#search")
    def _search_changed(self, event: Input.Changed) -> None:
        query = event.value.strip()
        if query:
            self._search(query)
        else:
            self.on_steer_screen_concepts(self.Concepts(self._span_concepts, "active in the selection"))

    @on(Input.Submitted, "#search")
    def _search_submitted(self) -> None:
        self.query_one("#concepts", OptionList).focus()

    def on_steer_screen_concepts(self, message: "SteerScreen.Concepts") -> None:
        if not self.query_one("#search", Input).value.strip():
            self._span_concepts = list(message.concepts)
        box = self.query_one("#concepts", OptionList)
        box.clear_options()
        if not message.concepts:
            box.add_option(Option(Text(message.note, style="dim italic"), disabled=True))
            return
        box.add_option(Option(Text(message.note, style="dim"), disabled=True))
        for concept in message.concepts:
            line = Text(f"#{concept.id:<6}", style="bold")
            line.append(concept.label)
            if concept.activation:
                line.append(f"  {concept.activation:.2f}", style="dim")
            box.add_option(Option(line, id=str(concept.id)))
        box.highlighted = 1

    @on(OptionList.OptionSelected, "#concepts")
    def _concept_chosen(self) -> None:
        self.action_generate()

    def chosen_feature(self) -> int | None:
        box = self.query_one("#concepts", OptionList)
        if box.highlighted is None:
            return None
        option = box.get_option_at_index(box.highlighted)
        return int(option.id) if option.id is not None else None

    # ----- the request -------------------------------------------------------------------------------------
    def build_request(self) -> SteerRequest:
        feature = self.chosen_feature()
        if feature is None:
            raise MorphError("choose a concept first (the list on the left, or search for one)")
        mode = MODES[self.query_one("#mode", RadioSet).pressed_index or 0]
        number = self.query_one("#strength-number", Input).value.strip()
        if number:
            strength = strength_value(number)
        else:
            index = self.query_one("#strength", RadioSet).pressed_index
            strength = list(PRESETS.values())[1 if index is None or index < 0 else index]
        count_text = self.query_one("#count", Input).value.strip() or str(self.n)
        try:
            count = int(count_text)
        except ValueError:
            raise MorphError(f"the number of candidates must be a whole number, not {count_text!r}") from None
        self._runs += 1
        seed = self.seed if self.seed is not None else self._runs - 1
        return SteerRequest(features=((feature, strength),), mode=mode, n=count, seed=seed)

    # ----- generating --------------------------------------------------------------------------------------
    def action_generate(self) -> None:
        self.query_one("#error", Static).update("")
        try:
            request = self.build_request()
        except Exception as err:  # noqa: BLE001 - a bad setting is one line in the screen
            self._show_error(_one_line(err))
            return
        if self._cancel is not None:
            self._cancel.set()
        self._run += 1
        self._cancel = threading.Event()
        self.candidates = []
        self.result = None
        self.query_one("#candidates", OptionList).clear_options()
        self.query_one("#accept", Button).disabled = True
        label = self.steerer.label(request.features[0][0])
        verb = {"toward": "toward", "away": "away from", "suppress": "suppressing"}[request.mode]
        self._headline = f"{verb} #{request.features[0][0]} {label}"
        self.query_one("#status", Static).update(f"Generating {request.n} candidates {self._headline}…")
        self._generate(self._run, request, self._cancel)

    @work(thread=True, group="steer", exclusive=True, exit_on_error=False, name="steer")
    def _generate(self, run: int, request: SteerRequest, cancel: threading.Event) -> None:
        from textual.worker import get_current_worker

        token = _Cancel(cancel, get_current_worker())
        try:
            for event in self.steerer.stream(self.text, self.start, self.end, request, token):
                if token.is_set() and not isinstance(event, SteerDone):
                    continue
                self.post_message(self.Event(run, event))
        except Exception as err:  # noqa: BLE001 - shown in the screen, never crashes the editor
            self.post_message(self.Failed(run, _one_line(err)))

    def on_steer_screen_event(self, message: "SteerScreen.Event") -> None:
        if message.run != self._run:
            return  # a stale run
        event = message.event
        status = self.query_one("#status", Static)
        if isinstance(event, SteerProgress):
            status.update(f"Generating {self._headline}: token {event.step}/{event.max_steps}, "
                          f"{event.finished} of {event.n} candidates ready")
        elif isinstance(event, CandidateReady):
            self.candidates.append(event.candidate)
            self._show_candidates(self.candidates, ranked=False)
        elif isinstance(event, SteerDone):
            self.result = event.result
            self.candidates = list(event.result.candidates)
            self._show_candidates(self.candidates, ranked=True)
            moved = sum(c.raises_concept for c in self.candidates)
            first = event.result.first_candidate_s
            state = "cancelled" if event.result.cancelled else "done"
            status.update(f"{state}: {len(self.candidates)} candidates {self._headline}, {moved} move the concept"
                          f"{'' if first is None else f'; first after {first:.1f} s'}"
                          f" ({event.result.tokens_per_s:.0f} tokens/s). Enter accepts.")

    def on_steer_screen_failed(self, message: "SteerScreen.Failed") -> None:
        if message.run is not None and message.run != self._run:
            return
        if message.run is None:
            self.query_one("#concepts", OptionList).clear_options()
        self._show_error(message.error)
        if message.run is not None:
            self.query_one("#status", Static).update("")

    def _show_error(self, error: str) -> None:
        self.query_one("#error", Static).update(Text(error))

    def _show_candidates(self, candidates: list[Candidate], ranked: bool) -> None:
        box = self.query_one("#candidates", OptionList)
        keep = box.highlighted
        box.clear_options()
        original = self.original.strip()
        for position, c in enumerate(candidates):
            line = Text(f"{c.rank if ranked else '·'} ", style="bold")
            line.append_text(word_diff(original, c.text.strip()))
            mark = "✓" if c.raises_concept else "✗"
            line.append(f"\n   {mark} concept {c.target_activation:.2f} ({c.gain:+.2f}) · fluency {c.fluency:.2f}"
                        f" · similarity {c.similarity:.2f}\n",
                        style="green" if c.raises_concept else "dim")
            box.add_option(Option(line, id=str(position)))
        if candidates:
            box.highlighted = 0 if ranked or keep is None else min(keep, len(candidates) - 1)
            self.query_one("#accept", Button).disabled = False
            if ranked and not self.query_one("#search", Input).has_focus:
                box.focus()

    # ----- accepting and leaving ---------------------------------------------------------------------------
    @on(OptionList.OptionSelected, "#candidates")
    def _candidate_chosen(self, event: OptionList.OptionSelected) -> None:
        self._accept(int(event.option.id))

    def action_accept(self) -> None:
        box = self.query_one("#candidates", OptionList)
        if box.highlighted is not None and self.candidates:
            self._accept(box.highlighted)

    def _accept(self, position: int) -> None:
        if 0 <= position < len(self.candidates):
            self._stop()
            self.dismiss(self.candidates[position].text)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "generate":
            self.action_generate()
        elif event.button.id == "accept":
            self.action_accept()
        else:
            self.action_close()

    def _stop(self) -> None:
        if self._cancel is not None:
            self._cancel.set()
        self.workers.cancel_group(self, "steer")

    def action_close(self) -> None:
        self._stop()
        self.dismiss(None)
