"""Every action the writer reaches by a key: the one registry that the key bindings, the help screen, the hints
and the command palette all read.

An `Action` names its binding id (for the app's own actions also its `action_<id>` method and its key in the
[keys] table of config.toml), what it does, its command palette title, its default key(s) (Textual key names,
comma separated), the widget whose binding it is, and whether the user may remap it. The widgets build their
BINDINGS from here (`bindings(target)`), each with its id; the user's [keys] reach them through Textual's
keymap (`App.set_keymap`, by binding id), and every text that names a key reads it from the keys in force
(`key_for`), so a remapped key is the one shown.

No Textual import at module level: morph.config reads the default keys from here (`default_keys`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from textual.binding import Binding

Target = Literal["app", "document", "panel", "steer_pane", "find_bar", "confirm", "goto_line", "help", "recovery",
                 "path_dialog", "feature_details"]
DIALOGS: frozenset[str] = frozenset({"confirm", "goto_line", "help", "recovery", "path_dialog", "feature_details"})
"""Targets that are dialogs: their keys act only while the dialog is open, so the help screen leaves them out."""


@dataclass(frozen=True)
class Action:
    id: str
    """The binding id; for the app's actions also the method (`action_<id>`) and the [keys] entry."""
    description: str
    """What it does, as the help screen says it."""
    key: str
    """The default key(s): Textual key names, comma separated."""
    title: str = ""
    """Its command palette title ('' : not in the palette)."""
    target: Target = "app"
    """Whose binding it is: the app (a priority binding: it wins over the text area's own keys) or a widget."""
    configurable: bool = True
    """The user may remap it in [keys]."""
    call: str = ""
    """The action string bound, when it is not the id (parameters, or the widget's own name for it)."""
    show: bool = False
    """Shown in a footer (Morph shows none)."""
    bound: bool = True
    """False: a key the target widget's own class handles (a list's Enter), listed for the help screen only."""
    needs_document_focus: bool = False
    """Off unless the text has the focus (undo in the find box is the find box's)."""
    panel: bool = False
    """Acts on the features panel: off while the steering pane has the panel's place."""

    @property
    def priority(self) -> bool:
        """A priority binding: it wins over the focused widget's own keys, and it acts in the app's own loop, before
        the keys typed after it are passed on (a key that moves the focus moves it for them: key_order.focus_now).
        The app's remappable actions (over the text area's keys; the app turns them off while a dialog is open)
        and the keys of the panes beside the text (over their boxes' keys)."""
        if self.target == "app":
            return self.configurable
        return self.target in ("steer_pane", "find_bar")

    @property
    def action(self) -> str:
        return self.call or self.id

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(key.strip() for key in self.key.split(",") if key.strip())


