"""The real editor, instrumented from outside: a MorphApp subclass that timestamps, on the UI thread,

- key dispatch: `App.on_event` receiving the Key from the driver (before bindings and the TextArea);
- the document edit: `DocumentView.edit` returning (wrapped on the instance);
- the debounce firing: `start_analysis` (the timer's callback);
- highlights for the current text handed to the view: `DocumentView.set_overlay` while the app's
  analysis is for the current generation;
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

    def _wrap_view(self, view: Any) -> None:
        original_edit = view.edit
        probe = self.probe

        def edit(edit_obj):
            result = original_edit(edit_obj)
            key = probe._pending_key
            if key is not None and key.edit is None:
                key.edit = time.perf_counter()
            return result

        view.edit = edit
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
        self._wrap_view(view)

    @property
    def view(self) -> Any:
        from textual.widgets import TextArea

        return self.query_one(TextArea)


class BenchApp(ProbeMixin, MorphApp):
    """MorphApp with the probes above; behaves exactly like MorphApp otherwise."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._install_probe()

    def on_mount(self) -> None:
        # Runs before MorphApp.on_mount (Textual calls each class's handler, subclass first).
        view = self.view
        self._wrap_view(view)
        original_set_overlay = view.set_overlay
        probe = self.probe

        def set_overlay(overlay):
            original_set_overlay(overlay)
            analysis = self.analysis
            if analysis is not None and analysis.generation == self.generation:
                stamp = time.perf_counter()
                probe.highlights.append((stamp, self.generation, not analysis.stats.complete))
                if probe._pending_highlight is None:
                    probe._pending_highlight = (stamp, self.generation)

        view.set_overlay = set_overlay
        for name in ("_refresh_highlights", "_refresh_panel"):
            self._time_method(name)

    def _time_method(self, name: str) -> None:
        """Record the UI-thread time of an app method (called as self.name(), so an instance wrapper works)."""
        original = getattr(self, name)
        costs = self.probe.ui_costs

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                costs.append((name, t0, time.perf_counter()))

        setattr(self, name, timed)

    # --- debounce -----------------------------------------------------------------------------------------
    def start_analysis(self) -> None:
        self.probe.fired.append((time.perf_counter(), self.generation))
        super().start_analysis()

    # --- engine side (runs in the worker thread) -----------------------------------------------------------
    def on_engine_ready(self, message: Any) -> None:
        # Before MorphApp's handler: wrap the engine's stream of analysis events so that each analysis
        # reports when it started, when the focus block was delivered and when it ended.
        engine = message.engine
        if getattr(engine, "_bench_wrapped", False):
            return
        original = engine.stream
        probe = self.probe

        def stream(text, generation=0, *args, **kwargs):
            from morph.features.analysis import FinalResult, PartialResult

            record = {"generation": generation, "start": time.perf_counter(), "first": None, "end": None,
                      "tokens": None, "computed_tokens": None, "cancelled": True}
            probe.analyses.append(record)
            for event in original(text, generation, *args, **kwargs):
                if isinstance(event, (PartialResult, FinalResult)) and record["first"] is None:
                    record["first"] = time.perf_counter()
                if isinstance(event, FinalResult):
                    record.update(end=time.perf_counter(), cancelled=False, tokens=event.analysis.stats.total_tokens,
                                  computed_tokens=event.analysis.stats.computed_tokens)
                yield event

        engine.stream = stream
        engine._bench_wrapped = True


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
