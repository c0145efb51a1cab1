"""The real editor, instrumented from outside: a MorphApp subclass that timestamps, on the UI thread,

- key dispatch: `App.on_event` receiving the Key from the driver (before bindings and the TextArea);
- the document edit: the writing surface's stream of edits (`DocumentView.subscribe`), at the end of the edit;
- the debounce firing, the analysis (started, first result, final result: in the worker), highlights for the
  current text handed to the view, and the UI-thread work on each result: the app's timing marks
  (`MorphApp(timings=...)`, morph.editor.timing);
- screen updates: `App._display` (called by `Screen._compositor_refresh` right after the compositor has
  rendered the update). The headless driver that `run_test` uses skips the terminal write, so the
  subclass renders the update to terminal bytes itself (`render_segments`), as a real terminal run would;
  only the write to the file descriptor is missing.

A keystroke's latency is dispatch -> end of the first screen update that starts after its edit (every
edit happens on the UI thread before that update starts, so the update includes it). Pilot's own idle
waits are not part of it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import morph.editor  # noqa: F401 - before Textual: it sets Textual's frame rate as the editor runs with
from textual import events
from textual.app import App
from textual._compositor import CompositorUpdate

from morph.editor.app import MorphApp
from morph.editor.document import TextEdit
from morph.editor.timing import TimingMark


@dataclass
class Keystroke:
    dispatch: float
    edit: float | None = None
    shown: float | None = None
    render_start: float | None = None  # the compositor began the update that showed it
    display_start: float | None = None  # the rendered update went to _display

    @property
    def latency_ms(self) -> float | None:
        return None if self.shown is None else (self.shown - self.dispatch) * 1000


@dataclass
class Probe:
    keys: list[Keystroke] = field(default_factory=list)
    displays: list[tuple[float, float]] = field(default_factory=list)
    fired: list[tuple[float, int]] = field(default_factory=list)  # (time, generation) of each debounce firing
    highlights: list[tuple[float, int, bool]] = field(default_factory=list)  # (time, generation, partial)
    shown_highlights: list[tuple[float, int]] = field(default_factory=list)  # display end, generation
    analyses: list[dict] = field(default_factory=list)  # engine-side: start, first (focus) delivery, end
    ui_costs: list[tuple[str, float, float]] = field(default_factory=list)  # (what, start, end) of UI-thread work
    first_paint: float | None = None
    recording: bool = True
    last_refresh_start: float = 0.0
    _pending_key: Keystroke | None = None
    _pending_highlight: tuple[float, int] | None = None


class ProbeMixin:
    """Key dispatch, edits and screen updates, timestamped; mixed into an App whose focused widget is a
    TextArea (MorphApp, or the stock reference app below)."""

    render_to_bytes = True

    def _install_probe(self) -> None:
        self.probe = Probe()

    def _watch_compositor(self) -> None:
        """Stamp the start of each compositor update (Textual's Screen._compositor_refresh, wrapped on the
        instance: a Textual internal, not the app's)."""
        probe = self.probe
        screen = self.screen
        original_refresh = screen._compositor_refresh

        def compositor_refresh():
            probe.last_refresh_start = time.perf_counter()
            return original_refresh()

        screen._compositor_refresh = compositor_refresh

    def keystroke_breakdown(self, keys: list[Keystroke]) -> dict[str, float]:
        """Median ms of each stage: handler (dispatch -> edit), wait (edit -> compositor starts: other
        messages, the screen's update timer), render (compositor), output (terminal bytes)."""
        from statistics import median

        done = [k for k in keys if k.shown is not None and k.render_start is not None and k.edit is not None]
        if not done:
            return {}
        return {"handler_ms": round(median((k.edit - k.dispatch) * 1000 for k in done), 2),
                "wait_ms": round(median((k.render_start - k.edit) * 1000 for k in done), 2),
                "render_ms": round(median((k.display_start - k.render_start) * 1000 for k in done), 2),
                "output_ms": round(median((k.shown - k.display_start) * 1000 for k in done), 2)}

    # --- key dispatch ------------------------------------------------------------------------------------
    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key) and not event.is_forwarded and self.probe.recording:
            key = Keystroke(time.perf_counter())
            self.probe.keys.append(key)
            self.probe._pending_key = key
        await super().on_event(event)

    # --- screen updates -----------------------------------------------------------------------------------
    def _display(self, screen: Any, renderable: Any) -> None:
        start = time.perf_counter()
        super()._display(screen, renderable)
        if renderable is None or self._batch_count:
            return
        if self.render_to_bytes and self.is_headless and isinstance(renderable, CompositorUpdate):
            renderable.render_segments(self.console)
        end = time.perf_counter()
        probe = self.probe
        if probe.first_paint is None:
            probe.first_paint = end
        if not probe.recording:
            return
        probe.displays.append((start, end))
        key = probe._pending_key
        if key is not None and key.edit is not None and key.shown is None and start >= key.edit:
            key.shown = end
            key.display_start = start
            key.render_start = probe.last_refresh_start if probe.last_refresh_start >= key.edit else start
            probe._pending_key = None
        pending = probe._pending_highlight
        if pending is not None and start >= pending[0]:
            probe.shown_highlights.append((end, pending[1]))
            probe._pending_highlight = None


