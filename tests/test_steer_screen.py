"""The steering screen, driven by Pilot in a minimal app, on the tiny model (and fakes for timing cases)."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from textual.app import App
from textual.widgets import Button, Input, OptionList, Static

from morph.editor.steer_screen import SteerScreen, word_diff
from morph.errors import InputError
from morph.features.concepts import Concept
from morph.features.steering import Steerer, SteerProgress

TEXT = "The river ran past the old mill.\nIn the evening the lamps were lit along the harbour. Sailors sang.\n"
SPAN = "In the evening the lamps were lit along the harbour."
START = TEXT.index(SPAN)
END = START + len(SPAN)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Host(App):
    def __init__(self, screen_factory):
        super().__init__()
        self.screen_factory = screen_factory
        self.results: list = []

    def on_mount(self) -> None:
        self.push_screen(self.screen_factory(), self.results.append)


async def settle(pilot, screen, until, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.05)
    await pilot.pause()


async def test_generate_then_accept_on_the_tiny_model(tiny_lens):
    steerer = Steerer(tiny_lens)
    app = Host(lambda: SteerScreen(steerer, TEXT, START, END, n=2, seed=0))
    async with app.run_test(size=(130, 45)) as pilot:
        screen = app.screen
        assert isinstance(screen, SteerScreen)
        concepts = screen.query_one("#concepts", OptionList)
        await settle(pilot, screen, lambda: concepts.option_count > 1)
        first = screen.chosen_feature()
        assert first == steerer.concepts(TEXT, START, END, 1)[0].id
        # Search by label (a feature number is a label search too).
        await pilot.click("#search")
        await pilot.press("1", "7")
        await settle(pilot, screen, lambda: screen.chosen_feature() == 17)
        await pilot.click("#mode-suppress", offset=(2, 0))
        await pilot.click("#generate")
        await settle(pilot, screen, lambda: screen.result is not None)
        assert screen.result.request.mode == "suppress" and screen.result.request.features[0][0] == 17
        box = screen.query_one("#candidates", OptionList)
        assert box.option_count == 2
        assert "candidates" in str(screen.query_one("#status", Static).render())
        assert not screen.query_one("#accept", Button).disabled
        best = screen.result.candidates[0].text
        box.focus()
        await pilot.press("enter")
        await pilot.pause()
    assert app.results == [best]


class FakeSteerer:
    """Slow, scripted engine calls: a stream that takes many small steps and honours the cancel token."""

    def __init__(self, fail: str | None = None):
        self.fail = fail
        self.cancel = None
        self.steps = 0

    def concepts(self, text, start, end, k=10):
        return [Concept(5, "harbours and ships", 1.5), Concept(9, "evening light", 0.7)]

    def search(self, query, limit=10):
        raise InputError(f"no feature label matches {query!r}")

    def label(self, feature):
        return f"label {feature}"

    def stream(self, text, start, end, request, cancel=None):
        if self.fail:
            raise InputError(self.fail)
        self.cancel = cancel
        return self._events(cancel)

    def _events(self, cancel):
        for step in range(1, 2000):
            if cancel is not None and cancel.is_set():
                return
            self.steps = step
            time.sleep(0.005)
            yield SteerProgress(step, 2000, 0, 4)


async def test_escape_cancels_the_generation_and_dismisses_none():
    fake = FakeSteerer()
    app = Host(lambda: SteerScreen(fake, TEXT, START, END))
    async with app.run_test(size=(130, 45)) as pilot:
        screen = app.screen
        await settle(pilot, screen, lambda: screen.chosen_feature() == 5)
        await pilot.click("#generate")
        await settle(pilot, screen, lambda: fake.steps > 3)
        assert "token" in str(screen.query_one("#status", Static).render())
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert fake.cancel.is_set()
        steps = fake.steps
        await pilot.pause(0.1)
        assert fake.steps <= steps + 1
    assert app.results == [None]


async def test_errors_are_shown_in_the_screen():
    fake = FakeSteerer(fail="the selection is only whitespace: select words to rewrite")
    app = Host(lambda: SteerScreen(fake, TEXT, START, END))
    async with app.run_test(size=(130, 45)) as pilot:
        screen = app.screen
        await settle(pilot, screen, lambda: screen.chosen_feature() == 5)
        await pilot.click("#generate")
        error = screen.query_one("#error", Static)
        await settle(pilot, screen, lambda: "whitespace" in str(error.render()))
        # A bad strength is caught before anything runs.
        screen.query_one("#strength-number", Input).value = "loud"
        await pilot.press("ctrl+g")
        await settle(pilot, screen, lambda: "strength" in str(error.render()))
        # A search that matches nothing says so in the list.
        screen.query_one("#search", Input).value = "zebra"
        concepts = screen.query_one("#concepts", OptionList)
        await settle(pilot, screen, lambda: "no feature label matches" in str(concepts.get_option_at_index(0).prompt))
        assert app.screen is screen
    assert app.results == [None] or app.results == []


def test_word_diff_marks_insertions_and_deletions():
    diff = word_diff("the lamps were lit", "the lanterns were lit")
    assert diff.plain == "the lampslanterns were lit"
    styles = {str(span.style) for span in diff.spans}
    assert "strike red" in styles and "bold green" in styles
