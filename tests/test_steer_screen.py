"""The steering pane, driven by Pilot in a minimal app beside a document, on the tiny model (and fakes
for timing cases); the passage tracker on its own."""

from __future__ import annotations

import threading
import time

import pytest
from textual import events
from textual.app import App, ComposeResult
from textual.widgets import Button, Input, OptionList, Static

from morph.editor.document import DocumentView
from morph.editor.steer_pane import PassageTracker, SteerPane, changed_region, word_diff
from morph.errors import InputError
from morph.features.concepts import Concept, ConceptMatch
from morph.features.steering import (Candidate, OriginalScore, SteerDone, Steerer, SteerProgress, SteerRequest,
                                     SteerResult)

TEXT = "The river ran past the old mill.\nIn the evening the lamps were lit along the harbour. Sailors sang.\n"
SPAN = "In the evening the lamps were lit along the harbour."
START = TEXT.index(SPAN)
END = START + len(SPAN)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Host(App):
    """A document and the pane, open on SPAN; records what the pane says to its host."""

    CSS = "Screen { layout: horizontal; } DocumentView { width: 1fr; }"

    def __init__(self, steerer, **kwargs):
        super().__init__()
        self.steerer, self.kwargs = steerer, kwargs
        self.accepted: list[str] = []
        self.closed = 0

    def compose(self) -> ComposeResult:
        self.view = DocumentView(TEXT)
        yield self.view
        yield SteerPane(self.view, id="steer", **self.kwargs)

    def on_mount(self) -> None:
        self.query_one(SteerPane).open(self.steerer, START, END)

    def on_steer_pane_accepted(self, message: SteerPane.Accepted) -> None:
        self.accepted.append(message.replacement)

    def on_steer_pane_closed(self, message: SteerPane.Closed) -> None:
        self.closed += 1


async def settle(pilot, until, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.05)
    await pilot.pause()


async def test_generate_then_accept_on_the_tiny_model(tiny_lens):
    steerer = Steerer(tiny_lens)
    app = Host(steerer, n=2, seed=0)
    async with app.run_test(size=(130, 45)) as pilot:
        pane = app.query_one(SteerPane)
        assert pane.is_open and pane.display
        concepts = pane.query_one("#concepts", OptionList)
        await settle(pilot, lambda: concepts.option_count > 1)
        assert concepts.has_focus
        assert pane.chosen_feature() == steerer.concepts(TEXT, START, END, 1)[0].id
        # Search by label (a feature number is a label search too).
        await pilot.click("#search")
        await pilot.press("1", "7")
        await settle(pilot, lambda: pane.chosen_feature() == 17)
        await pilot.click("#mode-suppress", offset=(2, 0))
        await pilot.click("#generate")
        await settle(pilot, lambda: pane.result is not None)
        assert pane.result.request.mode == "suppress" and pane.result.request.features[0][0] == 17
        box = pane.query_one("#candidates", OptionList)
        # the tiny model's rewrites never pass: a second round of two more, which the status says
        assert pane.result.rounds == 2 and box.option_count == 4
        assert "4 candidates in two rounds" in str(pane.query_one("#status", Static).render())
        assert not pane.query_one("#accept", Button).disabled
        best = pane.result.candidates[0].text
        box.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert app.accepted == [best]
        assert app.view.text == TEXT  # replacing is the host's business


