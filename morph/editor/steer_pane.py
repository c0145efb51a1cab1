"""The steering pane: pick a concept, a direction and a strength, generate, accept a candidate, while the
document stays editable.

`SteerPane(text_area)` sits in the editor screen, hidden until `open(steerer, start, end)` names the
passage text_area.text[start:end]. It never blocks the document: the writer keeps typing (and saving)
while candidates generate, and Escape (or the app's steer key) goes back to the text. The passage is
tracked through edits made meanwhile (`PassageTracker`): edits before it shift it, edits inside it make
it "edited", and `passage_now()` says where it is now, or None if it no longer reads as it did.

Messages to the host: `SteerPane.Accepted(replacement)` (the candidate's text, the replacement for the
passage, whitespace included; the host replaces the span and closes the pane) and `SteerPane.Closed`
(the pane was closed; any generation has been cancelled). `steerer` is any object with the engine calls
of `morph.features.steering.Steerer`: concepts(text, start, end, k), concepts_for(words, text, start, end,
k, example) (or, lacking it, search(query, limit)), stream(text, start, end, request, cancel) and
label(feature). The pane never imports the app.

The search box takes the writer's words ("calmer", "about the sea", "less jargon"): the list shows the
features chosen for them with both numbers (label match, output score) and why; "like: <example>" lists the
features of "more like this" for an example passage. Typed words are also offered alone: last in the list,
or first and chosen when no feature's label holds them (`concepts.unlabelled`: the features then only fire
on the words, or hold near words), the only choice when no feature matches them; the instruction rewrites
(hybrid also steers by the words' own direction, `concepts.words_direction`), and the words measure the
concept (`SteerRequest.by_words`). Generating uses the highlighted feature, the words
(in the instruction), the direction, the method (auto, hybrid, prompt, steer, continuation) and the
strength (auto: a sweep over the candidates, or a preset or number). Each candidate shows its combined
score with its parts and its marks. When none passes, the engine draws a second round and the status says
so while it runs ("none of the first 12 moved it unmarked: 12 that keep the sentence and add to it"); its
candidates say "adds to the sentence".
"""

from __future__ import annotations

import difflib
import re
import threading
import time
import weakref
from typing import TYPE_CHECKING, Callable

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Input, Label, OptionList, RadioButton, RadioSet, Static
from textual.widgets.option_list import Option

from morph.editor.actions import BY_ID, bindings, format_key, key_text, short_key
from morph.editor.document import DocumentView, TextEdit
from morph.editor.key_order import TextInput, focus_now
from morph.errors import MorphError, one_line
from morph.features.concepts import ConceptMatch, direction_of, unlabelled, unlabelled_note
from morph.features.tokens import common_prefix, common_suffix
from morph.features.steering import (
    AUTO,
    DEFAULT_CANDIDATES,
    METHODS,
    PRESETS,
    Candidate,
    CandidateReady,
    SteerDone,
    SteerProgress,
    SteerRequest,
    moved_summary,
    strength_text,
    strength_value,
)

if TYPE_CHECKING:
    from textual.worker import Worker

    from morph.features.engine import SteererLike
    from morph.features.steering import SteerEvent, SteerResult

MODES = ("toward", "away", "suppress")
PANE_METHODS = (AUTO,) + METHODS
STRENGTHS = (AUTO,) + tuple(PRESETS)
METHOD_NAMES = {"continuation": "continue"}  # shown shorter: the row is narrow
LIKE_PREFIX = "like:"
WORDS_OPTION = "words"  # the concept list's option for the typed words alone (no feature)
SEARCH_KEYS = frozenset({"backspace", "delete", "left", "right", "home", "end"})  # the search box's editing keys
SEARCH_PAUSE_S = 0.25  # the concept search waits this long for the next key before reading the words
PROGRESS_EVERY_S = 0.1
_DIFF_TOKENS = re.compile(r"\s+|\w+|[^\w\s]")
def edited_note(steer_key: str) -> str:
    """Why an accepted rewrite was not applied; `steer_key`: the key that opens the pane (the host's)."""
    return ("the passage was edited since it was chosen: the rewrite was not applied "
            f"(undo that edit, or select the passage again and press {format_key(steer_key)})")


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