class StockApp(ProbeMixin, App):
    """The reference: Textual's own TextArea (soft wrap, as Morph's default) on the same text, nothing else."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self._install_probe()
        self.initial_text = text

    def compose(self):
        from textual.widgets import TextArea

        yield TextArea(self.initial_text, soft_wrap=True, id="document")

    def on_mount(self) -> None:
        from textual.widgets import TextArea

        view = self.query_one(TextArea)
        view.focus()
        self._watch_compositor()
        original_edit = view.edit  # Textual's own TextArea: no stream of edits, its edit is wrapped
        probe = self.probe

        def edit(edit_obj):
            result = original_edit(edit_obj)
            key = probe._pending_key
            if key is not None and key.edit is None:
                key.edit = time.perf_counter()
            return result

        view.edit = edit

    @property
    def view(self) -> Any:
        from textual.widgets import TextArea

        return self.query_one(TextArea)


class BenchApp(ProbeMixin, MorphApp):
    """MorphApp with the probes above, fed by the app's own timing marks (morph.editor.timing) and the writing
    surface's stream of edits; behaves exactly like MorphApp otherwise."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, timings=self._record, **kwargs)
        self._install_probe()

    def on_mount(self) -> None:
        # Runs before MorphApp.on_mount (Textual calls each class's handler, subclass first).
        self._watch_compositor()
        self.view.subscribe(self._edited)

    def _edited(self, change: TextEdit) -> None:
        key = self.probe._pending_key
        if change.kind == "edit" and key is not None and key.edit is None:
            key.edit = time.perf_counter()

    def _record(self, mark: TimingMark) -> None:
        """A timing mark, into the probe (analysis marks come from the worker thread: appends and updates of
        records that only this mark's thread writes)."""
        probe = self.probe
        if mark.kind == "debounce_fired":
            probe.fired.append((mark.at, mark.generation))
        elif mark.kind == "highlights_set":
            probe.highlights.append((mark.at, mark.generation, mark.partial))
            if probe._pending_highlight is None:
                probe._pending_highlight = (mark.at, mark.generation)
        elif mark.kind == "ui_work":
            probe.ui_costs.append((mark.name, mark.started, mark.at))
        elif mark.kind == "analysis_started":
            probe.analyses.append({"generation": mark.generation, "start": mark.at, "first": None, "end": None,
                                   "tokens": None, "computed_tokens": None, "cancelled": True})
        else:
            record = next((r for r in reversed(probe.analyses) if r["generation"] == mark.generation), None)
            if record is None:
                return
            if mark.kind == "analysis_delivered":
                record["first"] = mark.at
            elif mark.kind == "analysis_finished":
                record.update(end=mark.at, cancelled=False, tokens=mark.tokens, computed_tokens=mark.computed_tokens)


async def wait_until(pilot: Any, condition: Callable[[], bool], timeout: float = 120.0, step: float = 0.005) -> None:
    """Poll `condition` every `step` seconds. Between polls only a sleep: `Pilot.pause` would post a message
    to every widget on each poll and wait for all of them (its `_wait_for_screen`), UI-thread work that the
    editor does not do while a writer pauses, and that took the interpreter from the analysis being
    measured (the worker's forward ran at about half speed under it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            app = pilot.app
            raise TimeoutError(f"the editor did not reach the expected state in time (screen: {app.screen!r}, "
                               f"focused: {app.focused!r})")
        await asyncio.sleep(step)


def analysis_busy(app: MorphApp) -> bool:
    from textual.worker import WorkerState

    return any(w.group == "analysis" and w.state in (WorkerState.PENDING, WorkerState.RUNNING) for w in app.workers)


def settled(app: MorphApp) -> bool:
    """The engine is loaded, the last analysis is complete, for the current text, and nothing is pending."""
    analysis = app.analysis
    return (app.engine is not None and analysis is not None and analysis.generation == app.generation
            and analysis.stats.complete and not analysis_busy(app))


def new_app(ctx: Any, text: str, debounce_ms: int | None = None, **settings: Any) -> BenchApp:
    """The editor on `text` with the context's lens, built the way `morph FILE` builds its engine."""
    import os
    import tempfile

    from morph.config import Settings
    from morph.features.engine import Engine

    # A state dir of its own: an earlier app's autosave of its untitled text would be offered for recovery.
    os.environ["MORPH_STATE_DIR"] = tempfile.mkdtemp(prefix="morph-bench-state-")
    lens = ctx.load()
    config = ctx.analysis_config()
    if debounce_ms is not None:
        settings["debounce_ms"] = debounce_ms
    return BenchApp(None, text, Settings(**settings), lambda _progress: Engine(lens, config))