class FakeSteerer:
    """Slow, scripted engine calls: a stream that takes many small steps and honours the cancel token;
    with `candidates`, it ends (after `gate` is set, if given) with those texts as the ranked result."""

    def __init__(self, fail: str | None = None, candidates: tuple[str, ...] = (), gate=None,
                 second_round_at: int | None = None, adds: bool = False):
        self.fail = fail
        self.second_round_at = second_round_at  # the step from which progress is a second round's
        self.adds = adds  # ... one that keeps the sentence and adds to it, as its candidates do
        self.cancel = None
        self.steps = 0
        self.candidates = candidates
        self.gate = gate
        self.prepared: list[str] = []

    def concepts(self, text, start, end, k=10):
        return [Concept(5, "harbours and ships", 1.5), Concept(9, "evening light", 0.7)]

    def search(self, query, limit=10):
        raise InputError(f"no feature label matches {query!r}")

    def label(self, feature):
        return f"label {feature}"

    def prepare(self, text, start, end, method="auto"):
        self.prepared.append(text[start:end])

    def stream(self, text, start, end, request, cancel=None):
        if self.fail:
            raise InputError(self.fail)
        self.cancel = cancel
        return self._events(text[start:end], request, cancel)

    def _events(self, original, request, cancel):
        for step in range(1, 100_000):  # about 8 minutes at most
            if cancel is not None and cancel.is_set():
                return
            if self.candidates and (self.gate is None or self.gate.is_set()):
                yield SteerDone(fake_result(original, self.candidates, request, self.adds))
                return
            self.steps = step
            time.sleep(0.005)
            if self.second_round_at is not None and step >= self.second_round_at:
                yield SteerProgress(step - self.second_round_at + 1, 2000, 4, 8, round=2, adds=self.adds)
            else:
                yield SteerProgress(step, 2000, 0, 4)


def fake_result(original: str, texts, request: SteerRequest, adds: bool = False) -> SteerResult:
    candidates = tuple(Candidate(k, t, 1.0, -2.0, 0.8, 0.5, 1.0, True, 5, rank=k + 1, adds=adds)
                       for k, t in enumerate(texts))
    return SteerResult(OriginalScore(original, 0.1, -2.0, 5), candidates, request, request.features, (1.0,),
                       ("label",), False, False, 0.1, 0.2, 10, rounds=2 if adds else 1)


async def test_escape_goes_back_to_the_text_and_closing_cancels():
    fake = FakeSteerer()
    app = Host(fake)
    async with app.run_test(size=(130, 45)) as pilot:
        pane = app.query_one(SteerPane)
        await settle(pilot, lambda: pane.chosen_feature() == 5)
        await settle(pilot, lambda: fake.prepared == [pane.original])  # read ahead while the writer chooses
        await pilot.click("#generate")
        await settle(pilot, lambda: fake.steps > 3)
        assert "token" in str(pane.query_one("#status", Static).render())
        # Escape: back to the text; the pane stays and the generation goes on.
        await pilot.press("escape")
        assert app.view.has_focus and pane.is_open
        steps = fake.steps
        await settle(pilot, lambda: fake.steps > steps + 3)
        assert not fake.cancel.is_set()
        # Close (F4 in the pane): cancelled, hidden, the text has the focus.
        pane.focus_pane()
        await pilot.press("f4")
        await pilot.pause(0.1)
        assert fake.cancel.is_set() and not pane.is_open and app.closed == 1
        steps = fake.steps
        await pilot.pause(0.1)
        assert fake.steps <= steps + 1
        assert app.view.has_focus and app.view.text == TEXT
    assert app.accepted == []


async def generate_on_feature_5(pilot, app) -> SteerPane:
    """The pane once the fake's first concept is chosen and Generate is clicked."""
    pane = app.query_one(SteerPane)
    await settle(pilot, lambda: pane.chosen_feature() == 5)
    await pilot.click("#generate")
    return pane


async def test_a_second_round_is_said_while_it_runs():
    app = Host(FakeSteerer(second_round_at=5))
    async with app.run_test(size=(130, 45)) as pilot:
        pane = await generate_on_feature_5(pilot, app)
        status = pane.query_one("#status", Static)
        await settle(pilot, lambda: "4 more" in str(status.render()))
        assert "(none of the first 4 moved it unmarked: 4 more)" in str(status.render())
        assert "4 of 8 candidates ready" in str(status.render())
        await pilot.press("f4")