def changed_region(old: str, new: str) -> tuple[int, int, int]:
    """(a, b, c): `new` is `old` with old[a:b] replaced by new[a:c] (the shortest such region)."""
    prefix = common_prefix(old, new)
    suffix = common_suffix(old, new, min(len(old), len(new)) - prefix)
    return prefix, len(old) - suffix, len(new) - suffix


class PassageTracker:
    """Where the passage original == text[start:end] is while the document is edited around it.

    `shift(a, b, c)` applies one edit (old text[a:b] became new text[a:c]): edits wholly before the
    passage move it, edits after it leave it, edits that touch it mark it `touched` (it may still read
    as before, e.g. a word typed and deleted again). `attach(view)` subscribes it to the view's stream of
    edits (typed edits, undo and redo shift it; a load loses the passage: another document)."""

    def __init__(self, start: int, end: int, original: str, on_change: Callable[[], None] | None = None) -> None:
        self.start, self.end, self.original = start, end, original
        self.touched = False
        self.lost = False
        self.on_change = on_change
        self._unsubscribe: Callable[[], None] | None = None

    def shift(self, a: int, b: int, c: int) -> None:
        delta = c - b
        if b <= self.start:
            self.start += delta
            self.end += delta
            return
        if a >= self.end:
            return
        self.touched = True
        self.start = min(self.start, a)
        self.end = self.end + delta if b <= self.end else c

    def intact(self, read: Callable[[int, int], str]) -> bool:
        """Does the passage still read as it did? `read(start, end)` returns the document's text there."""
        return not self.lost and read(self.start, self.end) == self.original

    # ----- following a DocumentView ---------------------------------------------------------------------
    def attach(self, view: DocumentView) -> None:
        self.detach()
        self._unsubscribe = view.subscribe(self.follow)

    def follow(self, change: TextEdit) -> None:
        """One edit of the document: the passage moves with it (or is lost with a load)."""
        if change.kind == "load":
            self.lost = True
        else:
            self.shift(change.start, change.old_end, change.new_end)
        if self.on_change is not None:
            self.on_change()

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None


def _short(action_id: str) -> str:
    """A pane key as its buttons and hint show it (the pane's keys are fixed: its bindings' own)."""
    return short_key(BY_ID[action_id].key)


class _Cancel:
    """The cancel token the engine checks between tokens: our event or the worker's own cancel flag."""

    def __init__(self, event: threading.Event, worker: Worker) -> None:
        self.event, self.worker = event, worker

    def is_set(self) -> bool:
        return self.event.is_set() or bool(getattr(self.worker, "is_cancelled", False))


