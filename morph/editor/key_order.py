"""Keys act in the order they were typed, and follow the focus a key moved.

Textual hands each key to the focused widget's own queue. Two things could then put a key typed in the same breath
as another behind it, or send it to the wrong widget:

- A key the widget does not take itself (Backspace, the arrows, Home: bindings, not characters) goes back up to
  the app, whose bindings act on it there, behind the keys typed after it that already wait at the widget:
  "ab", Backspace, "c" typed at once read "abc" with the c then deleted. `OwnKeysInOrder` has the widget act on
  its own bindings where the key arrives.
- Textual's `Widget.focus` queues the change behind the app's waiting messages, the keys typed after the key that
  moved the focus among them: each went to the widget that still had the focus (Ctrl+E then "calm" replaced the
  passage being steered with "calm"). `focus_now` moves it at once; called from a priority binding's action
  (those act in the app's own loop, before the next key is passed on: actions.Action.priority), every key typed
  after goes where the focus went.
"""

from __future__ import annotations

from typing import cast

from textual import events
from textual.dom import NoScreen
from textual.widget import Widget
from textual.widgets import Input


def focus_now(widget: Widget) -> None:
    """Give `widget` the focus now, not when the app's queue reaches the change."""
    try:
        widget.screen.set_focus(widget)
    except NoScreen:  # not on a screen (yet, or any more)
        pass


class OwnKeysInOrder:
    """Mixed into a widget (before its Textual class): its own key bindings, the user's keymap applied, act in
    its own turn, in the order the keys were typed. (A plain mixin: a Widget base here would cut the Textual
    class's CSS and component classes off the inheritance Textual walks.)"""

    async def _on_key(self, event: events.Key) -> None:
        # Textual calls each class's _on_key down the MRO, this one first: keys the widget takes itself
        # (characters; Tab in the text) are left to the rest, and a binding acted on here stops them.
        widget = cast(Widget, self)
        if widget.check_consume_key(event.key, event.character):
            return
        chain = widget.screen._modal_binding_chain  # from the focused widget up, the keymap applied
        if not chain or chain[0][0] is not widget:
            return  # the focus has moved on: the key goes up as Textual sends it
        for binding in chain[0][1].key_to_bindings.get(event.key, ()):
            # priority bindings acted in the app before the key was passed on; an action that is off
            # (check_action) lets the key go on up, as it would have
            if not binding.priority and await widget.app.run_action(binding.action, widget):
                event.stop()
                event.prevent_default()
                return


class TextInput(OwnKeysInOrder, Input):
    """A one-line input box whose editing keys act in the order typed."""
