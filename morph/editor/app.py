"""The Morph editor: a writing surface, a features panel and a status bar over the engine.

Nothing slow runs on the UI thread: the model loads in a thread worker (group "model"), each analysis
runs in a thread worker (group "analysis", exclusive, so a newer request cancels the older one), and
results come back as typed messages carrying the document generation they were made for.

Files never lose text: saves are atomic (morph.textio) and keep the file's line endings and BOM; between
saves this window's recovery file is written (in a thread) at most `autosave_seconds` after an edit, while
typing too, and every AUTOSAVE_EDITS edits; and synchronously when the app exits, is told to stop (SIGTERM,
SIGQUIT) or loses its terminal (SIGHUP). Another window's recovery whose text differs from the file is offered
when the file is opened. Every key comes from
`settings.keys` (action -> key), so users can remap them; every action is also in the command palette.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import threading
import time
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from textual import events, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import TextArea
from textual.worker import get_current_worker

from morph.editor.dialogs import (
    ConfirmScreen,
    FindBar,
    GotoLineScreen,
    HelpScreen,
    OpenFileScreen,
    RecoveryScreen,
    SaveAsScreen,
    format_key,
)
from morph.editor.document import DocumentView
from morph.editor.frames import PacedScreen
from morph.editor.messages import (AnalysisFailed, AnalysisProgress, AnalysisReady, EngineFailed, EngineProgress,
                                   EngineReady, FeatureChosen)
from morph.editor.colours import ColorBook
from morph.features.highlights import HighlightPlan, Overlay, plan_highlights
from morph.editor.panel import PANEL_ROWS, FeatureList, FeaturePanel, PanelRow
from morph.editor.preview import PreviewPane, window_around
from morph.editor.status import StatusBar
from morph.editor.steer_screen import EDITED, SteerPane
from morph.features.priority import InputPriority

if TYPE_CHECKING:
    from morph.features.engine import EngineLike

FALLBACK_PALETTE = ["#ee6969", "#f0b274", "#a89413", "#85d317", "#13ab2c", "#18d7a7",
                    "#15a1bd", "#9bc0f4", "#8f87f2", "#d8aef6", "#ec53df", "#f5a7ce"]
LARGE_COUNTS = 300_000  # past this many characters, word counts are updated after a pause, not per key
GC_THRESHOLDS = (5000, 20, 20)  # gc.set_threshold once the model is loaded (defaults: 700, 10, 10)
PARTIAL_DRAW_WAIT_S = 0.1  # how long the analysis waits for the cursor's block to be drawn before going on
INPUT_EVENTS = (events.Key, events.Paste, events.MouseDown, events.MouseScrollDown, events.MouseScrollUp)
LARGE_STYLING = 100_000  # past this many characters, Markdown styling is suspended (it restyles per edit)
WAITING_NOTE = "recovered text is waiting (palette: File: recovered text)"
SERVER_RETRY_S = 2.0  # a remote engine's server that is down is asked again after this long
AUTOSAVE_EDITS = 200  # a recovery file is written after this many edits (~characters typed), whatever the time
DIALOG_SETTLE_S = 0.5  # the longest a key waits for a dialog to finish with the key before it (_after_dialog_key)

# Every action that has a key in settings.keys: (action, what it does, its command palette title).
ACTIONS: list[tuple[str, str, str]] = [
    ("new", "New document", "File: new"),
    ("open", "Open a file", "File: open…"),
    ("save", "Save", "File: save"),
    ("save_as", "Save under another name", "File: save as…"),
    ("quit", "Quit (asks about unsaved changes)", "File: quit"),
    ("undo", "Undo", "Edit: undo"),
    ("redo", "Redo", "Edit: redo"),
    ("find", "Find", "Edit: find"),
    ("replace", "Find and replace", "Edit: replace"),
    ("find_next", "Next match", "Edit: find next"),
    ("find_previous", "Previous match", "Edit: find previous"),
    ("goto_line", "Go to line", "Edit: go to line…"),
    ("steer", "Rewrite the selection, steered toward a concept", "Steer: rewrite the selection"),
    ("toggle_preview", "Markdown preview on/off", "View: Markdown preview on/off"),
    ("focus_mode", "Focus mode: dim all but the current paragraph", "View: focus mode on/off"),
    ("toggle_panel", "Features panel show/hide", "Panel: show/hide"),
    ("cycle_theme", "Next theme (kept for next time)", "View: next theme"),
    ("focus_panel", "Choose a feature to pin or inspect", "Features: focus the panel"),
    ("unpin", "Back to the overview of all features", "Features: unpin"),
    ("next_occurrence", "Next occurrence of the pinned feature", "Features: next occurrence"),
    ("previous_occurrence", "Previous occurrence of the pinned feature", "Features: previous occurrence"),
    ("analyze_now", "Analyse the document now", "Analysis: run now"),
    ("toggle_analysis", "Pause/resume live analysis", "Analysis: pause/resume live analysis"),
    ("help", "This list of keys", "Help: keys"),
]
KEYED_ACTIONS = frozenset(action for action, _, _ in ACTIONS)
# The features panel's actions: while the steering pane has the panel's place they would act on a hidden panel.
PANEL_ACTIONS = frozenset({"focus_panel", "toggle_panel", "unpin"})


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


class MorphApp(App):
    TITLE = "Morph"
    CSS = """
    Screen { layout: vertical; }
    #main { height: 1fr; }
    DocumentView { width: 1fr; height: 1fr; }
    FeaturePanel.-preview { display: none; }
    FeaturePanel.-steering { display: none; }
    FindBar { dock: none; }
    StatusBar { dock: none; }
    """
    # The keys of ACTIONS are bound in __init__ from settings.keys (priority bindings, so the text area's
    # own keys such as F6/F7 do not hide them; they are disabled while a dialog is open).
    BINDINGS = [
        Binding("escape", "focus_editor", "Editor", show=False),
        Binding(SteerPane.CLOSE_KEY, "close_steering", show=False),  # from the text; the pane binds it too
    ]

    def __init__(self, path: str | None = None, text: str = "", settings: Any = None,
                 engine_factory: Callable[[Callable[[str, float], None]], "EngineLike"] | None = None,
                 model_note: str = "",
                 loaded: Any = None, settings_error: str = "") -> None:
        """`settings_error`: why the config file could not be used (the editor then runs on the defaults)."""
        super().__init__()
        from morph.config import DEFAULT_KEYS, Settings

        self.settings = settings or Settings()
        self.path = Path(os.path.abspath(path)) if path else None
        self.loaded = loaded if loaded is not None else _describe_on_disk(self.path)
        """The file as on disk (morph.textio.LoadedText) when it was opened or last saved; None: untitled."""
        self.initial_text = text
        self._clean_text = text  # the text as on disk (or as started): undoing back to it is unmodified
        self._history_moved = False  # an undo or redo is under way: its change may lead back to _clean_text
        self.engine_factory = engine_factory  # None: run without a model
        self.engine: EngineLike | None = None  # local (features.engine.Engine) or a server's (morph.server)
        self.model_note = model_note
        self.settings_error = settings_error
        self.generation = 0
        self.analysis: Any = None
        self.analysis_base = 0
        self.analysis_enabled = True
        self.pinned: int | None = None
        self.palette = list(FALLBACK_PALETTE)
        self.colour_book = ColorBook(len(self.palette))
        self._scales: Any = None
        self.input_priority = InputPriority()  # the analysis pauses while input is being handled
        self._changes_seen = 0  # DocumentView.changes when the last Changed message was handled
        self._debounce: Any = None
        self._prepare_timer: Any = None
        self._prepared: tuple[int, int] | None = None  # (generation, paragraph) whose window was last prepared
        self._analysed_focus = 0  # the cursor offset (in the analysed text) the latest analysis started at
        self._pause_started = 0.0
        self._server_trouble = ""  # a remote engine's server: "down" or "refused" until an analysis comes back
        self._server_retry: Any = None
        self.last_latency_ms: float | None = None
        self.modified = False
        self._widgets: dict[type, Any] = {}
        self.keys = {**DEFAULT_KEYS, **(self.settings.keys or {})}
        for action, _, _ in ACTIONS:
            if self.keys.get(action):
                self._bindings.bind(self.keys[action], action, show=False, priority=True)
        self.theme_name: str | None = None
        self.focus_mode = False
        self._ignore_changes = 0  # Changed events of loads (not edits) still to come
        self._flow_busy = False  # a file dialog flow (save, open, quit...) is running
        self._held_keys: list[events.Event] | None = None  # typed after a flow's dialog closed, until it ends
        self._keys_waiting: list[events.Event] | None = None  # typed while a dialog handles the key before
        self._dialog_key: events.Event | None = None  # that key
        self._dialog_key_back = False  # it came back from the dialog's widgets to the app's bindings
        self._counts_timer: Any = None
        self._preview_timer: Any = None
        # recovery: written in a thread; the lock and epoch make a save's discard win over a late autosave
        from morph.recovery import new_session

        self.recovery_session = new_session()
        """This window's recovery files are its own (morph.recovery): other windows never write over them."""
        self._recovery_lock = threading.Lock()
        self._recovery_epoch = 0
        self._recovery_dirty = False
        self._discarded = False
        self._edits_since_autosave = 0
        self._last_autosave = float("-inf")  # the first edit is written at the next tick
        self._restore_signals: Callable[[], None] | None = None
        self._disk_change_told: tuple | None = None  # the change on disk the writer was last told of
        self._autosave_error: str | None = None
        self._document: DocumentView | None = None
        self._markdown_suspended = False

    # --- layout ---------------------------------------------------------------------------------
    def get_default_screen(self) -> Screen:
        return PacedScreen(id="_default")

    def compose(self) -> ComposeResult:
        self._document = DocumentView(self.initial_text, id="document")
        with Horizontal(id="main"):
            yield self._document
            yield PreviewPane(id="preview")
            yield FeaturePanel(id="panel")
            yield SteerPane(self._document, id="steer")
        yield FindBar(self._document, id="findbar")
        yield StatusBar(id="status")

    def _base(self, widget_type: type) -> Any:
        """A widget of the editor screen, even while a dialog is on top (App.query_one searches the
        active screen, and background results keep arriving while a dialog is open) or while the app
        shuts down (updating a detached widget is harmless). Looked up once."""
        found = self._widgets.get(widget_type)
        if found is None:
            found = self._widgets[widget_type] = self.screen_stack[0].query_one(widget_type)
        return found

    @property
    def view(self) -> DocumentView:
        return self._document if self._document is not None else self._base(DocumentView)

    @property
    def panel(self) -> FeaturePanel:
        return self._base(FeaturePanel)

    @property
    def status(self) -> StatusBar:
        return self._base(StatusBar)

    @property
    def preview(self) -> PreviewPane:
        return self._base(PreviewPane)

    @property
    def findbar(self) -> FindBar:
        return self._base(FindBar)

    @property
    def steerpane(self) -> SteerPane:
        return self._base(SteerPane)

    def on_mount(self) -> None:
        if self.settings_error:
            self.notify(self.settings_error, title="Settings not loaded: using the defaults", severity="error",
                        timeout=20)
        self._apply_theme()
        self.view.soft_wrap = self.settings.soft_wrap
        self.view.show_line_numbers = self.settings.line_numbers
        self.view.focus()
        self._show_file()
        self._update_counts()
        self._announce_file()
        self.set_interval(min(0.5, self.settings.autosave_seconds / 2), self._autosave_tick, name="autosave")
        if not self.is_headless:
            from morph.editor.lifeline import TERMINAL_CHECK_S, catch_fatal_signals

            self._restore_signals = catch_fatal_signals(self._on_fatal_signal)
            self.set_interval(TERMINAL_CHECK_S, self._check_terminal, name="terminal")
        self._start_flow(self._offer_recovery)
        if self.engine_factory is None:
            self.status.update_state(state="no model", model=self.model_note or "no model (--no-model)")
            self.panel.show_message("no model loaded: " + (self.model_note or "started with --no-model"))
        else:
            self.status.update_state(state="loading model", model="loading…")
            self.panel.show_message("the model is loading…")
            # after the first paint: the loader's imports (torch, transformers) would hold the interpreter
            # lock while the screen is being drawn for the first time
            self.call_after_refresh(self.load_engine)

    def _apply_theme(self) -> None:
        try:
            from morph.config import themes_dir
            from morph.editor.themes import DEFAULT_THEME, load_themes
        except ImportError:
            return
        themes, errors = load_themes(themes_dir())
        for theme in themes.values():
            self.register_theme(theme.textual_theme)
        self.morph_themes = themes
        for error in errors:
            self.notify(error, title="Theme not loaded", severity="warning")
        name = self.settings.theme
        if name not in themes:  # load_themes always gives DEFAULT_THEME
            self.notify(f"theme {name!r} not found; using {DEFAULT_THEME}", title="Theme not found",
                        severity="warning")
            name = DEFAULT_THEME
        self.set_morph_theme(name)

    def set_morph_theme(self, name: str) -> None:
        theme = self.morph_themes[name]
        self.theme_name = name
        self.theme = theme.textual_theme.name
        self.palette = list(theme.highlights) or list(FALLBACK_PALETTE)
        self.colour_book = ColorBook(len(self.palette))
        self.view.set_palette(self.palette, theme.textual_theme.background or "#000000")
        self._apply_markdown()
        self._refresh_highlights()

    def _apply_markdown(self) -> None:
        on = self.settings.markdown and not self._markdown_suspended and self.theme_name is not None
        if on:
            from morph.editor.markdown import markdown_spans

            self.view.set_markdown(markdown_spans, self.morph_themes[self.theme_name].markdown)
        else:
            self.view.set_markdown(None, {})

    def _check_size(self, chars: int) -> None:
        """Past LARGE_STYLING characters the Markdown layer (restyled on every edit) is suspended."""
        suspend = chars > LARGE_STYLING
        if suspend == self._markdown_suspended:
            return
        self._markdown_suspended = suspend
        if self.settings.markdown:
            self._apply_markdown()
            if suspend:
                self.notify(f"Markdown styling is off for documents over {LARGE_STYLING:,} characters "
                            "(typing stays quick); the preview still renders it", timeout=8)

    # --- the model --------------------------------------------------------------------------------
    @work(thread=True, group="model", exit_on_error=False, name="load model")
    def load_engine(self) -> None:
        from morph.errors import LoadCancelled

        started = time.perf_counter()
        worker = get_current_worker()

        def progress(what: str, done: float) -> None:
            if worker.is_cancelled:  # the editor is closing: a factory still waiting (for a server) stops here
                raise LoadCancelled("the editor closed")
            self.post_message(EngineProgress(what, done))

        try:
            engine = self.engine_factory(progress)
        except LoadCancelled:
            return
        except MemoryError:
            self.post_message(EngineFailed("not enough memory to load the model"))
        except Exception as err:  # noqa: BLE001 - any failure is shown, the editor keeps working
            from morph.errors import MorphError

            self.post_message(EngineFailed(str(err) if isinstance(err, MorphError) else _one_line(err)))
        else:
            self.post_message(EngineReady(engine, time.perf_counter() - started))

    def on_engine_ready(self, message: EngineReady) -> None:
        self.engine = message.engine
        # torch and transformers leave ~500k long-lived objects; every full GC pass walked them all and
        # stalled a keystroke for ~350 ms (benchmarks: p99). Move them out of the collector's sight.
        gc.collect()
        gc.freeze()
        # Drawing allocates thousands of short-lived containers per keystroke (strips, segments); with the
        # default thresholds they set off a full pass every ~25 keystrokes (benchmarks: 43 in 1,000, the p99).
        # Collect the young generation less often, so that far fewer survivors reach the old one.
        gc.set_threshold(*GC_THRESHOLDS)
        self.status.update_state(model=f"{self.engine.model_name} · {self.engine.sae_name}", state="idle",
                                 detail=f"(model ready in {message.seconds:.1f} s)")
        self.panel.show_message("analysing…")
        self.schedule_analysis(0)

    def on_engine_progress(self, message: EngineProgress) -> None:
        """The first start converts the default model (about a minute): say so, with how far it is."""
        if self.engine is None and message.done < 0:  # a remote engine whose server is not answering yet
            self.status.update_state(state="server down", detail=f"({message.what})")
        elif self.engine is None:
            self.status.update_state(state="loading model",
                                     detail=f"(first start: preparing the model, {message.what} {message.done:.0%})")

    def on_engine_failed(self, message: EngineFailed) -> None:
        self.status.update_state(state="no model", model="model failed to load")
        self.panel.show_message("no analysis: the model failed to load")
        self.notify(message.error, title="Model not loaded", severity="error", timeout=15)

    # --- analysis -------------------------------------------------------------------------------
    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, INPUT_EVENTS):
            self.input_priority.input_arrived()
        if isinstance(event, (events.Key, events.Paste)):
            if event.is_forwarded:  # back from the widgets, unhandled: the app's key bindings
                await super().on_event(event)
                if event is self._dialog_key:
                    self._dialog_key_back = True
                return
            if self._keys_waiting is not None:
                self._keys_waiting.append(event)  # a key is still with a dialog: this one waits its turn
                return
            if self._held_keys is not None and not self._modal_open():
                self._held_keys.append(event)  # a dialog closed and its flow goes on: typed after it, for the text
                return
            if self._modal_open():
                self._keys_waiting, self._dialog_key, self._dialog_key_back = [], event, False
                dialog = self.screen
                await super().on_event(event)
                self.run_worker(self._after_dialog_key(dialog, event), group="dialog keys", exit_on_error=False)
                return
        await super().on_event(event)

    async def _after_dialog_key(self, dialog: Screen, key: events.Event) -> None:
        """A key went to a dialog: the keys typed after it wait until the dialog has finished with it. The
        dialog's own keys (Enter in a field or on a button, Escape) act when the key comes back to the app from
        the widgets, behind the keys queued there already: typed in the same breath as Enter, they went into
        the dialog's field (Open then opened the path with them appended) or into the text that the file being
        opened replaced. Finished: the dialog is gone, or nothing waits on it and the key was either taken by
        a widget or came back and went through the app's bindings."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DIALOG_SETTLE_S
        quiet = 0  # polls in a row that found nothing waiting on the dialog
        while self.screen is dialog and loop.time() < deadline:
            await asyncio.sleep(0.002)
            quiet = 0 if _busy(dialog) else quiet + 1
            if quiet >= 2 and (self._dialog_key_back or key._stop_propagation):
                break
        waiting, self._keys_waiting, self._dialog_key = self._keys_waiting or [], None, None
        if self.screen is not dialog:
            if self._held_keys is not None:
                self._held_keys.extend(waiting)  # typed before the flow asks anything else: for the text
                return
            deadline = loop.time() + DIALOG_SETTLE_S
            while waiting and self.focused is None and loop.time() < deadline:
                await asyncio.sleep(0.002)  # the screen below takes its focus back (on ScreenResume)
        for event in waiting:
            self.post_message(_again(event))

    def pop_screen(self) -> Any:
        if self._flow_busy and self._held_keys is None:
            self._held_keys = []  # a flow's dialog closed: what is typed now waits for the flow to end
        return super().pop_screen()

    def on_app_focus(self, _event: events.AppFocus) -> None:
        """Back in the terminal: say so if the file changed on disk meanwhile (once per change)."""
        if self.path is not None and self.loaded is not None and not self.loaded.is_new:
            self._check_disk(self.path, self.loaded)

    @work(thread=True, group="disk", exclusive=True, exit_on_error=False, name="changed on disk")
    def _check_disk(self, path: Path, loaded: Any) -> None:
        from morph.textio import changed_on_disk

        if not changed_on_disk(path, loaded):
            return
        try:
            st = os.stat(path)
            change = (str(path), loaded.sha256, st.st_mtime_ns, st.st_size)
        except OSError:
            change = (str(path), loaded.sha256, None, None)  # deleted
        if change == self._disk_change_told:
            return
        self._disk_change_told = change
        what = "has changed on disk" if change[2] is not None else "is no longer on disk"
        self.call_from_thread(
            self.notify, f"{path.name} {what} since Morph opened it; saving will ask before replacing it",
            title="Changed on disk", severity="warning", timeout=15)

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        if event.text_area is not self._document:
            return
        self.generation += 1
        self._changes_seen = self.view.changes
        if self._ignore_changes:
            self._ignore_changes -= 1  # a file was loaded: not an edit
        elif self._history_moved and self.view.text == self._clean_text:
            self._history_moved = False
            self._back_to_clean()
        else:
            self._history_moved = False
            self.modified = True
            self._recovery_dirty = True
            self._edits_since_autosave += 1
            if self._edits_since_autosave >= AUTOSAVE_EDITS:
                self._autosave()
            self._show_file()
        if self.status.state.chars > LARGE_COUNTS:
            if self._counts_timer is not None:
                self._counts_timer.stop()
            self._counts_timer = self.set_timer(0.5, self._update_counts)
        else:
            self._update_counts()
        if self.focus_mode:
            self._update_focus_paragraph()
        if self.preview.is_open:
            self._schedule_preview()
        self.schedule_analysis()

    def schedule_analysis(self, delay_ms: int | None = None) -> None:
        if self._debounce is not None:
            self._debounce.stop()
        # A newer edit cancels the older run now, not when the next one starts: its result could only be
        # dropped as stale, and while the writer types it would take the interpreter from the keystrokes.
        self.workers.cancel_group(self, "analysis")
        if self.engine is None or not self.analysis_enabled:
            return
        delay = self.settings.debounce_ms if delay_ms is None else delay_ms
        self.status.update_state(state="waiting", detail="")
        self._debounce = self.set_timer(max(delay, 1) / 1000, self.start_analysis)

    def start_analysis(self) -> None:
        if self.engine is None or not self.analysis_enabled:
            return
        focus = self.view.cursor_offset
        chars = self.view.document.counts()[1]
        limit = self.settings.analysis_max_chars
        note = ""
        if chars > limit:  # the window from the text around the cursor (joining a 50 MB text took ~50 ms)
            around = max(0, focus - limit)
            region = self.view.text_between(around, focus + limit)
            base, end = window_around(region, focus - around, limit)
            text, base, end = region[base:end], base + around, end + around
            note = f"large document: analysing {end - base:,} of {chars:,} chars around the cursor"
        else:
            text, base = self.view.text, 0
        self._pause_started = time.perf_counter()
        self._analysed_focus = focus - base
        self.status.update_state(state="analysing", detail="", note=note)
        self._analyse(text, self.generation, focus - base, base,
                      (self.view.visible_offsets(), self.pinned, len(self.palette)))

    @work(thread=True, group="analysis", exclusive=True, exit_on_error=False, name="analysis", description="analysis")
    def _analyse(self, text: str, generation: int, focus: int, base: int, view: tuple) -> None:
        """A short loop over the engine's events. A result goes out with its highlight plan for the view
        the analysis started in (made here, so the UI thread only colours it and swaps it in); after a
        partial result the next event is not asked for until the UI has drawn it, so the edited paragraph
        is drawn before the rest of the document competes with it for the interpreter."""
        from morph.errors import ServerRefused, ServerUnavailable
        from morph.features.analysis import AnalysisCancelled, BlockProgress, FinalResult

        worker = get_current_worker()
        engine = self.engine
        checkpoint = self.input_priority.checkpoint
        (view_range, pinned, n_colours) = view
        try:
            stream = engine.stream(text, generation, focus, should_stop=lambda: worker.is_cancelled,
                                   checkpoint=checkpoint)
            with closing(stream):
                for event in stream:
                    if isinstance(event, BlockProgress):
                        self.post_message(AnalysisProgress(generation, event.done, event.total))
                        continue
                    scales = engine.feature_scales(event.analysis)
                    checkpoint()
                    plan = plan_highlights(event.analysis, text, base, view_range, pinned, n_colours, scales)
                    if worker.is_cancelled:
                        return
                    message = AnalysisReady(event.analysis, not isinstance(event, FinalResult), base, scales, plan)
                    self.post_message(message)
                    if message.partial:
                        message.drawn.wait(PARTIAL_DRAW_WAIT_S)
        except AnalysisCancelled:
            return
        except ServerUnavailable as err:
            self.post_message(AnalysisFailed(generation, str(err), server="down"))
        except ServerRefused as err:
            self.post_message(AnalysisFailed(generation, str(err), server="refused"))
        except MemoryError:
            self.post_message(AnalysisFailed(generation, "out of memory during analysis"))
        except Exception as err:  # noqa: BLE001 - shown in the UI, the text is untouched
            self.post_message(AnalysisFailed(generation, _one_line(err)))

    def on_analysis_ready(self, message: AnalysisReady) -> None:
        if message.analysis.generation != self.generation:
            message.drawn.set()
            return  # made for text that has changed since: never drawn
        hold = self.input_priority.remaining()
        if hold > 0:
            # A keystroke is being handled: its frame goes out first, the result right after it (drawing a
            # result takes ~10 ms of the UI thread, which the keystroke would otherwise wait for).
            self.set_timer(hold, partial(self.on_analysis_ready, message))
            return
        self.call_after_refresh(message.drawn.set)
        self.analysis = message.analysis
        self.analysis_base = message.offset_base
        self._scales = message.scales if message.scales is not None else self.engine.feature_scales(self.analysis)
        self._refresh_highlights(message.plan)
        self._refresh_panel()
        if self._server_trouble:
            self._server_trouble = ""
            self.notify("the server is back: analysis resumed", title="Server back", timeout=4)
        if not message.partial:
            self.last_latency_ms = (time.perf_counter() - self._pause_started) * 1000
            self.status.update_state(state="idle", detail=f"({message.analysis.n_tokens} tokens)",
                                     latency_ms=self.last_latency_ms)
        else:
            self.status.update_state(state="analysing", detail="(cursor region done)")

    def on_analysis_progress(self, message: AnalysisProgress) -> None:
        if message.generation == self.generation and message.done < message.total:
            self.status.update_state(state="analysing", detail=f"({message.done}/{message.total} blocks)")

    def on_analysis_failed(self, message: AnalysisFailed) -> None:
        if message.server:  # a remote engine: say so once, and try again until the server is back
            if self._server_trouble != message.server:
                self._server_trouble = message.server
                self.notify(message.error, title="Server down" if message.server == "down" else "Server refused",
                            severity="warning", timeout=8)
            self.status.update_state(state="server down" if message.server == "down" else "key refused",
                                     detail="(retrying)" if message.server == "down" else "")
            if message.generation == self.generation and message.server == "down":
                if self._server_retry is not None:
                    self._server_retry.stop()
                self._server_retry = self.set_timer(SERVER_RETRY_S, lambda: self.schedule_analysis(0))
            return
        if message.generation != self.generation:
            return
        self.status.update_state(state="error", detail="")
        self.notify(message.error, title="Analysis failed", severity="error", timeout=10)

    # --- highlights and panel ----------------------------------------------------------------------
    def _analysis_current(self) -> bool:
        # an edit whose Changed message is still on its way has made the analysis stale already
        return (self.analysis is not None and self.analysis.generation == self.generation
                and self.view.changes == self._changes_seen)

    def _refresh_highlights(self, plan: HighlightPlan | None = None) -> None:
        """Highlight the view; `plan` (made in the worker) is used when it was made for this very view."""
        if not self._analysis_current() or not self.analysis_enabled:
            return
        view = self.view.visible_offsets()
        if plan is None or plan.key != (*view, self.pinned, len(self.palette)):
            analysis, base = self.analysis, self.analysis_base
            text = self.view.text_between(base, base + analysis.text_length)
            plan = plan_highlights(analysis, text, base, view, self.pinned, len(self.palette), self._scales)
        if self.pinned is not None:
            slots = self.colour_book.assign([self.pinned] + [f for f in self.colour_book._slots if f != self.pinned])
        else:
            slots = self.colour_book.assign(plan.features)
        self.view.set_overlay(plan.overlay.with_slots(slots))
        self._show_legend(plan)

    def _show_legend(self, plan: HighlightPlan) -> None:
        rows = [PanelRow(f, self.engine.label(f), score, self._colour(f)) for f, score in zip(plan.features, plan.scores)]
        title = "Pinned feature" if self.pinned is not None else "Highlighted (distinctive in view)"
        self.panel.show_legend(title, rows)

    def _colour(self, feature: int) -> str | None:
        slot = self.colour_book.slot(feature)
        return None if slot is None else self.palette[slot % len(self.palette)]

    def _rows(self, pairs: list[tuple[int, float]]) -> list[PanelRow]:
        return [PanelRow(f, self.engine.label(f), act, self._colour(f)) for f, act in pairs]

    def _refresh_panel(self) -> None:
        if not self._analysis_current():
            return
        analysis, base = self.analysis, self.analysis_base
        view = self.view
        cursor = view.cursor_offset - base
        row, column = view.cursor_location
        line = view.document[row]
        # At the end of a word the writer means the word just typed, not the space or line break after it.
        at_word_end = column > 0 and (column >= len(line) or line[column].isspace()) and not line[column - 1].isspace()
        token = analysis.token_at(cursor - 1 if at_word_end else cursor)
        if token is not None and 0 <= cursor <= analysis.text_length:
            start, end = analysis.offsets[token]
            token_text = view.text_between(base + int(start), base + int(end))
            self.panel.show_token(token_text, self._rows(analysis.token_features(token, PANEL_ROWS, distinctive=True)))
        else:
            self.panel.show_token(None, [])
        index = analysis.paragraph_index(cursor)
        if index is None:
            self.panel.show_paragraph("Paragraph", [])
        else:
            summary = analysis.summary(index, PANEL_ROWS)
            variance = "—" if summary.explained_variance is None else f"{summary.explained_variance:.2f}"
            self.panel.show_paragraph(f"¶{index + 1} · {summary.n_tokens} tokens · variance explained {variance}",
                                      self._rows([(f.id, f.score) for f in summary.features[:PANEL_ROWS]]))
        sel_start, sel_end = view.selection_offsets
        if sel_end > sel_start:
            a, b = analysis.tokens_in(sel_start - base, sel_end - base)
            stats = analysis.span_features(a, b, PANEL_ROWS)
            self.panel.show_selection(f"Selection · {b - a} tokens",
                                      self._rows([(f.id, f.score) for f in stats[:PANEL_ROWS]]))
        else:
            self.panel.show_selection("Selection", [])
        if self.pinned is not None:
            self.panel.show_pinned(f"Pinned #{self.pinned}: {self.engine.label(self.pinned)}\n"
                                   "F8/Shift+F8 next/previous · Shift+F9 unpin")
        else:
            self.panel.show_pinned("")

    def on_text_area_selection_changed(self, event: TextArea.SelectionChanged) -> None:
        if event.text_area is not self._document:
            return
        row, column = self.view.cursor_location
        self.status.update_state(row=row, column=column)
        if self.focus_mode:
            self._update_focus_paragraph()
        if self.analysis is not None and self.engine is not None and self.analysis_enabled:
            # a large document is analysed in a window: follow the cursor out of it
            cursor = self.view.cursor_offset
            if not self.analysis_base <= cursor <= self.analysis_base + self.analysis.text_length:
                self.schedule_analysis()
            else:
                self._schedule_prepare()
        self._refresh_panel()

    def _schedule_prepare(self) -> None:
        """When the cursor settles in another paragraph, the engine keeps that block's key/values (a
        background pass), so that the first pause after typing there costs what was typed, not the block."""
        if self._prepare_timer is not None:
            self._prepare_timer.stop()
        self._prepare_timer = self.set_timer(max(self.settings.debounce_ms, 1) / 1000, self._prepare)

    def _prepare(self) -> None:
        self._prepare_timer = None
        if not self._analysis_current() or self.engine is None or not self.analysis_enabled:
            return
        if any(w.group == "analysis" and not w.is_finished for w in self.workers):
            return  # the analysis computes the cursor's block itself
        base, analysis = self.analysis_base, self.analysis
        cursor = self.view.cursor_offset - base
        where = (self.generation, analysis.paragraph_index(cursor))
        if where[1] is None or where == self._prepared or where[1] == analysis.paragraph_index(self._analysed_focus):
            return  # prepared already, or the analysis itself began there (typing)
        self._prepared = where
        self._prepare_block(self.view.text[base:base + analysis.text_length], cursor)

    @work(thread=True, group="prepare", exclusive=True, exit_on_error=False, name="prepare")
    def _prepare_block(self, text: str, focus: int) -> None:
        worker = get_current_worker()
        try:
            self.engine.prepare(text, focus, should_stop=lambda: worker.is_cancelled,
                                checkpoint=self.input_priority.checkpoint)
        except Exception:  # noqa: BLE001 - only a speed-up: the next analysis computes the block itself
            pass

    def on_document_view_scrolled(self, _event: Any) -> None:
        self._refresh_highlights()

    def _update_counts(self) -> None:
        self._counts_timer = None
        words, chars = self.view.document.counts()  # kept up to date edit by edit (morph.editor.linebreaks)
        self.status.update_state(words=words, chars=chars)
        self._check_size(chars)

    # --- pinning and feature details -----------------------------------------------------------
    def on_feature_chosen(self, message: FeatureChosen) -> None:
        if message.detail:
            self.show_feature(message.feature)
        else:
            self.pin(None if self.pinned == message.feature else message.feature)

    def pin(self, feature: int | None) -> None:
        self.pinned = feature
        self._refresh_highlights()
        self._refresh_panel()
        if feature is not None:
            self.notify(f"#{feature} {self.engine.label(feature)}", title="Pinned: heat map of one feature")

    def show_feature(self, feature: int) -> None:
        if not self._analysis_current():
            self.notify("wait for the analysis to finish", severity="warning")
            return
        from morph.editor.feature_screen import FeatureDetailScreen

        report = self.engine.feature_report(feature, self.analysis)
        text = self.view.text_between(self.analysis_base, self.analysis_base + self.analysis.text_length)

        def done(result: tuple[str, int] | None) -> None:
            if result is None:
                return
            action, value = result
            if action == "pin":
                self.pin(value)
            elif action == "goto":
                self._select_token_at(value)

        self.push_screen(FeatureDetailScreen(report, text, 0, self._colour(feature)), done)

    def _select_token_at(self, offset: int) -> None:
        analysis, base = self.analysis, self.analysis_base
        token = analysis.token_at(offset)
        if token is None:
            return
        start, end = (int(v) + base for v in analysis.offsets[token])
        self.view.selection = (self.view.location_of(start), self.view.location_of(end))
        self.view.scroll_cursor_visible(center=True)
        self.view.focus()

    def _occurrence(self, forward: bool) -> None:
        if self.pinned is None:
            self.notify("pin a feature first (choose it in the panel: F9, then Enter)", severity="warning")
            return
        if not self._analysis_current():
            return
        import numpy as np

        values = self.analysis.feature_values(self.pinned)
        hits = np.nonzero(values > 0)[0]
        if len(hits) == 0:
            self.notify("the pinned feature does not fire in this document", severity="warning")
            return
        starts = self.analysis.offsets[hits, 0]
        cursor = self.view.offset_of(min(self.view.selection.start, self.view.selection.end)) - self.analysis_base
        if forward:
            later = np.nonzero(starts > cursor)[0]
            index = hits[later[0]] if len(later) else hits[0]
        else:
            earlier = np.nonzero(starts < cursor)[0]
            index = hits[earlier[-1]] if len(earlier) else hits[-1]
        self._select_token_at(int(self.analysis.offsets[index, 0]))

    # --- actions --------------------------------------------------------------------------------
    def action_next_occurrence(self) -> None:
        self._occurrence(True)

    def action_previous_occurrence(self) -> None:
        self._occurrence(False)

    def action_unpin(self) -> None:
        if self.pinned is not None:
            self.pin(None)

    def action_focus_panel(self) -> None:
        panel = self.panel
        if self.preview.is_open:
            self.action_toggle_preview()
        panel.remove_class("-hidden")
        for name in ("token", "paragraph", "selection"):
            features = panel.query_one(f"#{name}-features", FeatureList)
            if features.rows:
                features.focus()
                if features.highlighted is None:
                    features.highlighted = 0
                return
        self.notify("no features to choose yet", severity="warning")

    def action_focus_editor(self) -> None:
        self.view.focus()

    def action_toggle_panel(self) -> None:
        if self.preview.is_open:  # the panel is behind the preview: bring it back
            self.action_toggle_preview()
            self.panel.remove_class("-hidden")
        else:
            self.panel.toggle_class("-hidden")

    def action_analyze_now(self) -> None:
        if self.engine is None:
            self.notify("no model is loaded", severity="warning")
            return
        self.schedule_analysis(0)

    def action_toggle_analysis(self) -> None:
        self.analysis_enabled = not self.analysis_enabled
        if self.analysis_enabled:
            self.schedule_analysis(0)
        else:
            self.view.set_overlay(Overlay.empty())
            self.status.update_state(state="off", detail="(live analysis paused: F7)")

    # --- files: save, save as, open, new, quit ---------------------------------------------------
    def _file_label(self) -> str:
        if self.path is None:
            return "untitled"
        name = self.path.name
        if self.loaded is not None and self.loaded.read_only:
            return f"{name} (read-only)"
        if self.loaded is not None and self.loaded.is_new:
            return f"{name} (new file)"
        return name

    def _show_file(self) -> None:
        label = self._file_label()
        self.sub_title = ("● " if self.modified else "") + label
        self.status.update_state(file=label, modified=self.modified)

    def _announce_file(self) -> None:
        loaded = self.loaded
        if loaded is None:
            return
        if loaded.note:
            self.notify(loaded.note, title="Opened read-only" if loaded.read_only else "Note", severity="warning",
                        timeout=15)
        if loaded.mixed_newlines:
            shown = {"\n": "LF", "\r\n": "CRLF", "\r": "CR"}[loaded.newline]
            self.notify(f"{loaded.path.name} mixes line endings: it will be saved with {shown} throughout",
                        severity="warning")

    def _base_dir(self) -> Path:
        return self.path.parent if self.path is not None else Path.cwd()

    def _start_flow(self, flow: Callable[..., Any], *args: Any) -> None:
        """Run a dialog flow (save, open, quit, ...) in a worker, one at a time."""
        if self._flow_busy:
            return
        self._flow_busy = True
        self._run_flow(flow, *args)

    @work(group="file", exit_on_error=False, name="file")
    async def _run_flow(self, flow: Callable[..., Any], *args: Any) -> None:
        try:
            await flow(*args)
        except Exception as err:  # noqa: BLE001 - a failed flow is shown; the text stays
            self.notify(_one_line(err), title="Something went wrong (your text is untouched)", severity="error",
                        timeout=15)
        finally:
            self._flow_busy = False
            if not self._modal_open() and self.focused is None:
                self.view.focus()  # keys typed after a dialog go to the text, never nowhere
            if self._held_keys is not None:
                self.call_later(self._replay_held_keys)  # in the app's turn: before any key typed later

    async def _replay_held_keys(self) -> None:
        """The keys typed after a flow's dialog closed, now that the flow is over, in the order typed."""
        held, self._held_keys = self._held_keys or [], None
        for event in held:
            await self.on_event(_again(event))

    async def _ask(self, screen: Screen) -> Any:
        return await self.push_screen(screen, wait_for_dismiss=True)

    def _modal_open(self) -> bool:
        return len(self.screen_stack) > 1

    async def save(self, *, save_as: bool = False) -> bool:
        """Save (asking for a name if there is none, or if `save_as`); True if the text is on disk."""
        from morph.textio import changed_on_disk

        target = None if save_as else self.path
        loaded = self.loaded
        if target is not None and loaded is not None and loaded.read_only and _same_file(target, loaded.path):
            self.notify(f"{target.name} was opened read-only (it is not valid UTF-8): save it under another name",
                        title="Save as", severity="warning", timeout=10)
            target = None
        if target is None:
            initial = str(self.path) if self.path is not None else ""
            target = await self._ask(SaveAsScreen(initial=initial, base_dir=self._base_dir()))
            if target is None:
                return False
        if (self.path is not None and loaded is not None and _same_file(target, self.path)
                and await asyncio.to_thread(changed_on_disk, target, loaded)):
            choice = await self._ask(ConfirmScreen(
                f"{target.name} has changed on disk since Morph opened it. Replace it with your text?",
                title="File changed on disk", yes="Overwrite", no="Save as…", cancel="Cancel", default="cancel"))
            if choice == "no":
                return await self.save(save_as=True)
            if choice != "yes":
                return False
        return await self._write(Path(target))

    async def _write(self, target: Path) -> bool:
        from morph.errors import MorphError
        from morph.recovery import discard_recovery
        from morph.textio import write_document

        text, generation, like, old_path = self.view.text, self.generation, self.loaded, self.path

        def write() -> Any:
            written = write_document(target, text, like)
            with self._recovery_lock:  # a late autosave must not bring back a recovery file
                self._recovery_epoch += 1
                if old_path is None or not _same_file(old_path, target):
                    discard_recovery(old_path, self.recovery_session)
                discard_recovery(target, self.recovery_session)
            return written

        self.status.update_state(note="saving…")
        try:
            written = await asyncio.to_thread(write)
        except MorphError as err:
            self.status.update_state(note="not saved")
            self.notify(str(err), title="Not saved: your text is still here", severity="error", timeout=20)
            return False
        self.status.update_state(note="")
        self.path, self.loaded = written.path, written
        if self.generation == generation:
            self._clean_text = text
            self.modified = False
            self._recovery_dirty = False
        self._show_file()
        self.notify(f"saved {target.name}", timeout=3)
        return True

    async def _settle_changes(self, doing: str) -> bool:
        """Before the text is closed: ask to save unsaved changes. True: go on."""
        if not self.modified:
            return True
        name = self.path.name if self.path is not None else "The untitled document"
        choice = await self._ask(ConfirmScreen(
            f"{name} has unsaved changes. Save them before {doing}?",
            title="Unsaved changes", yes="Save", no="Discard", cancel="Cancel"))
        if choice == "yes":
            return await self.save()
        if choice == "no":
            self._discard_changes()
            return True
        return False

    def _discard_changes(self) -> None:
        from morph.recovery import discard_recovery

        with self._recovery_lock:  # this window's own file; another window's, kept for later, stays
            self._recovery_epoch += 1
            discard_recovery(self.path, self.recovery_session)
        self.modified = False
        self._recovery_dirty = False
        self._discarded = True

    async def _quit_flow(self) -> None:
        if await self._settle_changes("quitting"):
            self.exit()

    async def _open_flow(self, path: Path | None = None) -> None:
        from morph.errors import InputError
        from morph.textio import read_document

        if path is None:
            path = await self._ask(OpenFileScreen(base_dir=self._base_dir()))
            if path is None:
                return
        limit = self.settings.max_file_bytes
        try:
            loaded = await asyncio.to_thread(read_document, path, max_bytes=limit)
        except InputError as err:
            try:
                lenient = await asyncio.to_thread(read_document, path, max_bytes=limit, allow_invalid_utf8=True)
            except InputError:
                lenient = None
            if lenient is None or not lenient.read_only:
                self.notify(str(err), title="Not opened", severity="error", timeout=15)
                return
            choice = await self._ask(ConfirmScreen(
                f"{Path(path).name} is not valid UTF-8. Open it read-only, with the bad bytes shown as \ufffd? "
                "(You can save it under another name.)",
                title="Not UTF-8", yes="Open read-only", no="Don't open", cancel=None, default="no"))
            if choice != "yes":
                return
            loaded = lenient
        if not await self._settle_changes("opening another file"):
            return
        self._load(loaded)
        await self._offer_recovery()

    async def _new_flow(self) -> None:
        if await self._settle_changes("starting a new document"):
            self._load(None)

    def _load(self, loaded: Any) -> None:
        """Replace the document with a file's text (or an empty untitled one)."""
        self.path = loaded.path if loaded is not None else None
        self.loaded = loaded
        self._ignore_changes += 1
        self._clean_text = loaded.text if loaded is not None else ""
        self.view.load_text(self._clean_text)
        self.view.move_cursor((0, 0))
        self.modified = False
        self._recovery_dirty = False
        self._edits_since_autosave = 0
        self._discarded = False
        self.pinned = None
        self.analysis = None
        self.view.set_overlay(Overlay.empty())
        self.status.update_state(note="", chars=len(self.view.text))
        self._show_file()
        self._announce_file()
        if self.engine is not None:
            self.panel.show_message("analysing…")

    async def _offer_recovery(self) -> None:
        """Offer each recovery of another window (newest first) whose text differs from the file on disk."""
        from morph.recovery import discard, find_recoveries

        for rec in await asyncio.to_thread(find_recoveries, self.path, self.recovery_session):
            loaded = self.loaded
            on_disk = loaded.text if loaded is not None and not loaded.is_new else None
            name = self.path.name if self.path is not None else "an untitled document"
            choice = await self._ask(RecoveryScreen(name, rec.text, on_disk, rec.saved_at))
            if choice == "restore":
                self.view.replace(rec.text, (0, 0), self.view.document.end)
                self.view.move_cursor((0, 0))
                self.status.update_state(note="")
                # The text is this window's now: in its own recovery file before the other one goes.
                await asyncio.to_thread(self._write_recovery_now, self.path, self.view.text, self._recovery_epoch)
                await asyncio.to_thread(discard, rec)
                self.notify("recovered text restored (not saved yet: Ctrl+S to save; Ctrl+Z undoes)", timeout=8)
                return
            if choice == "discard":
                await asyncio.to_thread(discard, rec)
                continue
            self.status.update_state(note=WAITING_NOTE)
            return
        if self.status.state.note == WAITING_NOTE:
            self.status.update_state(note="")

    # --- autosave and recovery ------------------------------------------------------------------
    def _autosave_tick(self) -> None:
        """Unsaved edits reach this window's recovery file at most `autosave_seconds` after they were made,
        while typing as well as after it (and after AUTOSAVE_EDITS edits, see on_text_area_changed)."""
        if self._recovery_dirty and time.monotonic() - self._last_autosave >= self.settings.autosave_seconds:
            self._autosave()

    def _autosave(self) -> None:
        self._recovery_dirty = False
        self._edits_since_autosave = 0
        self._last_autosave = time.monotonic()
        # The lines as they are now, joined in the worker (joining a 50 MB text here stalled typing ~50 ms)
        self._write_recovery(self.path, self.view.document.snapshot(), self._recovery_epoch)

    @work(thread=True, group="autosave", exit_on_error=False, name="autosave", description="autosave")
    def _write_recovery(self, path: Path | None, text: Callable[[], str], epoch: int) -> None:
        self._write_recovery_now(path, text(), epoch)

    def _write_recovery_now(self, path: Path | None, text: str, epoch: int) -> None:
        from morph.errors import MorphError
        from morph.recovery import save_recovery

        with self._recovery_lock:
            if epoch != self._recovery_epoch:
                return  # saved or discarded since: this text is not needed
            try:
                save_recovery(path, text, self.recovery_session)
            except MorphError as err:
                if self._autosave_error != str(err):
                    self._autosave_error = str(err)
                    self.call_from_thread(self.notify, str(err), title="Autosave failed", severity="error",
                                          timeout=15)
            else:
                self._autosave_error = None

    def _emergency_recovery(self) -> None:
        """The app is going away with unsaved text: keep it in the recovery file, now (this may run in a
        signal handler, on the main thread, so the lock is not waited on for long)."""
        document = self._document
        if document is None or not self.modified or self._discarded:
            return
        try:
            from morph.recovery import save_recovery

            locked = self._recovery_lock.acquire(timeout=1.0)
            try:
                save_recovery(self.path, document.text, self.recovery_session)
            finally:
                if locked:
                    self._recovery_lock.release()
        except Exception:  # noqa: BLE001 - nothing more can be done while exiting
            pass

    def _on_fatal_signal(self, signum: int) -> None:
        """SIGTERM, SIGHUP, SIGQUIT: the unsaved text goes to the recovery file, then the process ends at once
        (threads still loading a model or analysing would keep it alive, and a lost terminal answers nothing)."""
        from morph.editor.lifeline import exit_now

        self._emergency_recovery()
        exit_now(signum, getattr(self, "_driver", None))

    def _check_terminal(self) -> None:
        """The terminal hung up without a SIGHUP reaching Morph (morph.editor.lifeline): as on a SIGHUP."""
        from morph.editor.lifeline import terminal_gone

        if terminal_gone(getattr(self, "_driver", None)):
            self._on_fatal_signal(signal.SIGHUP)

    def on_unmount(self) -> None:
        self._emergency_recovery()
        if self._restore_signals is not None:
            self._restore_signals()
            self._restore_signals = None

    def _handle_exception(self, error: Exception) -> None:
        self._emergency_recovery()
        super()._handle_exception(error)

    # --- actions --------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if (action in KEYED_ACTIONS or action == "close_steering") and self._modal_open():
            return False  # the dialog's own keys win
        if action in ("undo", "redo") and self.focused is not self._document:
            return False  # undo in the find box is the find box's
        if action in KEYED_ACTIONS and action != "steer" and self._steer_shadows(action):
            return False  # the steering pane has the focus and its own use for this key
        if action in PANEL_ACTIONS and self._steering_open():
            return False  # the panel is hidden behind the steering pane
        return True

    def action_save(self) -> None:
        self._start_flow(self.save)

    def action_save_as(self) -> None:
        self._start_flow(partial(self.save, save_as=True))

    def action_open(self) -> None:
        self._start_flow(self._open_flow)

    def action_new(self) -> None:
        self._start_flow(self._new_flow)

    async def action_quit(self) -> None:
        if not self.modified:
            self.exit()
        else:
            self._start_flow(self._quit_flow)

    def action_recovered_text(self) -> None:
        async def offer() -> None:
            from morph.recovery import find_recovery

            if await asyncio.to_thread(find_recovery, self.path, self.recovery_session) is None:
                self.notify("there is no recovered text for this document")
                return
            await self._offer_recovery()

        self._start_flow(offer)

    def action_undo(self) -> None:
        self._history_moved = True
        self.view.action_undo()

    def action_redo(self) -> None:
        self._history_moved = True
        self.view.action_redo()

    def _back_to_clean(self) -> None:
        """Undo or redo led back to the text on disk: not modified, and this window's recovery file goes."""
        from morph.recovery import discard_recovery

        self.modified = False
        self._recovery_dirty = False
        self._edits_since_autosave = 0
        with self._recovery_lock:  # rare (an undo), and an unlink: done here, so no later autosave is lost
            self._recovery_epoch += 1
            discard_recovery(self.path, self.recovery_session)
        self._show_file()

    def action_find(self) -> None:
        self.findbar.open(replace=False)

    def action_replace(self) -> None:
        self.findbar.open(replace=True)

    def _find(self, forward: bool) -> None:
        bar = self.findbar
        if not bar.query_text:
            bar.open()
            return
        result = bar.find_next() if forward else bar.find_previous()
        if not bar.is_open:
            self.notify(f"{bar.query_text!r}: {result.describe()}", timeout=3)

    def action_find_next(self) -> None:
        self._find(True)

    def action_find_previous(self) -> None:
        self._find(False)

    def action_goto_line(self) -> None:
        view = self.view

        def go(line: int | None) -> None:
            if line is None:
                return
            view.move_cursor((line - 1, 0))
            view.scroll_cursor_visible(center=True)
            view.focus()

        self.push_screen(GotoLineScreen(view.document.line_count, view.cursor_location[0] + 1), go)

    def action_help(self) -> None:
        rows = [(self.keys[action], description) for action, description, _ in ACTIONS if self.keys.get(action)]
        rows += [("ctrl+p", "Command palette: every action, themes, settings"),
                 ("escape", "Back to the text (closes the find bar)"),
                 ("enter", "In the features panel: pin the feature (again: unpin)"),
                 ("d", "In the features panel: feature details"),
                 ("ctrl+g", "In the steering pane: generate rewrites"),
                 ("enter", "In the steering pane: accept the highlighted rewrite (one undo step)"),
                 ("escape", "In the steering pane: back to the text (generation goes on)"),
                 (SteerPane.CLOSE_KEY, "With the steering pane open: close it and cancel the generation")]
        from morph.config import config_path

        where = self.settings.source or config_path()
        self.push_screen(HelpScreen(rows, intro=f"Change keys in the \\[keys] table of {where}"))

    def action_steer(self) -> None:
        """Open the steering pane on the selection; with the pane open, go between it and the text
        (a new selection in the text is steered instead of the old passage)."""
        pane, view = self.steerpane, self.view
        start, end = view.selection_offsets
        if pane.is_open:
            if pane.has_focus_within:
                view.focus()
                return
            if end <= start or (start, end) == pane.passage_now():
                pane.focus_pane()
                return
        if end <= start:
            self.notify("steering: select the passage to rewrite first", severity="warning")
            return
        if self.engine is None:
            self.notify("steering needs a model, and none is loaded", severity="warning")
            return

        from morph.errors import MorphError

        try:
            steerer = self.engine.steerer()
        except MorphError as err:  # e.g. a remote engine without steering
            self.notify(str(err), title="Steering", severity="warning")
            return
        self.panel.add_class("-steering")  # the pane takes the panel's place
        pane.open(steerer, start, end)

    def _steering_open(self) -> bool:
        pane = self._widgets.get(SteerPane)
        return pane is not None and pane.is_open

    def _steer_shadows(self, action: str) -> bool:
        """Is `action`'s key one the steering pane uses, while the pane has the focus?"""
        keys = {key.strip() for key in str(self.keys.get(action) or "").split(",")}
        if not keys & SteerPane.KEYS:
            return False
        return self._steering_open() and self.steerpane.has_focus_within

    def action_close_steering(self) -> None:
        if self._steering_open():
            self.steerpane.action_close()

    def on_steer_pane_accepted(self, message: SteerPane.Accepted) -> None:
        pane, view = message.pane, self.view
        span = pane.passage_now()  # where the passage is now, after the edits made meanwhile
        if span is None:
            pane.show_error(EDITED)
            self.notify(EDITED, title="Not applied", severity="warning")
            return
        start, end = span
        pane.close()
        # One undo step: close the history batch before and after the replacement.
        view.history.checkpoint()
        result = view.replace(message.replacement, view.location_of(start), view.location_of(end))
        view.history.checkpoint()
        view.selection = (view.location_of(start), result.end_location)
        view.focus()

    def on_steer_pane_closed(self, message: SteerPane.Closed) -> None:
        self.panel.remove_class("-steering")
        if self.focused is None:
            self.view.focus()

    def action_toggle_preview(self) -> None:
        pane, panel = self.preview, self.panel
        if pane.is_open:
            pane.remove_class("-open")
            panel.remove_class("-preview")
            if self._preview_timer is not None:
                self._preview_timer.stop()
        else:
            pane.add_class("-open")
            panel.add_class("-preview")  # the preview takes the panel's place
            self._render_preview()

    def _schedule_preview(self) -> None:
        if self._preview_timer is not None:
            self._preview_timer.stop()
        self._preview_timer = self.set_timer(max(self.settings.debounce_ms, 150) / 1000, self._render_preview)

    def _render_preview(self) -> None:
        self._preview_timer = None
        if self.preview.is_open:
            self.preview.show_text(self.view.text, self.view.cursor_offset)

    def action_focus_mode(self) -> None:
        self.focus_mode = not self.focus_mode
        if self.focus_mode:
            self._update_focus_paragraph()
        else:
            self.view.focus_paragraph = None
            self.view.repaint()
        self.notify(f"focus mode {'on' if self.focus_mode else 'off'}", timeout=2)

    def _update_focus_paragraph(self) -> None:
        view = self.view
        span = _paragraph_span(view, view.cursor_location[0])
        if span != view.focus_paragraph:
            view.focus_paragraph = span
            view.repaint()

    def action_cycle_theme(self) -> None:
        names = sorted(getattr(self, "morph_themes", {}))
        if not names:
            return
        index = names.index(self.theme_name) + 1 if self.theme_name in names else 0
        name = names[index % len(names)]
        self.switch_theme(name)
        self.notify(f"theme: {name}", timeout=2)

    def _toggle_setting(self, name: str) -> None:
        from morph.config import with_updates

        value = not getattr(self.settings, name)
        self.settings = with_updates(self.settings, **{name: value})
        if name == "soft_wrap":
            self.view.soft_wrap = value
        elif name == "line_numbers":
            self.view.show_line_numbers = value
        elif name == "markdown":
            self._apply_markdown()
        self._persist(name, value)

    def _persist(self, name: str, value: Any) -> None:
        try:
            from morph.config import set_setting

            set_setting(name, value)
        except Exception as err:  # noqa: BLE001 - the choice still applies to this session
            self.notify(f"{name} not saved to the config: {_one_line(err)}", severity="warning")

    def get_system_commands(self, screen: Screen):
        for command in super().get_system_commands(screen):
            # Textual's theme picker and quit are replaced by ours (palettes that persist; quit that asks)
            if command.title not in ("Theme", "Quit"):
                yield command
        for action, description, title in ACTIONS:
            key = self.keys.get(action)
            help_text = description + (f" ({format_key(key)})" if key else "")
            yield SystemCommand(title, help_text, getattr(self, f"action_{action}"))
        yield SystemCommand("File: recovered text…", "Restore or discard text kept by autosave",
                            self.action_recovered_text)
        for name, label in (("soft_wrap", "soft wrap"), ("line_numbers", "line numbers"),
                            ("markdown", "Markdown styling")):
            state = "on" if getattr(self.settings, name) else "off"
            yield SystemCommand(f"View: {label} on/off", f"Now {state} (kept for next time)",
                                partial(self._toggle_setting, name))
        for name in sorted(getattr(self, "morph_themes", {})):
            yield SystemCommand(f"Theme: {name}", "Switch theme (kept for next time)", partial(self.switch_theme, name))

    def switch_theme(self, name: str) -> None:
        self.set_morph_theme(name)
        self._persist("theme", name)