ACTIONS: tuple[Action, ...] = (
    # --- the app's own, remappable in [keys] ---
    Action("new", "New document", "ctrl+n", "File: new"),
    Action("open", "Open a file", "ctrl+o", "File: open…"),
    Action("save", "Save", "ctrl+s", "File: save"),
    Action("save_as", "Save under another name", "ctrl+shift+s", "File: save as…"),
    Action("quit", "Quit (asks about unsaved changes)", "ctrl+q", "File: quit"),
    Action("undo", "Undo", "ctrl+z", "Edit: undo", needs_document_focus=True),
    Action("redo", "Redo", "ctrl+y", "Edit: redo", needs_document_focus=True),
    Action("find", "Find", "ctrl+f", "Edit: find"),
    Action("replace", "Find and replace", "ctrl+r", "Edit: replace"),
    Action("find_next", "Next match", "f3", "Edit: find next"),
    Action("find_previous", "Previous match", "shift+f3", "Edit: find previous"),
    Action("goto_line", "Go to line", "ctrl+g", "Edit: go to line…"),
    Action("steer", "Rewrite the selection, steered toward a concept", "ctrl+e", "Steer: rewrite the selection"),
    Action("toggle_preview", "Markdown preview on/off", "f12", "View: Markdown preview on/off"),
    Action("focus_mode", "Focus mode: dim all but the current paragraph", "f6", "View: focus mode on/off"),
    Action("toggle_panel", "Features panel show/hide", "f2", "Panel: show/hide", panel=True),
    Action("cycle_theme", "Next theme (kept for next time)", "ctrl+t", "View: next theme"),
    Action("focus_panel", "Choose a feature to pin or inspect", "f9", "Features: focus the panel", panel=True),
    Action("unpin", "Back to the overview of all features", "shift+f9", "Features: unpin", panel=True),
    Action("next_occurrence", "Next occurrence of the pinned feature", "f8", "Features: next occurrence"),
    Action("previous_occurrence", "Previous occurrence of the pinned feature", "shift+f8",
           "Features: previous occurrence"),
    Action("analyze_now", "Analyse the document now", "f5", "Analysis: run now"),
    Action("toggle_analysis", "Pause/resume live analysis", "f7", "Analysis: pause/resume live analysis"),
    Action("help", "This list of keys", "f1", "Help: keys"),
    # --- fixed keys, listed in the help ---
    Action("command_palette", "Command palette: every action, themes, settings", "ctrl+p", configurable=False,
           bound=False),  # Textual's own binding (App.COMMAND_PALETTE_BINDING, set from here)
    Action("focus_editor", "Back to the text (closes the find bar)", "escape", configurable=False),
    Action("panel.pin", "In the features panel: pin the feature (again: unpin)", "enter", target="panel",
           configurable=False, bound=False),
    Action("panel.detail", "In the features panel: feature details", "d", target="panel", configurable=False,
           call="detail", show=True),
    Action("panel.detail_too", "In the features panel: feature details", "i", target="panel",
           configurable=False, call="detail"),
    Action("steer_pane.generate", "In the steering pane: generate rewrites", "ctrl+g", target="steer_pane",
           configurable=False, call="generate", show=True),
    Action("steer_pane.accept", "In the steering pane: accept the highlighted rewrite (one undo step)", "enter",
           target="steer_pane", configurable=False, bound=False),
    Action("steer_pane.leave", "In the steering pane: back to the text (generation goes on)", "escape",
           target="steer_pane", configurable=False, call="leave"),
    Action("close_steering", "With the steering pane open: close it and cancel the generation", "f4",
           configurable=False),
    Action("steer_pane.close", "In the steering pane: close it and cancel the generation", "f4",
           target="steer_pane", configurable=False, call="close", show=True),
    Action("steer_pane.next_widget", "In the steering pane: next control", "tab", target="steer_pane",
           configurable=False, call="cycle_focus(1)"),
    Action("steer_pane.previous_widget", "In the steering pane: previous control", "shift+tab",
           target="steer_pane", configurable=False, call="cycle_focus(-1)"),
    Action("find_bar.close", "In the find bar: close it, back to the text", "escape", target="find_bar",
           configurable=False, call="close"),
    Action("find_bar.next", "In the find bar: next match", "f3", target="find_bar", configurable=False,
           call="next"),
    Action("find_bar.previous", "In the find bar: previous match", "shift+f3", target="find_bar",
           configurable=False, call="previous"),
    Action("find_bar.toggle_case", "In the find bar: match case on/off", "alt+c", target="find_bar",
           configurable=False, call="toggle_case"),
    Action("confirm.cancel", "In a question: cancel (or no, when there is no cancel)", "escape", target="confirm",
           configurable=False, call="choose('cancel')"),
    Action("confirm.yes", "In a question: yes", "y", target="confirm", configurable=False, call="choose('yes')"),
    Action("confirm.no", "In a question: no", "n", target="confirm", configurable=False, call="choose('no')"),
    Action("confirm.previous", "In a question: previous button", "left", target="confirm", configurable=False,
           call="app.focus_previous"),
    Action("confirm.next", "In a question: next button", "right", target="confirm", configurable=False,
           call="app.focus_next"),
    Action("goto_line.cancel", "Go to line: cancel", "escape", target="goto_line", configurable=False,
           call="cancel"),
    Action("help.close", "The keys screen: close it", "escape,q,f1", target="help", configurable=False,
           call="close"),
    Action("recovery.later", "Recovered text: decide later (open the file as on disk)", "escape",
           target="recovery", configurable=False, call="choose('later')"),
    Action("recovery.restore", "Recovered text: restore it", "r", target="recovery", configurable=False,
           call="choose('restore')"),
    Action("recovery.discard", "Recovered text: discard it", "d", target="recovery", configurable=False,
           call="choose('discard')"),
    Action("path_dialog.cancel", "Open / save as: cancel", "escape", target="path_dialog", configurable=False,
           call="cancel"),
    Action("path_dialog.submit", "Open / save as: this path (saving over a file: twice)", "enter",
           target="path_dialog", configurable=False, bound=False),
    Action("feature_details.close", "Feature details: close", "escape", target="feature_details",
           configurable=False, call="close"),
    Action("feature_details.pin", "Feature details: pin the feature", "p", target="feature_details",
           configurable=False, call="pin"),
    Action("feature_details.jump", "Feature details: jump to the highlighted place", "enter",
           target="feature_details", configurable=False, bound=False),
    Action("find_bar.submit", "In the find bar: next match (in the replace box: replace)", "enter",
           target="find_bar", configurable=False, bound=False),
    Action("document.start", "Start of the document", "ctrl+home", target="document", configurable=False,
           call="cursor_document_start"),
    Action("document.end", "End of the document", "ctrl+end", target="document", configurable=False,
           call="cursor_document_end"),
    Action("document.select_to_start", "Select to the start", "ctrl+shift+home", target="document",
           configurable=False, call="cursor_document_start(True)"),
    Action("document.select_to_end", "Select to the end", "ctrl+shift+end", target="document",
           configurable=False, call="cursor_document_end(True)"),
)
"""The order is the help screen's."""