async def test_a_second_round_that_adds_to_the_sentence_says_so():
    gate = threading.Event()
    added = "In the evening the lamps were lit along the harbour, and the water lay still."
    app = Host(FakeSteerer(second_round_at=5, adds=True, candidates=(added,), gate=gate))
    async with app.run_test(size=(130, 45)) as pilot:
        pane = await generate_on_feature_5(pilot, app)
        status = pane.query_one("#status", Static)
        await settle(pilot, lambda: "add to it" in str(status.render()))
        assert "(none of the first 4 moved it unmarked: 4 that keep the sentence and add to it)" in str(
            status.render())
        gate.set()
        await settle(pilot, lambda: pane.result is not None)
        assert "in two rounds (the second kept the sentence and added to it)" in str(status.render())
        line = pane.query_one("#candidates", OptionList).get_option_at_index(0).prompt
        assert "adds to the sentence" in str(line)
        await pilot.press("f4")


async def test_errors_are_shown_in_the_pane():
    app = Host(FakeSteerer(fail="the selection is only whitespace: select words to rewrite"))
    async with app.run_test(size=(130, 45)) as pilot:
        pane = await generate_on_feature_5(pilot, app)
        error = pane.query_one("#error", Static)
        await settle(pilot, lambda: "whitespace" in str(error.render()))
        # A bad strength is caught before anything runs.
        pane.query_one("#strength-number", Input).value = "loud"
        await pilot.click("#count")
        await pilot.press("ctrl+g")
        await settle(pilot, lambda: "strength" in str(error.render()))
        # A search that matches nothing says so in the list.
        pane.query_one("#search", Input).value = "zebra"
        concepts = pane.query_one("#concepts", OptionList)
        await settle(pilot, lambda: "no feature label matches" in str(concepts.get_option_at_index(0).prompt))
        assert pane.is_open and app.accepted == []


async def test_edits_around_the_passage_move_it_and_edits_inside_block_accepting():
    gate = threading.Event()
    fake = FakeSteerer(candidates=("In the evening the lanterns glowed along the harbour.",), gate=gate)
    app = Host(fake)
    async with app.run_test(size=(130, 45)) as pilot:
        pane, view = app.query_one(SteerPane), app.view
        await settle(pilot, lambda: pane.chosen_feature() == 5)
        await pilot.press("ctrl+g")
        await settle(pilot, lambda: fake.steps > 2)
        view.focus()
        view.move_cursor((0, 0))
        await pilot.press("A", "h", "!", "space")  # typing before the passage while it generates
        view.move_cursor((1, len(view.document[1])))
        await pilot.press("space", "O", "k")  # and after it
        assert pane.generating
        gate.set()
        await settle(pilot, lambda: pane.result is not None)
        assert view.has_focus  # the result does not take the focus from the text
        assert pane.passage_now() == (START + 4, END + 4)
        assert view.text[START + 4:END + 4] == SPAN
        pane.action_accept()
        await pilot.pause()
        assert app.accepted == ["In the evening the lanterns glowed along the harbour."]
        # An edit inside the passage blocks accepting, and says so; undoing it lets it through again.
        view.move_cursor(view.location_of(START + 4 + 3))
        await pilot.press("x")
        assert pane.passage_now() is None
        assert "edited" in str(pane.query_one("#passage-note", Static).render())
        pane.action_accept()
        await pilot.pause()
        assert len(app.accepted) == 1 and "edited" in str(pane.query_one("#error", Static).render())
        view.undo()
        assert pane.passage_now() == (START + 4, END + 4)


def test_tracker_shifts_with_edits_before_and_flags_edits_inside():
    t = PassageTracker(10, 20, "x" * 10)
    t.shift(0, 0, 3)  # insert 3 before
    assert (t.start, t.end, t.touched) == (13, 23, False)
    t.shift(23, 23, 5)  # at the end: after it
    assert (t.start, t.end, t.touched) == (13, 23, False)
    t.shift(2, 13, 2)  # delete up to its start
    assert (t.start, t.end, t.touched) == (2, 12, False)
    t.shift(5, 6, 5)  # delete a character inside
    assert (t.start, t.end, t.touched) == (2, 11, True)


def test_changed_region():
    assert changed_region("abcdef", "abXYef") == (2, 4, 4)
    assert changed_region("abc", "abc") == (3, 3, 3)
    assert changed_region("abc", "zabc") == (0, 0, 1)
    assert changed_region("aaa", "aaaa") == (3, 3, 4)


