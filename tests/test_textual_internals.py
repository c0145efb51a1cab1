"""The editor relies on a few of Textual's private names (listed where they are used); Textual's major version
is pinned, and this test fails as soon as one of them disappears, rather than a writer finding out."""

from __future__ import annotations

import importlib

from textual import events
from textual.app import App, ComposeResult
from textual.widgets import TextArea

from morph.editor import document, frames


def test_private_modules_import():
    for name in document.PRIVATE_MODULES + ("textual._time", "textual._cells", "textual._wrap"):
        importlib.import_module(name)


async def test_text_area_timer_and_screen_internals_exist_on_a_live_app():
    class One(App):
        def compose(self) -> ComposeResult:
            yield TextArea("text")

    async with One().run_test() as pilot:
        area = pilot.app.query_one(TextArea)
        timer = pilot.app.screen._update_timer
        missing = [n for n in document.TEXTAREA_INTERNALS if not hasattr(area, n)]
        assert not missing, f"Textual's TextArea lost {missing}"
        missing = [n for n in frames.TIMER_INTERNALS if not hasattr(timer, n)]
        assert not missing, f"Textual's Timer lost {missing}"
        missing = [n for n in frames.SCREEN_INTERNALS if not hasattr(pilot.app.screen, n)]
        assert not missing, f"Textual's Screen lost {missing}"
        # morph.editor.app's dialog key handling: a node's message queue, a message's stop flag
        assert hasattr(area, "_message_queue") and hasattr(events.Key("a", "a"), "_stop_propagation")
        # morph.editor.key_order: the focused widget's own bindings, the keymap applied
        assert pilot.app.screen._modal_binding_chain[0][0] is area
