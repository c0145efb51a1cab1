"""The Morph editor: the app wires the writing surface, the side area (features panel, Markdown preview, steering
pane), the find bar and the status bar to two controllers and the engine.

- morph.editor.live_analysis (`self.live`): the analysis in the pauses, its highlights and the panel, the pin;
- morph.editor.session (`self.session`): the file, its modified state, autosave and recovery, and the save /
  open / new / quit flows, which ask through `ask` one at a time (keys typed meanwhile are held: `_start_flow`).

Nothing slow runs on the UI thread: the model loads in a thread worker (`load_engine`: the one place the engine is
made), analyses and autosaves run in thread workers. The writing surface publishes each edit (morph.editor.document)
and counts it: the edit count is the generation every analysis result carries. Every key, help line and palette
entry comes from the one action registry (morph.editor.actions); the user's `settings.keys` (action -> key) reach
the bindings through Textual's keymap. The app also owns the key policy around dialogs (on_event), themes, focus
mode and the preview.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable, TypeVar, cast

from textual import events, work
from textual.app import App, ComposeResult, SystemCommand
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import TextArea
from textual.worker import get_current_worker

from morph.editor.actions import (ACTIONS, BY_ID, bindings, format_key, in_help, key_text, keymap, keys_in_force,
                                  keys_of, priority_keys)
from morph.editor.dialogs import GotoLineScreen, HelpScreen
from morph.editor.document import DocumentView
from morph.editor.find_bar import FindBar
from morph.editor.frames import PacedScreen
from morph.editor.key_order import focus_now
from morph.editor.messages import (AnalysisFailed, AnalysisProgress, AnalysisReady, EngineFailed, EngineProgress,
                                   EngineReady, FeatureChosen)
from morph.editor.live_analysis import LiveAnalysis
from morph.editor.session import DocumentSession
from morph.editor.side_area import CSS as SIDE_AREA_CSS
from morph.editor.side_area import SideArea
from morph.editor.panel import FeatureList, FeaturePanel
from morph.editor.preview import PreviewPane
from morph.editor.status import StatusBar
from morph.editor.timing import TimingHook
from morph.editor.steer_pane import SteerPane
from morph.errors import one_line
from morph.features.priority import InputPriority

if TYPE_CHECKING:
    from textual.await_complete import AwaitComplete
    from textual.timer import Timer
    from textual.widget import Widget

    from morph.config import Settings
    from morph.features.analysis import Analysis
    from morph.features.engine import EngineLike
    from morph.textio import LoadedText

W = TypeVar("W", bound="Widget")
R = TypeVar("R")

LARGE_COUNTS = 300_000  # past this many characters, word counts are updated after a pause, not per key
GC_THRESHOLDS = (5000, 20, 20)  # gc.set_threshold once the model is loaded (defaults: 700, 10, 10)
INPUT_EVENTS = (events.Key, events.Paste, events.MouseDown, events.MouseScrollDown, events.MouseScrollUp)
LARGE_STYLING = 100_000  # past this many characters, Markdown styling is suspended (it restyles per edit)
DIALOG_SETTLE_S = 0.5  # the longest a key waits for a dialog to finish with the key before it (_after_dialog_key)

APP_ACTIONS = {action.id: action for action in ACTIONS if action.target == "app"}


class MorphApp(App):
    TITLE = "Morph"
    CSS = """
    Screen { layout: vertical; }
    #main { height: 1fr; }
    DocumentView { width: 1fr; height: 1fr; }
    FindBar { dock: none; }
    StatusBar { dock: none; }
    """ + SIDE_AREA_CSS
    # The app's actions from the registry, with their default keys: priority bindings, so the text area's own
    # keys such as F6/F7 do not hide them (check_action turns them off while a dialog is open); the user's
    # [keys] are applied over them as Textual's keymap, by binding id.
    BINDINGS = bindings("app")
    COMMAND_PALETTE_BINDING = BY_ID["command_palette"].key

    def __init__(self, path: str | None = None, text: str = "", settings: Settings | None = None,
                 engine_factory: Callable[[Callable[[str, float], None]], "EngineLike"] | None = None,
                 model_note: str = "",
                 loaded: LoadedText | None = None, settings_error: str = "", timings: TimingHook | None = None) -> None:
        """`settings_error`: why the config file could not be used (the editor then runs on the defaults);
        `timings`: told the timing marks of morph.editor.timing (benchmarks), None: nothing measured."""
        super().__init__()
        self.timings = timings
        from morph.config import Settings

        self.settings: Settings = settings or Settings()
        self.initial_text = text
        self.session = DocumentSession(self, path, text, loaded)
        """The document session: path, modified state, recovery, autosave, the file flows."""
        self.engine_factory = engine_factory  # None: run without a model
        self.model_note = model_note
        self.settings_error = settings_error
        self.side = SideArea(self)
        """The side area's switcher: panel, preview, steering pane."""
        self.live = LiveAnalysis(self)
        """The live analysis: engine, results, pin, colours, debounce, worker, highlights, panel."""
        self._widgets: dict[type[Widget], Widget] = {}
        self.keys = keys_in_force(self.settings.keys)
        """Every action's key(s) now (action id -> Textual key names): what the texts that name a key read."""
        self.set_keymap(keymap(self.settings.keys))
        self._pane_keys = keys_of("steer_pane", self.keys)
        self._priority_keys = priority_keys(self.keys)
        self.theme_name: str | None = None
        self.focus_mode = False
        self._flow_busy = False  # a file dialog flow (save, open, quit...) is running
        self._held_keys: list[events.Event] | None = None  # typed after a flow's dialog closed, until it ends
        self._keys_waiting: list[events.Event] | None = None  # typed while a dialog handles the key before
        self._dialog_key: events.Event | None = None  # that key
        self._dialog_key_back = False  # it came back from the dialog's widgets to the app's bindings
        self._counts_timer: Timer | None = None
        self._preview_timer: Timer | None = None
        self._restore_signals: Callable[[], None] | None = None
        self._document: DocumentView | None = None
        self._markdown_suspended = False
        self._theme_notices = self._register_themes()
        self._hidden_mounted = asyncio.Event()  # set once the steering pane and the find bar are mounted

    # --- layout ---------------------------------------------------------------------------------
    def get_default_screen(self) -> Screen:
        return PacedScreen(id="_default")

    def compose(self) -> ComposeResult:
        self._document = DocumentView(self.initial_text, id="document")
        with Horizontal(id="main"):
            yield self._document
            yield PreviewPane(id="preview")
            yield FeaturePanel(id="panel")
        yield StatusBar(id="status")

    def _base(self, widget_type: type[W]) -> W:
        """A widget of the editor screen, even while a dialog is on top (App.query_one searches the
        active screen, and background results keep arriving while a dialog is open) or while the app
        shuts down (updating a detached widget is harmless). Looked up once."""
        found = self._widgets.get(widget_type)
        if found is None:
            found = self._widgets[widget_type] = self.screen_stack[0].query_one(widget_type)
        return cast(W, found)

    # What the live analysis holds, as the app's callers (and tests) read it.
    @property
    def engine(self) -> EngineLike | None:
        """Local (features.engine.Engine) or a server's (morph.server); None until loaded."""
        return self.live.engine

    @property
    def analysis(self) -> Analysis | None:
        return self.live.analysis

    @property
    def analysis_base(self) -> int:
        return self.live.base

    @property
    def analysis_enabled(self) -> bool:
        return self.live.enabled

    @property
    def pinned(self) -> int | None:
        return self.live.pinned

    @property
    def palette(self) -> list[str]:
        return self.live.palette

    @property
    def input_priority(self) -> InputPriority:
        return self.live.input_priority

    # What the document session holds, as the app's callers (and tests) read it.
    @property
    def path(self) -> Path | None:
        return self.session.path

    @property
    def loaded(self) -> LoadedText | None:
        return self.session.loaded

    @property
    def modified(self) -> bool:
        return self.session.modified

    @property
    def recovery_session(self) -> str:
        return self.session.recovery_session

    @property
    def generation(self) -> int:
        """The document's edit count: every analysis result carries the one it was made for."""
        return self._document.edit_count if self._document is not None else 0

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
        import asyncio

        from morph.editor.threads import ThreadPerJob

        asyncio.get_running_loop().set_default_executor(ThreadPerJob())  # thread workers: why, in its module
        if self.settings_error:
            self.notify(self.settings_error, title="Settings not loaded: using the defaults", severity="error",
                        timeout=20)
        self._apply_theme()
        self.view.soft_wrap = self.settings.soft_wrap
        self.view.show_line_numbers = self.settings.line_numbers
        self.view.focus()
        self.session.show_file()
        self._update_counts()
        self.session.announce_file()
        self.set_interval(min(0.5, self.settings.autosave_seconds / 2), self.session.autosave_tick, name="autosave")
        if not self.is_headless:
            from morph.editor.lifeline import TERMINAL_CHECK_S, catch_fatal_signals

            self._restore_signals = catch_fatal_signals(self._on_fatal_signal)
            self.set_interval(TERMINAL_CHECK_S, self._check_terminal, name="terminal")
        self._start_flow(self.session.offer_recovery)
        self.call_after_refresh(self._mount_hidden)
        if self.engine_factory is None:
            self.status.update_state(state="no model", model=self.model_note or "no model (--no-model)")
            self.panel.show_message("no model loaded: " + (self.model_note or "started with --no-model"))
        else:
            self.status.update_state(state="loading model", model="loading…")
            self.panel.show_message("the model is loading…")
            # after the first paint: the loader's imports (torch, transformers) would hold the interpreter
            # lock while the screen is being drawn for the first time
            self.call_after_refresh(self.load_engine)

    async def _mount_hidden(self) -> None:
        """Mount the steering pane and the find bar just after the first paint: they start hidden and are
        most of the screen's widgets, and styling them cost the first paint ~0.1 s. Their actions wait
        for this (`_hidden_mounted`), so a key pressed meanwhile is not lost."""
        from textual.widget import MountError

        screen = self.screen_stack[0]
        try:
            await screen.query_one("#main", Horizontal).mount(
                SteerPane(self.view, steer_key=self.keys["steer"], id="steer"))
            await screen.mount(FindBar(self.view, id="findbar"), before=self.status)
        except MountError:  # the editor closed first
            return
        self._hidden_mounted.set()

    def _register_themes(self) -> list[tuple[str, str]]:
        """Load and register the themes and choose the settings' one, before the first paint: choosing a
        theme re-applies all of the CSS (in on_mount that cost the first paint about 0.2 s). Returns the
        (title, message) notices to show once the screen is up."""
        from morph.config import themes_dir
        from morph.editor.themes import DEFAULT_THEME, load_themes

        themes, errors = load_themes(themes_dir())
        for theme in themes.values():
            self.register_theme(theme.textual_theme)
        self.morph_themes = themes
        notices = [("Theme not loaded", error) for error in errors]
        name = self.settings.theme
        if name not in themes:  # load_themes always gives DEFAULT_THEME
            notices.append(("Theme not found", f"theme {name!r} not found; using {DEFAULT_THEME}"))
            name = DEFAULT_THEME
        self.theme_name = name
        self.theme = themes[name].textual_theme.name
        return notices

    def _apply_theme(self) -> None:
        for title, message in self._theme_notices:
            self.notify(message, title=title, severity="warning")
        self.set_morph_theme(self.theme_name or "")

    def set_morph_theme(self, name: str) -> None:
        theme = self.morph_themes[name]
        self.theme_name = name
        self.theme = theme.textual_theme.name
        self.live.set_palette(list(theme.highlights))
        self.view.set_palette(self.live.palette, theme.textual_theme.background or "#000000")
        self._apply_markdown()
        self.live.refresh_highlights()

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
            self.post_message(EngineFailed(one_line(err)))
        else:
            self.post_message(EngineReady(engine, time.perf_counter() - started))

    def on_engine_ready(self, message: EngineReady) -> None:
        engine = message.engine
        # torch and transformers leave ~500k long-lived objects; every full GC pass walked them all and
        # stalled a keystroke for ~350 ms (benchmarks: p99). Move them out of the collector's sight.
        gc.collect()
        gc.freeze()
        # Drawing allocates thousands of short-lived containers per keystroke (strips, segments); with the
        # default thresholds they set off a full pass every ~25 keystrokes (benchmarks: 43 in 1,000, the p99).
        # Collect the young generation less often, so that far fewer survivors reach the old one.
        gc.set_threshold(*GC_THRESHOLDS)
        self.status.update_state(model=f"{engine.model_name} · {engine.sae_name}", state="idle",
                                 detail=f"(model ready in {message.seconds:.1f} s)")
        self.panel.show_message("analysing…")
        self.live.engine_ready(engine)

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

    # --- key policy: input gives the analysis way; keys typed around a dialog keep their order -----------
    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, INPUT_EVENTS):
            self.live.input_priority.input_arrived()
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
            if isinstance(event, events.Key) and event.key in self._priority_keys:
                await self._focused_catches_up()
        await super().on_event(event)

    async def _focused_catches_up(self) -> None:
        """A priority binding acts here, in the app's loop, while the keys typed just before it may still wait at
        the focused widget (Shift+End then Ctrl+E in one breath steered no selection, and the words typed next
        replaced the line): it waits for them first, up to DIALOG_SETTLE_S. The keys typed after it wait here
        meanwhile, in order (morph.editor.key_order)."""
        widget = self.focused
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DIALOG_SETTLE_S
        while widget is not None and widget._message_queue.qsize() and loop.time() < deadline:
            await asyncio.sleep(0.001)

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

    def pop_screen(self) -> AwaitComplete:
        if self._flow_busy and self._held_keys is None:
            self._held_keys = []  # a flow's dialog closed: what is typed now waits for the flow to end
        return super().pop_screen()

    # --- the text changed or the cursor moved: the controllers follow ---------------------------------
    def on_app_focus(self, _event: events.AppFocus) -> None:
        """Back in the terminal: say so if the file changed on disk meanwhile (once per change)."""
        self.session.check_disk()

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        if event.text_area is not self._document:
            return
        self.session.text_changed()
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
        self.live.schedule()

    def on_analysis_ready(self, message: AnalysisReady) -> None:
        self.live.on_ready(message)

    def on_analysis_progress(self, message: AnalysisProgress) -> None:
        self.live.on_progress(message)

    def on_analysis_failed(self, message: AnalysisFailed) -> None:
        self.live.on_failed(message)

    def on_text_area_selection_changed(self, event: TextArea.SelectionChanged) -> None:
        if event.text_area is not self._document:
            return
        row, column = self.view.cursor_location
        self.status.update_state(row=row, column=column)
        if self.focus_mode:
            self._update_focus_paragraph()
        self.live.cursor_moved()

    def on_document_view_scrolled(self, _event: DocumentView.Scrolled) -> None:
        self.live.refresh_highlights()

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
            self.live.pin(None if self.pinned == message.feature else message.feature)

    def show_feature(self, feature: int) -> None:
        if not self.live.current():
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
                self.live.pin(value)
            elif action == "goto":
                self.live.select_token_at(value)

        self.push_screen(FeatureDetailScreen(report, text, 0, self.live.colour(feature)), done)

    # --- actions --------------------------------------------------------------------------------
    def action_next_occurrence(self) -> None:
        self.live.occurrence(True)

    def action_previous_occurrence(self) -> None:
        self.live.occurrence(False)

    def action_unpin(self) -> None:
        if self.pinned is not None:
            self.live.pin(None)

    def action_focus_panel(self) -> None:
        panel = self.panel
        self.side.show_panel()
        for name in ("token", "paragraph", "selection"):
            features = panel.query_one(f"#{name}-features", FeatureList)
            if features.rows:
                features.focus()
                if features.highlighted is None:
                    features.highlighted = 0
                return
        self.notify("no features to choose yet", severity="warning")

    def action_focus_editor(self) -> None:
        focus_now(self.view)

    def action_toggle_panel(self) -> None:
        self.side.toggle_panel()

    def action_analyze_now(self) -> None:
        if self.engine is None:
            self.notify("no model is loaded", severity="warning")
            return
        self.live.schedule(0)

    def action_toggle_analysis(self) -> None:
        self.live.toggle()

    # --- dialog flows: one at a time, keys typed meanwhile held -------------------------------------
    def _start_flow(self, flow: Callable[..., Awaitable[object]], *args: object) -> None:
        """Run a dialog flow (save, open, quit, ...) in a worker, one at a time."""
        if self._flow_busy:
            return
        self._flow_busy = True
        self._run_flow(flow, *args)

    @work(group="file", exit_on_error=False, name="file")
    async def _run_flow(self, flow: Callable[..., Awaitable[object]], *args: object) -> None:
        try:
            await flow(*args)
        except Exception as err:  # noqa: BLE001 - a failed flow is shown; the text stays
            self.notify(one_line(err), title="Something went wrong (your text is untouched)", severity="error",
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

    async def ask(self, screen: Screen[R]) -> R:
        """Push a dialog and wait for its answer (from a flow)."""
        return await self.push_screen(screen, wait_for_dismiss=True)

    def _modal_open(self) -> bool:
        return len(self.screen_stack) > 1

    def _emergency_recovery(self) -> None:
        document = self._document
        self.session.emergency_recovery(None if document is None else lambda: document.text)

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

    # --- actions: files, editing, steering, view ------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The registry's rules for the app's actions (morph.editor.actions.Action)."""
        entry = APP_ACTIONS.get(action)
        if entry is None:
            return True
        if self._modal_open():
            return action == "focus_editor"  # the dialog's own keys win
        if entry.needs_document_focus and self.focused is not self._document:
            return False  # undo in the find box is the find box's
        if entry.configurable and action != "steer" and self._steer_shadows(action):
            return False  # the steering pane has the focus and its own use for this key
        if entry.panel and self.side.steering_open:
            return False  # the panel is hidden behind the steering pane
        return True

    def key_name(self, action_id: str) -> str:
        """An action's key as a text names it: the key in force (remapped or not)."""
        return key_text(action_id, self.keys)

    def action_save(self) -> None:
        self._start_flow(self.session.save)

    def action_save_as(self) -> None:
        self._start_flow(partial(self.session.save, save_as=True))

    def action_open(self) -> None:
        self._start_flow(self.session.open_flow)

    def action_new(self) -> None:
        self._start_flow(self.session.new_flow)

    async def action_quit(self) -> None:
        if not self.modified:
            self.exit()
        else:
            self._start_flow(self.session.quit_flow)

    def action_recovered_text(self) -> None:
        self._start_flow(self.session.offer_recovered_text)

    def action_undo(self) -> None:
        self.session.history_moved = True
        self.view.action_undo()

    def action_redo(self) -> None:
        self.session.history_moved = True
        self.view.action_redo()

    async def action_find(self) -> None:
        await self._hidden_mounted.wait()
        self.findbar.open(replace=False)

    async def action_replace(self) -> None:
        await self._hidden_mounted.wait()
        self.findbar.open(replace=True)

    async def _find(self, forward: bool) -> None:
        await self._hidden_mounted.wait()
        bar = self.findbar
        if not bar.query_text:
            bar.open()
            return
        result = bar.find_next() if forward else bar.find_previous()
        if not bar.is_open:
            self.notify(f"{bar.query_text!r}: {result.describe()}", timeout=3)

    async def action_find_next(self) -> None:
        await self._find(True)

    async def action_find_previous(self) -> None:
        await self._find(False)

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
        rows = [(self.keys[action.id], action.description) for action in ACTIONS
                if in_help(action) and self.keys.get(action.id)]
        from morph.config import config_path

        where = self.settings.source or config_path()
        self.push_screen(HelpScreen(rows, intro=f"Change keys in the \\[keys] table of {where}"))

    async def action_steer(self) -> None:
        """Open the steering pane on the selection; with the pane open, go between it and the text
        (a new selection in the text is steered instead of the old passage)."""
        await self._hidden_mounted.wait()
        pane, view = self.steerpane, self.view
        start, end = view.selection_offsets
        if pane.is_open:
            if pane.has_focus_within:
                focus_now(view)
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
        self.side.steering_opens()
        pane.open(steerer, start, end)

    def steer_pane_found(self) -> SteerPane | None:
        """The steering pane, if it has been looked up (check_action asks before the screen is composed)."""
        return self._widgets.get(SteerPane)

    def _steer_shadows(self, action: str) -> bool:
        """Is `action`'s key one the steering pane uses, while the pane has the focus?"""
        keys = {key.strip() for key in str(self.keys.get(action) or "").split(",")}
        if not keys & self._pane_keys:
            return False
        return self.side.steering_open and self.steerpane.has_focus_within

    def action_close_steering(self) -> None:
        if self.side.steering_open:
            self.steerpane.action_close()

    def on_steer_pane_accepted(self, message: SteerPane.Accepted) -> None:
        pane, view = message.pane, self.view
        span = pane.passage_now()  # where the passage is now, after the edits made meanwhile
        if span is None:
            pane.refuse_accept()
            return
        start, end = span
        pane.close()
        result = view.replace_span(start, end, message.replacement)
        view.selection = (view.location_of(start), result.end_location)
        view.focus()

    def on_steer_pane_closed(self, message: SteerPane.Closed) -> None:
        self.side.steering_closed()
        if self.focused is None:
            self.view.focus()

    def action_toggle_preview(self) -> None:
        opening = not self.side.preview_open
        self.side.set_preview(opening)
        if opening:
            self._render_preview()
        elif self._preview_timer is not None:
            self._preview_timer.stop()

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

    def _persist(self, name: str, value: str | int | float | bool) -> None:
        try:
            from morph.config import set_setting

            set_setting(name, value)
        except Exception as err:  # noqa: BLE001 - the choice still applies to this session
            self.notify(f"{name} not saved to the config: {one_line(err)}", severity="warning")

    def get_system_commands(self, screen: Screen):
        for command in super().get_system_commands(screen):
            # Textual's theme picker and quit are replaced by ours (palettes that persist; quit that asks)
            if command.title not in ("Theme", "Quit"):
                yield command
        for action in ACTIONS:
            if action.title:
                key = self.keys.get(action.id)
                help_text = action.description + (f" ({format_key(key)})" if key else "")
                yield SystemCommand(action.title, help_text, getattr(self, f"action_{action.id}"))
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