async def test_tracker_follows_a_text_area_through_undo_and_redo():
    class One(App):
        def compose(self) -> ComposeResult:
            yield DocumentView(TEXT)  # the tracker follows the view's stream of edits

    app = One()
    async with app.run_test() as pilot:
        area = app.query_one(DocumentView)
        t = PassageTracker(START, END, SPAN)
        t.attach(area)
        area.insert("Hello. ", (0, 0))
        assert area.text[t.start:t.end] == SPAN
        area.history.checkpoint()
        area.insert("!", (1, 5))  # inside
        assert t.touched and not t.intact(lambda a, b: area.text[a:b])
        area.undo()
        assert t.intact(lambda a, b: area.text[a:b])
        area.undo()
        assert (t.start, t.end) == (START, END)
        area.redo()
        assert (t.start, t.end) == (START + 7, END + 7)
        area.load_text("other")
        assert not t.intact(lambda a, b: area.text[a:b])
        t.detach()
        assert "edit" not in area.__dict__
        await pilot.pause()


def test_word_diff_marks_insertions_and_deletions():
    diff = word_diff("the lamps were lit", "the lanterns were lit")
    assert diff.plain == "the lampslanterns were lit"
    styles = {str(span.style) for span in diff.spans}
    assert "strike red" in styles and "bold green" in styles


# ----- issue 14: words, methods, automatic strength, scores and marks ------------------------------------------

def _chat_steerer(tiny_lens):
    import copy
    import dataclasses

    tokenizer = copy.deepcopy(tiny_lens.tokenizer)
    tokenizer.chat_template = ("{% for m in messages %}<|endoftext|>{{ m['role'] }}: {{ m['content'] }}\n"
                               "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}")
    return Steerer(dataclasses.replace(tiny_lens, tokenizer=tokenizer))


def _a_label_word(steerer):
    labels = steerer.labels
    return next(w for w in (labels.label(i).split(" · ")[0].strip() for i in range(steerer.lens.d_sae))
                if w.isalpha() and len(w) >= 3)


async def test_words_method_and_auto_strength_from_the_pane(tiny_lens):
    """The writer types words: the list shows the chosen features with label and output scores and why;
    Generate runs the chosen method with the words in the instruction and the strength swept; every
    candidate shows its combined score, its parts and its marks."""
    steerer = _chat_steerer(tiny_lens)
    word = _a_label_word(steerer)
    app = Host(steerer, n=2, seed=0)
    async with app.run_test(size=(130, 45)) as pilot:
        pane = app.query_one(SteerPane)
        concepts = pane.query_one("#concepts", OptionList)
        await settle(pilot, lambda: concepts.option_count > 1)
        pane.query_one("#search", Input).value = f"more {word}"
        await settle(pilot, lambda: "output" in str(concepts.get_option_at_index(1).prompt))
        first = str(concepts.get_option_at_index(1).prompt)
        assert "label" in first and "output" in first
        assert f"'more {word}'" in str(concepts.get_option_at_index(0).prompt)
        await pilot.click("#method-hybrid", offset=(2, 0))
        await pilot.click("#generate")
        await settle(pilot, lambda: pane.result is not None)
        result = pane.result
        assert result.method == "hybrid" and result.request.concept == f"more {word}"
        assert result.request.auto_strength and len(result.ladder) == 2 * result.rounds
        assert word in result.instruction
        box = pane.query_one("#candidates", OptionList)
        shown = str(box.get_option_at_index(0).prompt)
        assert "score" in shown and "concept" in shown and "fluency" in shown and "meaning" in shown
        for k, c in enumerate(pane.candidates):
            if c.marks:
                assert "marked: " + ", ".join(c.marks) in str(box.get_option_at_index(k).prompt)
        assert "hybrid · strength auto" in str(pane.query_one("#status", Static).render())
        # A preset overrides the sweep; "less ..." words steer away.
        await pilot.click("#strength-strong", offset=(2, 0))
        pane.query_one("#search", Input).value = f"less {word}"
        await settle(pilot, lambda: f"'less {word}'" in str(concepts.get_option_at_index(0).prompt))
        request = pane.build_request()
        assert request.mode == "away" and not request.auto_strength and request.features[0][1] == 8.0


