"""The Morph editor: a writing surface, a features panel and a status bar over the engine.

Nothing slow runs on the UI thread: the model loads in a thread worker (group "model"), each analysis
runs in a thread worker (group "analysis", exclusive, so a newer request cancels the older one), and
results come back as typed messages carrying the document generation they were made for.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import TextArea
from textual.worker import get_current_worker

from morph.editor.document import DocumentView
from morph.editor.messages import AnalysisFailed, AnalysisReady, EngineFailed, EngineReady, FeatureChosen
from morph.editor.overlay import ColorBook, Overlay, build_overlay
from morph.editor.panel import FeatureList, FeaturePanel, PanelRow
from morph.editor.status import StatusBar

FALLBACK_PALETTE = ["#ee6969", "#f0b274", "#a89413", "#85d317", "#13ab2c", "#18d7a7",
                    "#15a1bd", "#9bc0f4", "#8f87f2", "#d8aef6", "#ec53df", "#f5a7ce"]
PANEL_ROWS = 8


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


class MorphApp(App):
    TITLE = "Morph"
    CSS = """
    Screen { layout: vertical; }
    #main { height: 1fr; }
    DocumentView { width: 1fr; height: 1fr; }
    """
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("ctrl+s", "save", "Save"),
        Binding("f9", "focus_panel", "Features"),
        Binding("escape", "focus_editor", "Editor", show=False),
        Binding("shift+f9", "unpin", "Unpin"),
        Binding("f8", "next_occurrence", "Next occurrence"),
        Binding("shift+f8", "previous_occurrence", "Previous occurrence"),
        Binding("f5", "analyze_now", "Analyse now"),
        Binding("f7", "toggle_analysis", "Live analysis on/off"),
        Binding("f2", "toggle_panel", "Panel"),
    ]

    def __init__(self, path: str | None = None, text: str = "", settings: Any = None,
                 engine_factory: Callable[[], Any] | None = None, model_note: str = "") -> None:
        super().__init__()
        from morph.config import Settings

        self.settings = settings or Settings()
        self.path = Path(path) if path else None
        self.initial_text = text
        self.engine_factory = engine_factory  # None: run without a model
        self.engine: Any = None
        self.model_note = model_note
        self.generation = 0
        self.analysis: Any = None
        self.analysis_base = 0
        self.analysis_enabled = True
        self.pinned: int | None = None
        self.palette = list(FALLBACK_PALETTE)
        self.colour_book = ColorBook(len(self.palette))
        self._scales: Any = None
        self._debounce: Any = None
        self._pause_started = 0.0
        self.last_latency_ms: float | None = None
        self.modified = False

    # --- layout ---------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            yield DocumentView(self.initial_text, id="document")
            yield FeaturePanel(id="panel")
        yield StatusBar(id="status")

    @property
    def view(self) -> DocumentView:
        return self.query_one(DocumentView)

    @property
    def panel(self) -> FeaturePanel:
        return self.query_one(FeaturePanel)

    @property
    def status(self) -> StatusBar:
        return self.query_one(StatusBar)

    def on_mount(self) -> None:
        self._apply_theme()
        self.view.soft_wrap = self.settings.soft_wrap
        self.view.show_line_numbers = self.settings.line_numbers
        self.view.focus()
        self.status.update_state(file=self.path.name if self.path else "untitled")
        self._update_counts()
        if self.engine_factory is None:
            self.status.update_state(state="no model", model=self.model_note or "no model (--no-model)")
            self.panel.show_message("no model loaded: " + (self.model_note or "started with --no-model"))
        else:
            self.status.update_state(state="loading model", model="loading…")
            self.panel.show_message("the model is loading…")
            self.load_engine()

    def _apply_theme(self) -> None:
        try:
            from morph.config import themes_dir
            from morph.editor.themes import load_themes
        except ImportError:
            return
        themes, errors = load_themes(themes_dir())
        for theme in themes.values():
            self.register_theme(theme.textual_theme)
        self.morph_themes = themes
        for error in errors:
            self.notify(error, title="Theme not loaded", severity="warning")
        name = self.settings.theme if self.settings.theme in themes else next(iter(themes), None)
        if name:
            self.set_morph_theme(name)

    def set_morph_theme(self, name: str) -> None:
        theme = self.morph_themes[name]
        self.theme = theme.textual_theme.name
        self.palette = list(theme.highlights) or list(FALLBACK_PALETTE)
        self.colour_book = ColorBook(len(self.palette))
        self.view.set_palette(self.palette, theme.textual_theme.background or "#000000")
        if self.settings.markdown:
            from morph.editor.markdown import markdown_spans

            self.view.set_markdown(markdown_spans, theme.markdown)
        self._refresh_highlights()

    # --- the model --------------------------------------------------------------------------------
    @work(thread=True, group="model", exit_on_error=False, name="load model")
    def load_engine(self) -> None:
        started = time.perf_counter()
        try:
            engine = self.engine_factory()
        except MemoryError:
            self.post_message(EngineFailed("not enough memory to load the model"))
        except Exception as err:  # noqa: BLE001 - any failure is shown, the editor keeps working
            from morph.errors import MorphError

            self.post_message(EngineFailed(str(err) if isinstance(err, MorphError) else _one_line(err)))
        else:
            self.post_message(EngineReady(engine, time.perf_counter() - started))

    def on_engine_ready(self, message: EngineReady) -> None:
        self.engine = message.engine
        self.status.update_state(model=f"{self.engine.model_name} · {self.engine.sae_name}", state="idle",
                                 detail=f"(model ready in {message.seconds:.1f} s)")
        self.panel.show_message("analysing…")
        self.schedule_analysis(0)

    def on_engine_failed(self, message: EngineFailed) -> None:
        self.status.update_state(state="no model", model="model failed to load")
        self.panel.show_message("no analysis: the model failed to load")
        self.notify(message.error, title="Model not loaded", severity="error", timeout=15)

    # --- analysis -------------------------------------------------------------------------------
    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        self.generation += 1
        self.modified = True
        self.status.update_state(modified=True)
        self._update_counts()
        self.schedule_analysis()

    def schedule_analysis(self, delay_ms: int | None = None) -> None:
        if self._debounce is not None:
            self._debounce.stop()
        if self.engine is None or not self.analysis_enabled:
            return
        delay = self.settings.debounce_ms if delay_ms is None else delay_ms
        self.status.update_state(state="waiting", detail="")
        self._debounce = self.set_timer(max(delay, 1) / 1000, self.start_analysis)

    def start_analysis(self) -> None:
        if self.engine is None or not self.analysis_enabled:
            return
        text = self.view.text
        focus = self.view.cursor_offset
        base, end = 0, len(text)
        limit = self.settings.analysis_max_chars
        note = ""
        if len(text) > limit:
            base, end = _window_around(text, focus, limit)
            note = f"large document: analysing {end - base:,} of {len(text):,} chars around the cursor"
        self._pause_started = time.perf_counter()
        self.status.update_state(state="analysing", detail="", note=note)
        self._analyse(text[base:end], self.generation, focus - base, base)

    @work(thread=True, group="analysis", exclusive=True, exit_on_error=False, name="analysis")
    def _analyse(self, text: str, generation: int, focus: int, base: int) -> None:
        from morph.features.analysis import AnalysisCancelled

        worker = get_current_worker()
        try:
            analysis = self.engine.analyze(
                text, generation, focus, should_stop=lambda: worker.is_cancelled,
                on_partial=lambda partial_result: self.post_message(AnalysisReady(partial_result, True, base)),
            )
        except AnalysisCancelled:
            return
        except MemoryError:
            self.post_message(AnalysisFailed(generation, "out of memory during analysis"))
        except Exception as err:  # noqa: BLE001 - shown in the UI, the text is untouched
            self.post_message(AnalysisFailed(generation, _one_line(err)))
        else:
            if not worker.is_cancelled:
                self.post_message(AnalysisReady(analysis, False, base))

    def on_analysis_ready(self, message: AnalysisReady) -> None:
        if message.analysis.generation != self.generation:
            return  # made for text that has changed since: never drawn
        self.analysis = message.analysis
        self.analysis_base = message.offset_base
        self._scales = self.engine.feature_scales(self.analysis)
        self._refresh_highlights()
        self._refresh_panel()
        if not message.partial:
            self.last_latency_ms = (time.perf_counter() - self._pause_started) * 1000
            self.status.update_state(state="idle", detail=f"({message.analysis.n_tokens} tokens)",
                                     latency_ms=self.last_latency_ms)
        else:
            self.status.update_state(state="analysing", detail="(cursor region done)")

    def on_analysis_failed(self, message: AnalysisFailed) -> None:
        if message.generation != self.generation:
            return
        self.status.update_state(state="error", detail="")
        self.notify(message.error, title="Analysis failed", severity="error", timeout=10)

    # --- highlights and panel ----------------------------------------------------------------------
    def _analysis_current(self) -> bool:
        return self.analysis is not None and self.analysis.generation == self.generation

    def _refresh_highlights(self) -> None:
        if not self._analysis_current():
            return
        analysis, base, scales = self.analysis, self.analysis_base, self._scales
        text = self.view.text[base:base + analysis.text_length]
        if self.pinned is not None:
            features = [self.pinned]
            slots = self.colour_book.assign([self.pinned] + [f for f in self.colour_book._slots if f != self.pinned])
        else:
            start, end = self.view.visible_offsets()
            a, b = analysis.tokens_in(max(0, start - base), max(0, end - base))
            features = analysis.strongest_features(a, b, len(self.palette), weights=lambda ids: 1.0 / scales[ids])
            slots = self.colour_book.assign(features)
        self.view.set_overlay(build_overlay(analysis, text, features, slots, scales, base))

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
        token = analysis.token_at(cursor)
        if token is not None and 0 <= cursor <= analysis.text_length:
            start, end = analysis.offsets[token]
            token_text = view.text[base + int(start):base + int(end)]
            self.panel.show_token(token_text, self._rows(analysis.token_features(token, PANEL_ROWS)))
        else:
            self.panel.show_token(None, [])
        index = analysis.paragraph_index(cursor)
        if index is None:
            self.panel.show_paragraph("Paragraph", [])
        else:
            summary = analysis.summary(index, PANEL_ROWS)
            variance = "—" if summary.explained_variance is None else f"{summary.explained_variance:.2f}"
            self.panel.show_paragraph(f"Paragraph ¶{index + 1} · {summary.n_tokens} tokens · variance explained {variance}",
                                      self._rows([(f.id, f.max) for f in summary.features[:PANEL_ROWS]]))
        sel_start, sel_end = view.selection_offsets
        if sel_end > sel_start:
            a, b = analysis.tokens_in(sel_start - base, sel_end - base)
            stats = analysis.span_features(a, b, PANEL_ROWS)
            self.panel.show_selection(f"Selection · {b - a} tokens (max)",
                                      self._rows([(f.id, f.max) for f in stats[:PANEL_ROWS]]))
        else:
            self.panel.show_selection("Selection", [])
        if self.pinned is not None:
            self.panel.show_pinned(f"Pinned #{self.pinned}: {self.engine.label(self.pinned)}\n"
                                   "F8/Shift+F8 next/previous · Shift+F9 unpin")
        else:
            self.panel.show_pinned("")

    def on_text_area_selection_changed(self, event: TextArea.SelectionChanged) -> None:
        row, column = self.view.cursor_location
        self.status.update_state(row=row, column=column)
        self._refresh_panel()

    def on_document_view_scrolled(self, _event: Any) -> None:
        self._refresh_highlights()

    def _update_counts(self) -> None:
        text = self.view.text
        self.status.update_state(words=len(text.split()), chars=len(text))

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
        text = self.view.text[self.analysis_base:self.analysis_base + self.analysis.text_length]

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

    def action_save(self) -> None:
        from morph.errors import MorphError
        from morph.textio import write_document

        if self.path is None:
            self.notify("no file name yet: start Morph with a file name", severity="warning")
            return
        try:
            write_document(self.path, self.view.text, getattr(self, "loaded", None))
        except MorphError as err:
            self.notify(str(err), title="Not saved", severity="error", timeout=15)
            return
        self.modified = False
        self.status.update_state(modified=False)
        self.notify(f"saved {self.path.name}")

    def get_system_commands(self, screen: Screen):
        yield from super().get_system_commands(screen)
        yield SystemCommand("Features: focus the panel", "Choose a feature to pin or inspect (F9)", self.action_focus_panel)
        yield SystemCommand("Features: unpin", "Back to the overview of all features (Shift+F9)", self.action_unpin)
        yield SystemCommand("Features: next occurrence", "Of the pinned feature (F8)", self.action_next_occurrence)
        yield SystemCommand("Features: previous occurrence", "Of the pinned feature (Shift+F8)",
                            self.action_previous_occurrence)
        yield SystemCommand("Analysis: run now", "Analyse the document now (F5)", self.action_analyze_now)
        yield SystemCommand("Analysis: pause/resume live analysis", "(F7)", self.action_toggle_analysis)
        yield SystemCommand("Panel: show/hide", "(F2)", self.action_toggle_panel)
        yield SystemCommand("File: save", "(Ctrl+S)", self.action_save)
        for name in sorted(getattr(self, "morph_themes", {})):
            yield SystemCommand(f"Theme: {name}", "Switch theme (kept for next time)", partial(self.switch_theme, name))

    def switch_theme(self, name: str) -> None:
        self.set_morph_theme(name)
        try:
            from morph.config import set_setting

            set_setting("theme", name)
        except Exception as err:  # noqa: BLE001 - the choice still applies to this session
            self.notify(f"theme not saved to the config: {_one_line(err)}", severity="warning")


def _window_around(text: str, focus: int, limit: int) -> tuple[int, int]:
    """A window of about `limit` characters around `focus`, cut at paragraph breaks where possible."""
    start = max(0, focus - limit // 2)
    end = min(len(text), start + limit)
    start = max(0, end - limit)
    if start > 0:
        cut = text.find("\n\n", start, start + limit // 4)
        start = cut + 2 if cut >= 0 else start
    if end < len(text):
        cut = text.rfind("\n\n", end - limit // 4, end)
        end = cut + 1 if cut >= 0 else end
    return start, end
