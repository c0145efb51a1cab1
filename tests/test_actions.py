"""The one action registry (morph.editor.actions): the config's key defaults, every widget's bindings, the help
screen and the palette read it; the user's keys reach the bindings through Textual's keymap."""

from __future__ import annotations

from morph.config import DEFAULT_KEYS
from morph.editor import actions
from morph.editor.app import MorphApp
from morph.editor.find_bar import FindBar
from morph.editor.document import DocumentView
from morph.editor.panel import FeatureList
from morph.editor.steer_pane import SteerPane


def test_the_config_defaults_are_the_registry_s():
    assert DEFAULT_KEYS == actions.default_keys()
    assert set(DEFAULT_KEYS) == {a.id for a in actions.ACTIONS if a.configurable}
    assert len(actions.BY_ID) == len(actions.ACTIONS)  # ids are unique: the keymap addresses them


def test_every_binding_comes_from_the_registry_with_its_id():
    for widget, target in ((MorphApp, "app"), (DocumentView, "document"), (SteerPane, "steer_pane"),
                           (FindBar, "find_bar"), (FeatureList, "panel")):
        ids = {binding.id for binding in widget.BINDINGS}
        assert ids == {a.id for a in actions.ACTIONS if a.target == target and a.bound}, widget
        for binding in widget.BINDINGS:
            assert binding.key == actions.BY_ID[binding.id].key
    for action in actions.ACTIONS:
        if action.target == "app" and action.bound:
            assert callable(getattr(MorphApp, f"action_{action.id}", None)), action.id
    assert MorphApp.COMMAND_PALETTE_BINDING == actions.BY_ID["command_palette"].key


def test_the_keymap_holds_only_the_user_s_changes():
    assert actions.keymap(None) == {} and actions.keymap(dict(DEFAULT_KEYS)) == {}
    assert actions.keymap({**DEFAULT_KEYS, "save": "f10", "help": "f1,question_mark"}) == {
        "save": "f10", "help": "f1,question_mark"}
    assert actions.keymap({"focus_editor": "f10"}) == {}  # fixed keys are not the user's to change
    keys = actions.keys_in_force({"steer": "ctrl+k"})
    assert keys["steer"] == "ctrl+k" and keys["save"] == "ctrl+s" and keys["steer_pane.generate"] == "ctrl+g"
    assert actions.keys_of("steer_pane", keys) == {"ctrl+g", "escape", "f4", "tab", "shift+tab", "enter"}


def test_keys_as_texts_name_them():
    assert actions.format_key("ctrl+shift+s") == "Ctrl+Shift+S"
    assert [actions.short_key(k) for k in ("ctrl+g", "enter", "f4", "escape")] == ["^G", "⏎", "F4", "Esc"]


def test_every_dialog_s_keys_come_from_the_registry_too():
    from textual.screen import ModalScreen

    from morph.editor import dialogs
    from morph.editor.feature_screen import FeatureDetailScreen

    for screen, target in ((dialogs.ConfirmScreen, "confirm"), (dialogs.GotoLineScreen, "goto_line"),
                           (dialogs.HelpScreen, "help"), (dialogs.RecoveryScreen, "recovery"),
                           (dialogs.PathScreen, "path_dialog"), (dialogs.OpenFileScreen, "path_dialog"),
                           (dialogs.SaveAsScreen, "path_dialog"), (FeatureDetailScreen, "feature_details")):
        assert issubclass(screen, ModalScreen)
        ids = {binding.id for binding in screen.BINDINGS}
        assert ids == {a.id for a in actions.ACTIONS if a.target == target and a.bound}, screen
        for binding in screen.BINDINGS:
            assert callable(getattr(screen, "action_" + binding.action.split("(")[0], None)) or \
                binding.action.startswith("app."), binding.action
    # a dialog's keys act in the dialog only: the keys screen lists the editor's, not theirs
    assert not any(actions.in_help(a) for a in actions.ACTIONS if a.target in actions.DIALOGS)
    assert actions.key_text("help.close") == "Esc / Q / F1"