async def test_more_like_this_from_the_pane(tiny_lens):
    steerer = Steerer(tiny_lens)
    app = Host(steerer, n=1, seed=0)
    async with app.run_test(size=(130, 45)) as pilot:
        pane = app.query_one(SteerPane)
        concepts = pane.query_one("#concepts", OptionList)
        await settle(pilot, lambda: concepts.option_count > 1)
        pane.query_one("#search", Input).value = "like: Gulls and ships on the grey sea beyond the wall."
        await settle(pilot, lambda: "more like the example" in str(concepts.get_option_at_index(0).prompt))
        assert concepts.option_count > 1 and "output" in str(concepts.get_option_at_index(1).prompt)
        request = pane.build_request()
        assert request.concept == "" and request.features[0][0] == pane.chosen_feature()
        # a model without a chat template: the instruct methods say so in the pane
        await pilot.click("#method-prompt", offset=(2, 0))
        await pilot.click("#generate")
        await settle(pilot, lambda: "chat template" in str(pane.query_one("#error", Static).render()))


async def test_typing_on_the_concept_list_searches():
    """The pane opens on its concept list; a writer who types what they want at once finds it in the search box."""
    fake = FakeSteerer()
    app = Host(fake)
    async with app.run_test(size=(130, 45)) as pilot:
        pane = app.query_one(SteerPane)
        await settle(pilot, lambda: pane.query_one("#concepts", OptionList).has_focus)
        await pilot.press("c", "a", "l", "m")
        search = pane.query_one("#search", Input)
        assert search.has_focus and search.value == "calm"
        assert app.view.text == TEXT  # nothing reached the document
        pane.query_one("#concepts", OptionList).focus()
        await pilot.pause()
        assert search.select_on_focus  # back in the box later, the query is selected again
        await pilot.press("s")
        assert search.value == "s"  # typing on the list again begins a new query
        # keys that arrive together (typed fast, in a real terminal) all reach the query, none is lost
        pane.query_one("#concepts", OptionList).focus()
        await pilot.pause()
        for key in "sea":
            app.post_message(events.Key(key, key))
        await settle(pilot, lambda: search.value == "sea")
        # keys already handed to the list before the box took the focus keep their order, an editing key
        # among them included
        concepts = pane.query_one("#concepts", OptionList)
        concepts.focus()
        await pilot.pause()
        for key in ["s", "u", "n", "backspace", "backspace", "e", "a"]:
            concepts.post_message(events.Key(key, key if len(key) == 1 else None))
        await pilot.pause(0.3)
        assert search.value == "sea" and search.has_focus


async def test_generate_before_the_search_answers_waits_for_it():
    """The writer types what they want and Generate at once: the list still shows the passage's concepts (or
    nothing yet), so the pane waits for the search's answer and then steers toward its first concept, not
    toward whatever the list showed before."""
    gate = threading.Event()

    class SlowSearch(FakeSteerer):
        def concepts_for(self, words, text, start, end, k=8, example=None):
            gate.wait(10)
            return [ConceptMatch(42, "sea · ocean", 1.0, 2.0, 3.0, "labels hold 'sea'", "label", 5.0)]

    fake = SlowSearch(candidates=("The lamps were lit along the sea.",))
    app = Host(fake)
    async with app.run_test(size=(130, 45)) as pilot:
        pane = app.query_one(SteerPane)
        concepts = pane.query_one("#concepts", OptionList)
        await settle(pilot, lambda: concepts.option_count > 1)  # the passage's own concepts are shown
        pane.query_one("#search", Input).value = "about the sea"
        await pilot.pause()
        pane.action_generate()
        await pilot.pause()
        assert not pane.generating and "as soon as the concepts for 'about the sea'" in str(
            pane.query_one("#status", Static).render())
        gate.set()
        await settle(pilot, lambda: pane.result is not None)
        assert pane.result.request.features[0][0] == 42 and pane.result.request.concept == "about the sea"