def _again(event: events.Event) -> events.Event:
    """A fresh copy of a key or paste event, to be dispatched again."""
    return events.Key(event.key, event.character) if isinstance(event, events.Key) else events.Paste(event.text)


def _busy(screen: Screen) -> bool:
    """Whether the screen or a widget on it has messages waiting (a key, or what the key led to: Submitted,
    Pressed, passed from widget to parent on the way to the screen's handler)."""
    return any(node._message_queue.qsize() for node in (screen, *screen.walk_children()))


def _describe_on_disk(path: Path | None) -> Any:
    """The on-disk state of `path` for an app started without one (None if untitled or unreadable)."""
    if path is None:
        return None
    from morph.errors import MorphError
    from morph.textio import read_document

    try:
        return read_document(path, allow_invalid_utf8=True)
    except MorphError:
        return None


def _same_file(a: Path | str, b: Path | str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def _paragraph_span(view: DocumentView, row: int) -> tuple[int, int]:
    """Offsets of the first and last line starts of the paragraph (blank-line separated) around `row`."""
    document = view.document
    count = document.line_count
    row = max(0, min(row, count - 1))
    first = last = row
    if document[row].strip():
        while first > 0 and document[first - 1].strip():
            first -= 1
        while last < count - 1 and document[last + 1].strip():
            last += 1
    starts = view.line_starts
    return int(starts[first]), int(starts[last])
