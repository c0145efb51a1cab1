"""What sits beside the text: the features panel, the Markdown preview and the steering pane, behind one switcher.

The rules, in one place: the writer shows or hides the panel; the preview and the steering pane each take the
panel's place while open (the panel comes back when they close); bringing the panel back (its key, or choosing
a feature) closes the preview. The widgets are the app's (found through `app`); this holds no state of its own
but their classes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from morph.editor.app import MorphApp

PREVIEW_CLASS, STEERING_CLASS, HIDDEN_CLASS = "-preview", "-steering", "-hidden"
CSS = f"""
FeaturePanel.{PREVIEW_CLASS} {{ display: none; }}
FeaturePanel.{STEERING_CLASS} {{ display: none; }}
"""


class SideArea:
    def __init__(self, app: MorphApp) -> None:
        self.app = app

    @property
    def preview_open(self) -> bool:
        return self.app.preview.is_open

    @property
    def steering_open(self) -> bool:
        pane = self.app.steer_pane_found()
        return pane is not None and pane.is_open

    def set_preview(self, shown: bool) -> None:
        """Open (the preview takes the panel's place) or close the Markdown preview."""
        self.app.preview.set_class(shown, "-open")
        self.app.panel.set_class(shown, PREVIEW_CLASS)

    def show_panel(self) -> None:
        """Bring the panel back (the preview, if open, closes)."""
        if self.preview_open:
            self.app.action_toggle_preview()
        self.app.panel.remove_class(HIDDEN_CLASS)

    def toggle_panel(self) -> None:
        if self.preview_open:  # the panel is behind the preview: bring it back
            self.show_panel()
        else:
            self.app.panel.toggle_class(HIDDEN_CLASS)

    def steering_opens(self) -> None:
        self.app.panel.add_class(STEERING_CLASS)  # the pane takes the panel's place

    def steering_closed(self) -> None:
        self.app.panel.remove_class(STEERING_CLASS)