async def test_generate_when_the_passage_could_not_be_read_says_why_at_once():
    class Unreadable(FakeSteerer):
        def concepts(self, text, start, end, k=10):
            raise InputError("the model is not loaded")

    app = Host(Unreadable())
    async with app.run_test(size=(130, 45)) as pilot:
        pane = app.query_one(SteerPane)
        error = pane.query_one("#error", Static)
        await settle(pilot, lambda: "not loaded" in str(error.render()))
        pane.action_generate()
        await pilot.pause()
        assert "choose a concept first" in str(error.render()) and not pane.generating
        assert "as soon as" not in str(pane.query_one("#status", Static).render())


async def test_enter_after_generating_from_the_search_box_accepts():
    """Ctrl+G typed in the search box: the candidates answer that search, so Enter in the box goes to them
    (while they generate, and once ranked the focus moves there itself) and the next Enter accepts the top
    one; it does not go back to the concept list, where a second Enter would generate again."""
    gate = threading.Event()

    class Searching(FakeSteerer):
        def concepts_for(self, words, text, start, end, k=8, example=None):
            return [ConceptMatch(42, "sea · ocean", 1.0, 2.0, 3.0, "labels hold 'sea'", "label", 5.0)]

    fake = Searching(candidates=("The lamps were lit along the sea.", "Lamps lit the sea."), gate=gate)
    app = Host(fake)
    async with app.run_test(size=(130, 45)) as pilot:
        pane = app.query_one(SteerPane)
        search = pane.query_one("#search", Input)
        await settle(pilot, lambda: pane.query_one("#concepts", OptionList).has_focus)
        await pilot.press(*"sea")
        await settle(pilot, lambda: pane.chosen_feature() == 42)
        await pilot.press("ctrl+g")
        await settle(pilot, lambda: pane.generating)
        assert search.has_focus  # generating leaves the writer where they typed
        await pilot.press("enter")
        candidates = pane.query_one("#candidates", OptionList)
        assert candidates.has_focus and pane.generating and fake.cancel is not None and not fake.cancel.is_set()
        gate.set()
        await settle(pilot, lambda: pane.result is not None)
        await pilot.press("enter")
        await settle(pilot, lambda: app.accepted)
        assert app.accepted == ["The lamps were lit along the sea."] and fake.cancel is not None

        # Ctrl+G again and wait in the box: the ranked candidates take the focus, Enter accepts.
        app.accepted.clear()
        gate.clear()
        search.focus()
        await pilot.pause()
        await pilot.press("ctrl+g")
        await settle(pilot, lambda: pane.generating)
        gate.set()
        await settle(pilot, lambda: pane.result is not None and candidates.has_focus)
        await pilot.press("enter")
        await settle(pilot, lambda: app.accepted)
        assert app.accepted == ["The lamps were lit along the sea."]

        # A search typed anew after Ctrl+G: its Enter goes to its concepts, and the focus stays in the box
        # when the earlier search's candidates come.
        gate.clear()
        search.focus()
        await pilot.pause()
        await pilot.press("ctrl+g")
        await settle(pilot, lambda: pane.generating)
        search.value = "sky"
        await pilot.pause()
        gate.set()
        await settle(pilot, lambda: pane.result is not None)
        await pilot.pause(0.1)
        assert search.has_focus
        await pilot.press("enter")
        assert pane.query_one("#concepts", OptionList).has_focus

        # back on the candidates (as after Esc and Ctrl+E), typing another concept begins a new query
        candidates.focus()
        await pilot.pause()
        await pilot.press(*"gulls")
        await settle(pilot, lambda: search.value == "gulls" and search.has_focus)