class SteerPane(Vertical):
    """Steered rewrites of a passage of `text_area`, beside the text (hidden until `open`)."""

    # Its keys (morph.editor.actions): Escape back to the text, Ctrl+G, the close key (one that means nothing in
    # the text: Ctrl+W, once the pane's, deleted a word or the selection there, the passage being steered), Tab
    # and Shift+Tab (round the pane's own widgets) are priority bindings, over the search box's own keys; a host
    # with the same keys bound gives way while the pane has the focus (actions.keys_of("steer_pane")).
    BINDINGS = bindings("steer_pane")

    DEFAULT_CSS = """
    SteerPane { width: 70; max-width: 62%; height: 1fr; border-left: vkey $panel; background: $surface;
        padding: 0 1; display: none; }
    SteerPane.-open { display: block; }
    SteerPane #steer-title { text-style: bold; color: $accent; }
    SteerPane #original { color: $text-muted; max-height: 3; }
    SteerPane #passage-note { height: auto; color: $warning; display: none; }
    SteerPane #passage-note.-shown { display: block; }
    SteerPane #search { margin-top: 1; }
    SteerPane #concepts { height: 1fr; min-height: 4; max-height: 10; }
    SteerPane #candidates { height: 2fr; min-height: 4; }
    SteerPane RadioSet { width: auto; height: auto; layout: horizontal; }
    SteerPane RadioSet > RadioButton { width: auto; margin-right: 1; }
    SteerPane #method > RadioButton, SteerPane #strength > RadioButton { margin-right: 0; }
    SteerPane .row { height: auto; margin-top: 1; }
    SteerPane .row Label { width: 11; }
    SteerPane .row Input { margin-left: 1; }
    SteerPane #strength-number { width: 12; }
    SteerPane #count { width: 6; margin-left: 0; }
    SteerPane #status { height: auto; color: $text-muted; margin-top: 1; }
    SteerPane #error { height: auto; color: $error; }
    SteerPane #buttons { height: auto; align-horizontal: right; }
    SteerPane #buttons Button { margin-left: 1; }
    SteerPane #hint { color: $text-muted; height: 1; text-align: right; }
    """

    class Accepted(Message):
        """Accept `replacement` for the passage: the host replaces `passage_now()` with it (one undo step), or,
        should the passage have been edited since, calls `refuse_accept()`."""

        def __init__(self, pane: "SteerPane", replacement: str) -> None:
            super().__init__()
            self.pane, self.replacement = pane, replacement

    class Closed(Message):
        """The pane was closed (its generation, if any, is cancelled)."""

        def __init__(self, pane: "SteerPane") -> None:
            super().__init__()
            self.pane = pane

    class Concepts(Message):
        """The concepts for `query` ("": the passage's own; None: a placeholder while they are read)."""

        def __init__(self, passage: int, concepts: list, note: str, query: str | None = "",
                     words_first: bool = False) -> None:
            super().__init__()
            self.passage, self.concepts, self.note, self.query = passage, concepts, note, query
            self.words_first = words_first  # no feature's label holds the words: they go alone by default

    class Event(Message):
        def __init__(self, run: int, event: SteerEvent) -> None:
            super().__init__()
            self.run, self.event = run, event

    class Failed(Message):
        def __init__(self, run: int | None, error: str, passage: int = 0) -> None:
            super().__init__()
            self.run, self.error, self.passage = run, error, passage

    def __init__(self, text_area: DocumentView, *, n: int = DEFAULT_CANDIDATES, seed: int | None = None,
                 concepts_k: int = 12,
                 steer_key: str = BY_ID["steer"].key, id: str | None = None, classes: str | None = None) -> None:
        """`steer_key`: the host's key for opening the pane (named in the notes)."""
        super().__init__(id=id, classes=classes)
        self.text_area = text_area
        self.steer_key = steer_key
        self.steerer: SteererLike | None = None
        self.text, self.start, self.end, self.original = "", 0, 0, ""
        self.tracker: PassageTracker | None = None
        self.n = n
        self.seed = seed
        self.concepts_k = concepts_k
        self.candidates: list[Candidate] = []
        self.result: SteerResult | None = None
        self.generating = False
        self._run = 0
        self._runs = 0
        self._passage = 0
        self._cancel: threading.Event | None = None
        self._span_concepts: list | None = None  # None: still reading the passage
        self._shown_query: str | None = None  # the search the concept list answers ("": the passage's own)
        self._generate_when_shown = False  # Generate was asked for before the list answered the search
        self._generated_query: str | None = None  # the search the candidates (shown or coming) answer
        self._passed_on: weakref.WeakSet[events.Key] = weakref.WeakSet()  # keys on_key passed to the search box
        self._headline = ""
        self._units = ""  # after a candidate's concept gain: " nats" by the words alone

    # ----- layout ----------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Label("Steer: rewrite the passage toward a concept", id="steer-title")
        yield Static("", id="original")
        yield Static("", id="passage-note")
        yield TextInput(placeholder="what you want: calmer, about the sea… · like: <example> · a feature number",
                        id="search", compact=True)
        yield OptionList(id="concepts")
        with Horizontal(classes="row"):
            yield Label("Direction")
            with RadioSet(id="mode", compact=True):
                for k, mode in enumerate(MODES):
                    yield RadioButton(mode, value=k == 0, id=f"mode-{mode}")
        with Horizontal(classes="row"):
            yield Label("Method")
            with RadioSet(id="method", compact=True):
                for name in PANE_METHODS:
                    yield RadioButton(METHOD_NAMES.get(name, name), value=name == AUTO, id=f"method-{name}")
        with Horizontal(classes="row"):
            yield Label("Strength")
            with RadioSet(id="strength", compact=True):
                for name in STRENGTHS:
                    yield RadioButton(name, value=name == AUTO, id=f"strength-{name}")
            yield TextInput(placeholder="or a number", id="strength-number", compact=True)
        with Horizontal(classes="row"):
            yield Label("Candidates")
            yield TextInput(str(self.n), type="integer", id="count", compact=True)
        yield Static("", id="status")
        yield Static("", id="error")
        yield OptionList(id="candidates")
        with Horizontal(id="buttons"):
            yield Button(f"Generate {_short('steer_pane.generate')}", id="generate", variant="primary", compact=True)
            yield Button(f"Accept {_short('steer_pane.accept')}", id="accept", disabled=True, compact=True)
            yield Button(f"Close {_short('steer_pane.close')}", id="close", compact=True)
        yield Static(f"{_short('steer_pane.leave')}: back to the text (it keeps generating) · "
                     f"{_short('steer_pane.close')}: close", id="hint")

    # ----- opening and the passage -------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self.has_class("-open")

    def open(self, steerer: SteererLike, start: int, end: int) -> None:
        """Show the pane for the passage text_area.text[start:end] (a new passage: any run is cancelled)."""
        self._stop()
        self._run += 1
        self._passage += 1
        self._generate_when_shown = False
        self.steerer = steerer
        self.text = self.text_area.text
        self.start, self.end = start, end
        self.original = self.text[start:end]
        if self.tracker is not None:
            self.tracker.detach()
        self.tracker = PassageTracker(start, end, self.original, on_change=self._passage_changed)
        self.tracker.attach(self.text_area)
        self.candidates, self.result, self._span_concepts = [], None, None
        self._generated_query = None
        shown = self.original.strip().replace("\n", " ⏎ ")
        self.query_one("#original", Static).update(Text(shown if len(shown) <= 300 else shown[:300] + "…"))
        self.query_one("#passage-note", Static).update("")
        self.query_one("#passage-note", Static).remove_class("-shown")
        self.query_one("#status", Static).update("")
        self.query_one("#error", Static).update("")
        self.query_one("#candidates", OptionList).clear_options()
        self.query_one("#accept", Button).disabled = True
        search = self.query_one("#search", Input)
        with search.prevent(Input.Changed):
            search.value = ""
        self._show_concepts(self._reading())
        self.add_class("-open")
        focus_now(self.query_one("#concepts", OptionList))
        self._load_concepts(self._passage, self.text, start, end)

    def passage_now(self) -> tuple[int, int] | None:
        """(start, end) of the passage in the document now, or None if it does not read as it did."""
        tracker = self.tracker
        if tracker is None or not tracker.intact(self._read):
            return None
        return tracker.start, tracker.end

    def _read(self, start: int, end: int) -> str:
        return self.text_area.text_between(start, end)

    def _passage_changed(self) -> None:
        tracker = self.tracker
        if tracker is None or not (tracker.touched or tracker.lost):
            return  # only edits around the passage so far: it reads as it did
        note = "" if tracker.intact(self._read) else (
            "another document was opened: accepting is off" if tracker.lost else
            "the passage has been edited: accepting is blocked until it reads as before (undo)")
        box = self.query_one("#passage-note", Static)
        box.update(note)
        box.set_class(bool(note), "-shown")

    def show_error(self, error: str) -> None:
        self.query_one("#error", Static).update(Text(error))

    # ----- concepts ----------------------------------------------------------------------------------------
    @work(thread=True, group="steer-concepts", exclusive=True, exit_on_error=False, name="steer concepts")
    def _load_concepts(self, passage: int, text: str, start: int, end: int) -> None:
        try:
            found = self.steerer.concepts(text, start, end, self.concepts_k)
        except Exception as err:  # noqa: BLE001 - shown in the pane
            self.post_message(self.Failed(None, one_line(err), passage))
            return
        self.post_message(self.Concepts(passage, found, "active in the passage" if found else
                                        "no feature fires on the passage: search for one"))
        try:  # while the writer chooses a concept: the text before and the original, read ahead
            self.steerer.prepare(text, start, end)
        except Exception:  # noqa: BLE001 - nothing is lost: a request reads them itself, and reports what fails
            pass

    @work(thread=True, group="steer-concepts", exclusive=True, exit_on_error=False, name="steer search")
    def _search(self, passage: int, query: str) -> None:
        from textual.worker import get_current_worker

        time.sleep(SEARCH_PAUSE_S)  # the writer may still be typing: only the last query is read
        if get_current_worker().is_cancelled:
            return
        like = query.lower().startswith(LIKE_PREFIX)
        try:
            if hasattr(self.steerer, "concepts_for"):
                if like:
                    found = self.steerer.concepts_for("", self.text, self.start, self.end, 12,
                                                      example=query[len(LIKE_PREFIX):])
                else:
                    found = self.steerer.concepts_for(query, self.text, self.start, self.end, 12)
            else:
                found = self.steerer.search(query, 20)
        except Exception as err:  # noqa: BLE001 - a search that matches nothing is an InputError
            self.post_message(self.Concepts(passage, [], one_line(err), query))
            return
        matches = [c for c in found if isinstance(c, ConceptMatch)]
        words = self._words(query)
        note = ("more like the example: features stronger there than in the passage" if like else
                unlabelled_note(words, matches) or
                f"features for {query!r}: label match · output score (how far each moves the model toward "
                "the words)")
        self.post_message(self.Concepts(passage, found, note, query, words_first=unlabelled(words, matches)))

    def _reading(self) -> "SteerPane.Concepts":
        return self.Concepts(self._passage, [], "reading the passage…", query=None)

    @on(Input.Changed, "#search")
    def _search_changed(self, event: Input.Changed) -> None:
        query = event.value.strip()
        if query:
            self._search(self._passage, query)
        elif self._span_concepts is None:
            self._show_concepts(self._reading())
        else:
            self._show_concepts(self.Concepts(self._passage, self._span_concepts, "active in the passage"))

    @on(Input.Submitted, "#search")
    def _search_submitted(self) -> None:
        """Enter in the search box goes where its answer is: to the candidates when they answer this search
        (generated, or generating, from it: Ctrl+G in the box), else to the concepts found for it."""
        answered = (self.candidates or self.generating) and self._answer_this_search()
        focus_now(self.query_one("#candidates" if answered else "#concepts", OptionList))

    def _answer_this_search(self) -> bool:
        """Whether the candidates (shown or coming) were asked for with the search the box holds now."""
        return self._generated_query == self._query()

    def on_steer_pane_concepts(self, message: "SteerPane.Concepts") -> None:
        message.stop()
        if message.passage != self._passage:
            return  # for an earlier passage
        query = self._query()
        if not message.query:
            self._span_concepts = list(message.concepts)
            if query:
                return  # a search is showing
        elif message.query != query:
            return  # an older search
        self._show_concepts(message)

    def _show_concepts(self, message: "SteerPane.Concepts") -> None:
        box = self.query_one("#concepts", OptionList)
        box.clear_options()
        self._shown_query = message.query
        if self._generate_when_shown and message.query == self._query():
            self._generate_when_shown = False
            self.call_later(self.action_generate)  # what the writer asked for while the list was not ready
        words = self._words(message.query or "")
        if not message.concepts:
            box.add_option(Option(Text(message.note, style="dim italic"), disabled=True))
            if words:
                box.add_option(self._words_option(words))
                box.highlighted = 1
            return
        box.add_option(Option(Text(message.note, style="dim"), disabled=True))
        if words and message.words_first:
            box.add_option(self._words_option(words))
        for concept in message.concepts:
            line = Text(f"#{concept.id:<6}", style="bold")
            line.append(concept.label)
            if isinstance(concept, ConceptMatch):
                line.append(f"\n   label {concept.label_score:.2f} · output {concept.output_score:+.2f}",
                            style="cyan" if concept.output_score > 0 else "dim")
                line.append(f"  {concept.why.split(';')[0]}", style="dim")
            elif concept.activation:
                line.append(f"  {concept.activation:.2f}", style="dim")
            box.add_option(Option(line, id=str(concept.id)))
        if words and not message.words_first:
            box.add_option(self._words_option(words))
        box.highlighted = 1

    @staticmethod
    def _words(query: str) -> str:
        """The query as words a rewrite can go by alone ("" for a feature number or a "like:" example)."""
        query = query.strip()
        return "" if (not query or query.isdigit() or query.lower().startswith(LIKE_PREFIX)) else query

    @staticmethod
    def _words_option(words: str) -> Option:
        line = Text("✎ ", style="bold")
        line.append(f"{words!r} alone")
        line.append("\n   no feature: the instruction rewrites, steered by the words' own direction (hybrid); "
                    "measured by how much more the model expects the words after a rewrite", style="dim")
        return Option(line, id=WORDS_OPTION)

    @on(OptionList.OptionSelected, "#concepts")
    def _concept_chosen(self) -> None:
        self.action_generate()

    def _query(self) -> str:
        """What the search box asks for now."""
        return self.query_one("#search", Input).value.strip()

    def _chosen(self) -> str | None:
        """The highlighted concept's option id (a feature number, or WORDS_OPTION), or None."""
        box = self.query_one("#concepts", OptionList)
        if box.highlighted is None:
            return None
        return box.get_option_at_index(box.highlighted).id

    def chosen_feature(self) -> int | None:
        chosen = self._chosen()
        return int(chosen) if chosen is not None and chosen != WORDS_OPTION else None

    # ----- the request -------------------------------------------------------------------------------------
    def build_request(self) -> SteerRequest:
        feature = self.chosen_feature()
        alone = self._chosen() == WORDS_OPTION
        if feature is None and not alone:
            raise MorphError("choose a concept first (the list above, or search for one)")
        mode = MODES[self.query_one("#mode", RadioSet).pressed_index or 0]
        method = PANE_METHODS[max(0, self.query_one("#method", RadioSet).pressed_index or 0)]
        number = self.query_one("#strength-number", Input).value.strip()
        auto = False
        if number:
            strength = strength_value(number)
        else:
            index = self.query_one("#strength", RadioSet).pressed_index
            name = STRENGTHS[0 if index is None or index < 0 else index]
            auto = name == AUTO
            strength = 1.0 if auto else PRESETS[name]
        words = self._words(self._query())
        if words and mode == "toward" and direction_of(words) == "away":
            mode = "away"  # "less jargon": away from the jargon features
        count_text = self.query_one("#count", Input).value.strip() or str(self.n)
        try:
            count = int(count_text)
        except ValueError:
            raise MorphError(f"the number of candidates must be a whole number, not {count_text!r}") from None
        self._runs += 1
        seed = self.seed if self.seed is not None else self._runs - 1
        if feature is None:  # the words alone
            return SteerRequest.by_words(words, mode=mode, strength=AUTO if auto else strength, n=count, seed=seed,
                                         method=method)
        return SteerRequest(features=((feature, strength),), mode=mode, n=count, seed=seed, method=method,
                            concept=words, auto_strength=auto)

    # ----- generating --------------------------------------------------------------------------------------
    def action_generate(self) -> None:
        if not self.is_open or self.steerer is None:
            return
        self.query_one("#error", Static).update("")
        query = self._query()
        if self._shown_query != query:  # the list does not answer the search yet: generate when it does
            self._generate_when_shown = True
            self.query_one("#status", Static).update(
                f"Generating as soon as the concepts for {query!r} are found…" if query else
                "Generating as soon as the passage is read…")
            return
        try:
            request = self.build_request()
        except Exception as err:  # noqa: BLE001 - a bad setting is one line in the pane
            self.query_one("#status", Static).update("")
            self.show_error(one_line(err))
            return
        self._stop()
        self._run += 1
        self._cancel = threading.Event()
        self.candidates = []
        self.result = None
        self._generated_query = query
        self.query_one("#candidates", OptionList).clear_options()
        self.query_one("#accept", Button).disabled = True
        verb = {"toward": "toward", "away": "away from", "suppress": "suppressing"}[request.mode]
        if request.features:
            label = self.steerer.label(request.features[0][0])
            words = f" ({request.concept!r})" if request.concept else ""
            self._headline = f"{verb} #{request.features[0][0]} {label}{words}"
        else:
            self._headline = f"{verb} {request.concept!r} (your words alone)"
        self._units = "" if request.features else " nats"
        # Text, not markup: the headline holds the writer's words and a label ("[...]" is no style)
        self.query_one("#status", Static).update(Text(f"Generating {request.n} candidates {self._headline}…"))
        self.generating = True
        self._generate(self._run, self.text, self.start, self.end, request, self._cancel)

    @work(thread=True, group="steer", exclusive=True, exit_on_error=False, name="steer")
    def _generate(self, run: int, text: str, start: int, end: int, request: SteerRequest,
                  cancel: threading.Event) -> None:
        from textual.worker import get_current_worker

        token = _Cancel(cancel, get_current_worker())
        shown = 0.0
        try:
            for event in self.steerer.stream(text, start, end, request, token):
                if token.is_set() and not isinstance(event, SteerDone):
                    continue
                if isinstance(event, SteerProgress):  # at most ~10 a second: the writer is typing
                    now = time.monotonic()
                    if now - shown < PROGRESS_EVERY_S:
                        continue
                    shown = now
                self.post_message(self.Event(run, event))
        except Exception as err:  # noqa: BLE001 - shown in the pane, never crashes the editor
            self.post_message(self.Failed(run, one_line(err)))

    def on_steer_pane_event(self, message: "SteerPane.Event") -> None:
        message.stop()
        if message.run != self._run:
            return  # a stale run
        event = message.event
        status = self.query_one("#status", Static)
        if isinstance(event, SteerProgress):
            more = "that keep the sentence and add to it" if event.adds else "more"
            again = (f" (none of the first {event.n // 2} moved it unmarked: {event.n // 2} {more})"
                     if event.round > 1 else "")
            status.update(Text(f"Generating {self._headline}{again}: token {event.step}/{event.max_steps}, "
                               f"{event.finished} of {event.n} candidates ready"))
        elif isinstance(event, CandidateReady):
            self.candidates.append(event.candidate)
            self._show_candidates(self.candidates, ranked=False)
        elif isinstance(event, SteerDone):
            self.generating = False
            self.result = event.result
            self.candidates = list(event.result.candidates)
            self._show_candidates(self.candidates, ranked=True)
            first = event.result.first_candidate_s
            state = "cancelled" if event.result.cancelled else "done"
            how = event.result.method + (" · strength auto" if event.result.ladder else "")
            rounds = (" in two rounds" + (" (the second kept the sentence and added to it)"
                                          if any(c.adds for c in self.candidates) else "")
                      if event.result.rounds > 1 else "")
            status.update(Text(f"{state}: {len(self.candidates)} candidates{rounds} {self._headline} [{how}], "
                               f"{moved_summary(self.candidates)}"
                               f"{'' if first is None else f'; first after {first:.1f} s'}"
                               f" ({event.result.tokens_per_s:.0f} tokens/s). {key_text('steer_pane.accept')} "
                               "accepts."))

    def on_steer_pane_failed(self, message: "SteerPane.Failed") -> None:
        message.stop()
        if message.run is None:
            if message.passage != self._passage:
                return
            # nothing to wait for: a Generate asked for meanwhile has no concept (the error says why)
            self._span_concepts, self._shown_query, self._generate_when_shown = [], "", False
            self.query_one("#concepts", OptionList).clear_options()
            self.query_one("#status", Static).update("")
        elif message.run != self._run:
            return
        else:
            self.generating = False
            self.query_one("#status", Static).update("")
        self.show_error(message.error)

    def _show_candidates(self, candidates: list[Candidate], ranked: bool) -> None:
        box = self.query_one("#candidates", OptionList)
        keep = box.highlighted
        box.clear_options()
        original = self.original.strip()
        for position, c in enumerate(candidates):
            line = Text(f"{c.rank if ranked else '·'} ", style="bold")
            line.append_text(word_diff(original, c.text.strip()))
            marks = getattr(c, "marks", ())
            parts = dict(getattr(c, "parts", ()))
            ok = c.passes
            line.append(f"\n   {'✓' if ok else '✗'} score {c.score:.2f}", style="bold green" if ok else "dim")
            if parts:
                line.append(f" = concept {parts['concept']:.2f} ({c.gain:+.2f}{self._units}) · fluency "
                            f"{parts['fluency']:.2f} ({c.fluency_change:+.2f}) · meaning {parts['meaning']:.2f} · "
                            f"length {parts['length']:.2f}", style="green" if ok else "dim")
            words = getattr(c, "words_gain", None)
            if words is not None and not self._units:  # by the words alone it is the concept's gain above
                line.append(f" · words {words:+.2f}", style="dim")
            at = strength_text(getattr(c, "strength", None))
            if at:
                line.append(f" · {at}", style="dim")
            if c.adds:
                line.append(" · adds to the sentence", style="dim")
            if marks:
                line.append(f"\n   marked: {', '.join(marks)}", style="yellow")
            line.append("\n")
            box.add_option(Option(line, id=str(position)))
        if candidates:
            box.highlighted = 0 if ranked or keep is None else min(keep, len(candidates) - 1)
            self.query_one("#accept", Button).disabled = False
            # Never take the focus from the text: only move it within the pane, and not from a search the
            # writer has changed since (typing another query meanwhile)
            searching = self.query_one("#search", Input).has_focus
            if ranked and self.has_focus_within and (not searching or self._answer_this_search()):
                focus_now(box)

    # ----- accepting, leaving and closing ------------------------------------------------------------------
    @on(OptionList.OptionSelected, "#candidates")
    def _candidate_chosen(self, event: OptionList.OptionSelected) -> None:
        self._accept(int(event.option.id))

    def action_accept(self) -> None:
        box = self.query_one("#candidates", OptionList)
        if box.highlighted is not None and self.candidates:
            self._accept(box.highlighted)

    def _accept(self, position: int) -> None:
        if not (0 <= position < len(self.candidates)):
            return
        if self.passage_now() is None:
            self.refuse_accept()
            return
        self.post_message(self.Accepted(self, self.candidates[position].text))

    def refuse_accept(self) -> None:
        """The passage no longer reads as it did: say why the rewrite is not applied (here and in a notice)."""
        note = edited_note(self.steer_key)
        self.show_error(note)
        self.notify(note, title="Not applied", severity="warning")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "generate":
            self.action_generate()
        elif event.button.id == "accept":
            self.action_accept()
        else:
            self.action_close()

    def on_key(self, event: events.Key) -> None:
        """Typing on the concept or candidate list searches: the lists have no use for letters, so a printable
        key there goes to the search box (the writer who opens the pane and types "calmer", or comes back to
        the candidates with Ctrl+E and types another concept, finds it typed where it means something),
        beginning a new query. The box takes its keys itself, so a key that comes here while it has the focus
        was typed on a list before the focus moved (the rest of the word, typed in one breath): it goes on to
        the box, in order, and so do the editing keys among them (Backspace...)."""
        focused = self.screen.focused
        lists = ("concepts", "candidates")
        if focused is None or focused.id not in (*lists, "search") or event in self._passed_on:
            return  # (a key passed on that the box did not take comes back: it goes no further)
        if not ((event.is_printable and event.character) or (focused.id == "search" and event.key in SEARCH_KEYS)):
            return
        event.stop()
        event.prevent_default()
        search = self.query_one("#search", Input)
        if focused.id in lists:
            search.value = ""
            search.select_on_focus = False  # select-all on focus would eat the keys that follow
            focus_now(search)
        key = events.Key(event.key, event.character)
        self._passed_on.add(key)
        search.post_message(key)

    def on_descendant_blur(self, event: events.DescendantBlur) -> None:
        if isinstance(event.widget, Input) and event.widget.id == "search":
            event.widget.select_on_focus = True  # coming back to the box selects the query again

    def focus_pane(self) -> None:
        """Focus the candidates if there are any, else the concepts."""
        focus_now(self.query_one("#candidates" if self.candidates else "#concepts", OptionList))

    def action_cycle_focus(self, step: int) -> None:
        """Focus the pane's next (step 1) or previous (-1) focusable widget, going round within the pane."""
        inside = [w for w in self.screen.focus_chain if self in w.ancestors]
        if not inside:
            return
        current = self.screen.focused
        if current in inside:
            focus_now(inside[(inside.index(current) + step) % len(inside)])
        else:
            focus_now(inside[0 if step > 0 else -1])

    def action_leave(self) -> None:
        """Back to the text; the pane stays open and any generation goes on."""
        focus_now(self.text_area)

    def _stop(self) -> None:
        self.generating = False
        if self._cancel is not None:
            self._cancel.set()
        self.workers.cancel_group(self, "steer")

    def close(self) -> None:
        """Hide the pane, cancel any generation and stop following the document."""
        if not self.is_open:
            return
        self._stop()
        self._run += 1
        self._generate_when_shown = False
        self.workers.cancel_group(self, "steer-concepts")
        if self.tracker is not None:
            self.tracker.detach()
        self.remove_class("-open")
        self.post_message(self.Closed(self))

    def action_close(self) -> None:
        had_focus = self.has_focus_within
        self.close()
        if had_focus:
            focus_now(self.text_area)