BY_ID: dict[str, Action] = {action.id: action for action in ACTIONS}
CONFIGURABLE: tuple[Action, ...] = tuple(action for action in ACTIONS if action.configurable)
NOT_IN_HELP = frozenset({"panel.detail_too", "steer_pane.next_widget", "steer_pane.previous_widget",
                         "steer_pane.close", "find_bar.close", "find_bar.next", "find_bar.previous",
                         "find_bar.toggle_case", "find_bar.submit", "document.start", "document.end",
                         "document.select_to_start", "document.select_to_end"})
"""Bound, but not listed in the help screen (the usual keys of a text box; keys the help has under another name).
Neither are the dialogs' keys (DIALOGS)."""


def in_help(action: Action) -> bool:
    return action.id not in NOT_IN_HELP and action.target not in DIALOGS


def default_keys() -> dict[str, str]:
    """Action id -> default key(s), for the actions the user may remap: the [keys] table's defaults."""
    return {action.id: action.key for action in CONFIGURABLE}


def keys_in_force(user: dict[str, str] | None) -> dict[str, str]:
    """Every action's key(s) now: the defaults, with the user's [keys] over the remappable ones."""
    keys = {action.id: action.key for action in ACTIONS}
    keys.update({k: v for k, v in (user or {}).items() if k in BY_ID and BY_ID[k].configurable and v})
    return keys


def keymap(user: dict[str, str] | None) -> dict[str, str]:
    """The Textual keymap (binding id -> keys) of the user's changes: empty for the defaults (Textual applies a
    keymap to every binding map on every key press; none to apply costs nothing)."""
    return {k: v for k, v in keys_in_force(user).items() if v != BY_ID[k].key}


def bindings(target: Target) -> list[Binding]:
    """The Textual bindings of `target`'s actions, each with its id (so the keymap reaches it), priority ones
    where the action says so."""
    from textual.binding import Binding

    return [Binding(action.key, action.action, action.description, show=action.show, id=action.id,
                    priority=action.priority)
            for action in ACTIONS if action.target == target and action.bound]


def key_for(action_id: str, keys: dict[str, str] | None = None) -> str:
    """The key(s) of an action now, from `keys` (keys_in_force), else its default: what a text names."""
    return (keys or {}).get(action_id) or BY_ID[action_id].key


def key_text(action_id: str, keys: dict[str, str] | None = None) -> str:
    """The key(s) of an action as a text names them: 'Esc', 'Ctrl+G', 'Esc / Q / F1'."""
    return format_key(key_for(action_id, keys))


def keys_of(target: Target, keys: dict[str, str]) -> frozenset[str]:
    """Every key `target`'s actions use now (a host with the same keys bound gives way while it has the focus)."""
    return frozenset(key for action in ACTIONS if action.target == target
                     for key in _split(keys.get(action.id, action.key)))


def priority_keys(keys: dict[str, str]) -> frozenset[str]:
    """Every key of a priority binding now (the app's, the panes'), and the command palette's."""
    return frozenset({key for action in ACTIONS if action.priority and action.bound
                      for key in _split(keys.get(action.id, action.key))} | {BY_ID["command_palette"].key})


def _split(spec: str) -> tuple[str, ...]:
    return tuple(key.strip() for key in spec.split(",") if key.strip())


def format_key(key: str) -> str:
    """'ctrl+shift+s' -> 'Ctrl+Shift+S'; 'f1,question_mark' -> 'F1 / ?'."""
    names = {"question_mark": "?", "escape": "Esc", "pageup": "PgUp", "pagedown": "PgDn",
             "space": "Space", "enter": "Enter", "tab": "Tab", "delete": "Del", "backspace": "Backspace",
             "up": "↑", "down": "↓", "left": "←", "right": "→", "plus": "+", "minus": "-"}

    def one(k: str) -> str:
        return "+".join(names.get(p, p.upper() if len(p) == 1 else p.capitalize()) for p in k.split("+"))

    return " / ".join(one(k.strip()) for k in key.split(",") if k.strip())


def short_key(key: str) -> str:
    """The first key of a spec as a button shows it: 'ctrl+g' -> '^G', 'enter' -> '⏎', 'f4' -> 'F4'."""
    first = _split(key)[0]
    if first == "enter":
        return "⏎"
    if first.startswith("ctrl+") and first.count("+") == 1:
        return "^" + first[5:].upper()
    return format_key(first)