async def test_words_no_label_holds_are_said_so_and_go_alone_first():
    """When no feature's label holds the writer's words (this SAE has no feature for
    "sadder"), the concept list says so, and offers the words alone first, chosen, above the features that
    only fire on the words (the writer can still pick one)."""
    class Unlabelled(FakeSteerer):
        def concepts_for(self, words, text, start, end, k=8, example=None):
            return [ConceptMatch(686, "thank · data · site", 0.0, 1.1, 1.0, "fires more on your words", "example"),
                    ConceptMatch(42, "sea · ocean", 0.9, 2.0, 3.0, "labels hold 'sea'", "label")][:1 if "sad" in words
                                                                                                  else 2]

    app = Host(Unlabelled())
    async with app.run_test(size=(130, 45)) as pilot:
        pane = app.query_one(SteerPane)
        concepts = pane.query_one("#concepts", OptionList)
        pane.query_one("#search", Input).value = "sadder"
        await settle(pilot, lambda: "'sadder'" in str(concepts.get_option_at_index(0).prompt))
        assert concepts.option_count == 3  # the note, the words alone, the feature
        note = str(concepts.get_option_at_index(0).prompt)
        assert "no feature's label holds 'sadder'" in note
        assert "'sadder' alone" in str(concepts.get_option_at_index(1).prompt) and concepts.highlighted == 1
        assert pane.chosen_feature() is None and pane.build_request().features == ()
        concepts.highlighted = 2
        assert pane.chosen_feature() == 686
        pane.query_one("#search", Input).value = "about the sea"
        await settle(pilot, lambda: concepts.option_count == 4)  # the note, two features, the words alone
        assert "features for 'about the sea'" in str(concepts.get_option_at_index(0).prompt)
        assert "'about the sea' alone" in str(concepts.get_option_at_index(3).prompt)
        assert pane.chosen_feature() == 686


async def test_words_no_feature_matches_are_offered_alone_and_rewrite_by_the_instruction(tiny_lens):
    """Words no feature matches ("zebra" on the fake, where the search finds nothing) leave one choice in the
    list, the words alone, highlighted; typed words that features match offer it last. Generating by the words
    alone runs the prompt method with no feature, and the candidates show the words' gain in nats."""
    fake = FakeSteerer()
    app = Host(fake)
    async with app.run_test(size=(130, 45)) as pilot:
        pane = app.query_one(SteerPane)
        await settle(pilot, lambda: pane.chosen_feature() == 5)
        pane.query_one("#search", Input).value = "zebra"
        concepts = pane.query_one("#concepts", OptionList)
        await settle(pilot, lambda: concepts.option_count == 2)
        assert "no feature label matches" in str(concepts.get_option_at_index(0).prompt)
        assert "'zebra' alone" in str(concepts.get_option_at_index(1).prompt) and concepts.highlighted == 1
        request = pane.build_request()
        assert request.features == () and request.concept == "zebra" and request.method == "auto"
    steerer = _chat_steerer(tiny_lens)
    app = Host(steerer, n=2, seed=0)
    async with app.run_test(size=(130, 45)) as pilot:
        pane = app.query_one(SteerPane)
        concepts = pane.query_one("#concepts", OptionList)
        await settle(pilot, lambda: concepts.option_count > 1)
        pane.query_one("#search", Input).value = "more mill"  # " mill" is one token of the tiny vocabulary
        await settle(pilot, lambda: "'more mill' alone" in str(concepts.get_option_at_index(
            concepts.option_count - 1).prompt))
        concepts.highlighted = concepts.option_count - 1
        await pilot.click("#generate")
        await settle(pilot, lambda: pane.result is not None)
        result = pane.result
        # auto on an instruct model: hybrid, the words' own direction swept over the candidates
        assert result.by_words and result.method == "hybrid" and result.features == () and result.ladder
        assert "more mill" in result.instruction
        assert "nats)" in str(pane.query_one("#candidates", OptionList).get_option_at_index(0).prompt)
        assert "'more mill' (your words alone) [hybrid · strength auto]," in str(
            pane.query_one("#status", Static).render())
        # a feature chosen for the same words: its candidates show the words' gain beside the feature's
        concepts.highlighted = 1
        await pilot.click("#generate")
        await settle(pilot, lambda: pane.result is not None and pane.result.features != ())
        assert " · words " in str(pane.query_one("#candidates", OptionList).get_option_at_index(0).prompt)
        # a method that steers by features says the words alone need the instruction
        concepts.highlighted = concepts.option_count - 1
        await pilot.click("#method-steer", offset=(2, 0))
        await pilot.click("#generate")
        await settle(pilot, lambda: "need the instruction" in str(pane.query_one("#error", Static).render()))
