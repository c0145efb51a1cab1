"""Live analysis: the text being written, analysed in the pauses, drawn as highlights and listed in the panel.

The path of a keystroke (editor -> features -> editor, once): the writing surface publishes the edit and the app
calls `schedule`; after a pause (`settings.debounce_ms`) `start` takes the text (a window around the cursor in a
large document) and a thread worker (group "analysis", exclusive: a newer edit cancels it at once) runs the
engine's stream of analysis events. Each result goes back to the UI thread as an `AnalysisReady` message with the
highlight plan for the view it started in, and the edit count it was made for: `on_ready` draws it only if the text
has not moved on since (never a stale result), and after a partial result (the cursor's block) the worker waits
until it is drawn. `refresh_highlights` colours the plan (or makes one for the view now) and hands it to the
writing surface; `refresh_panel` lists the features of the token, paragraph and selection at the cursor.

Also here: the pinned feature (a heat map of one feature) and its occurrences, the palette's colour slots, and
`prepare` (when the cursor settles in another paragraph, the engine keeps that block's keys and values, so the
next pause there costs what was typed, not the block). The app owns the model loading and hands the engine over
(`engine_ready`); this controller holds no Textual widget of its own and reaches the screen through the app.
"""

from __future__ import annotations

import time
from contextlib import closing
from functools import partial
from typing import TYPE_CHECKING

from textual.timer import Timer
from textual.worker import get_current_worker

from morph.editor.colours import ColorBook
from morph.editor.messages import AnalysisFailed, AnalysisProgress, AnalysisReady
from morph.editor.panel import PANEL_ROWS, PanelRow
from morph.editor.preview import window_around
from morph.editor.timing import TimingHook, mark, timed_work
from morph.errors import one_line
from morph.features.highlights import HighlightPlan, Overlay, plan_highlights
from morph.features.priority import InputPriority

if TYPE_CHECKING:
    import numpy as np

    from morph.editor.app import MorphApp
    from morph.features.analysis import Analysis
    from morph.features.engine import EngineLike

FALLBACK_PALETTE = ["#ee6969", "#f0b274", "#a89413", "#85d317", "#13ab2c", "#18d7a7",
                    "#15a1bd", "#9bc0f4", "#8f87f2", "#d8aef6", "#ec53df", "#f5a7ce"]
PARTIAL_DRAW_WAIT_S = 0.1  # how long the analysis waits for the cursor's block to be drawn before going on
SERVER_RETRY_S = 2.0  # a remote engine's server that is down is asked again after this long


class LiveAnalysis:
    """The engine, the latest analysis, the pin and the colours, the debounce and the worker, the highlights and
    the panel (see the module's docstring)."""

    def __init__(self, app: MorphApp) -> None:
        self.app = app
        self.engine: EngineLike | None = None
        """The analysis engine, local (morph.features.engine.Engine) or a server's (morph.server), once loaded;
        None: no analysis."""
        self.analysis: Analysis | None = None
        """The latest analysis drawn (morph.features.analysis.Analysis)."""
        self.base = 0
        """Where the analysed text starts in the document (a large document is analysed in a window)."""
        self.enabled = True
        self.pinned: int | None = None
        self.palette = list(FALLBACK_PALETTE)
        self.colour_book = ColorBook(len(self.palette))
        self.input_priority = InputPriority()  # the analysis pauses while input is being handled
        self.last_latency_ms: float | None = None
        self._scales: np.ndarray | None = None
        self._debounce: Timer | None = None
        self._prepare_timer: Timer | None = None
        self._prepared: tuple[int, int] | None = None  # (generation, paragraph) whose window was last prepared
        self._analysed_focus = 0  # the cursor offset (in the analysed text) the latest analysis started at
        self._pause_started = 0.0
        self._server_trouble = ""  # a remote engine's server: "down" or "refused" until an analysis comes back
        self._server_retry: Timer | None = None

    @property
    def timings(self) -> TimingHook | None:
        return self.app.timings

    @property
    def generation(self) -> int:
        return self.app.generation

    # --- the engine and the colours ---------------------------------------------------------------
    def engine_ready(self, engine: EngineLike) -> None:
        self.engine = engine
        engine.when_labels_change(self._labels_arrived)
        self.schedule(0)

    def _labels_arrived(self) -> None:
        """From the fetching thread: redraw in the app's."""
        try:
            self.app.call_from_thread(self.labels_changed)
        except RuntimeError:  # the app has closed
            pass

    def labels_changed(self) -> None:
        """New labels arrived (Neuronpedia's, fetched in the background): the legend and the panel say them."""
        if self.analysis is not None and self.current():
            self.refresh_highlights()
            self.refresh_panel()

    def set_palette(self, colours: list[str]) -> None:
        self.palette = list(colours) or list(FALLBACK_PALETTE)
        self.colour_book = ColorBook(len(self.palette))

    def colour(self, feature: int) -> str | None:
        slot = self.colour_book.slot(feature)
        return None if slot is None else self.palette[slot % len(self.palette)]

    # --- scheduling and the worker ----------------------------------------------------------------
    def schedule(self, delay_ms: int | None = None) -> None:
        """Analyse after a pause of `delay_ms` (None: the setting's debounce)."""
        app = self.app
        if self._debounce is not None:
            self._debounce.stop()
        # A newer edit cancels the older run now, not when the next one starts: its result could only be
        # dropped as stale, and while the writer types it would take the interpreter from the keystrokes.
        app.workers.cancel_group(app, "analysis")
        if self.engine is None or not self.enabled:
            return
        delay = app.settings.debounce_ms if delay_ms is None else delay_ms
        app.status.update_state(state="waiting", detail="")
        self._debounce = app.set_timer(max(delay, 1) / 1000, self.start)

    def start(self) -> None:
        """The pause is over: analyse the text (or the window around the cursor) in the worker."""
        mark(self, "debounce_fired", generation=self.generation)
        if self.engine is None or not self.enabled:
            return
        app, view = self.app, self.app.view
        focus = view.cursor_offset
        chars = view.document.counts()[1]
        limit = app.settings.analysis_max_chars
        note = ""
        if chars > limit:  # the window from the text around the cursor (joining a 50 MB text took ~50 ms)
            around = max(0, focus - limit)
            region = view.text_between(around, focus + limit)
            base, end = window_around(region, focus - around, limit)
            text, base, end = region[base:end], base + around, end + around
            note = f"large document: analysing {end - base:,} of {chars:,} chars around the cursor"
        else:
            text, base = view.text, 0
        self._pause_started = time.perf_counter()
        self._analysed_focus = focus - base
        app.status.update_state(state="analysing", detail="", note=note)
        visible = (view.visible_offsets(), self.pinned, len(self.palette))
        app.run_worker(partial(self._analyse, text, self.generation, focus - base, base, visible), thread=True,
                       group="analysis", exclusive=True, exit_on_error=False, name="analysis",
                       description="analysis")

    def _analyse(self, text: str, generation: int, focus: int, base: int, visible: tuple) -> None:
        """(In the worker.) A short loop over the engine's events. A result goes out with its highlight plan for
        the view the analysis started in (`visible`: its range, the pin, the number of colours; made here, so the
        UI thread only colours it and swaps it in); after a partial result the next event is not asked for until
        the UI has drawn it, so the edited paragraph is drawn before the rest of the document competes with it
        for the interpreter."""
        from morph.errors import ServerRefused, ServerUnavailable
        from morph.features.analysis import AnalysisCancelled, BlockProgress, FinalResult

        app = self.app
        worker = get_current_worker()
        engine = self.engine
        checkpoint = self.input_priority.checkpoint
        (view_range, pinned, n_colours) = visible
        delivered = False
        try:
            mark(self, "analysis_started", generation=generation)
            stream = engine.stream(text, generation, focus, should_stop=lambda: worker.is_cancelled,
                                   checkpoint=checkpoint)
            with closing(stream):
                for event in stream:
                    if isinstance(event, BlockProgress):
                        app.post_message(AnalysisProgress(generation, event.done, event.total))
                        continue
                    if not delivered:
                        delivered = True
                        mark(self, "analysis_delivered", generation=generation)
                    if isinstance(event, FinalResult):
                        stats = event.analysis.stats
                        mark(self, "analysis_finished", generation=generation, tokens=stats.total_tokens,
                             computed_tokens=stats.computed_tokens)
                    scales = engine.feature_scales(event.analysis)
                    checkpoint()
                    plan = plan_highlights(event.analysis, text, base, view_range, pinned, n_colours, scales)
                    if worker.is_cancelled:
                        return
                    message = AnalysisReady(event.analysis, not isinstance(event, FinalResult), base, scales, plan)
                    app.post_message(message)
                    if message.partial:
                        message.drawn.wait(PARTIAL_DRAW_WAIT_S)
        except AnalysisCancelled:
            return
        except ServerUnavailable as err:
            app.post_message(AnalysisFailed(generation, str(err), server="down"))
        except ServerRefused as err:
            app.post_message(AnalysisFailed(generation, str(err), server="refused"))
        except MemoryError:
            app.post_message(AnalysisFailed(generation, "out of memory during analysis"))
        except Exception as err:  # noqa: BLE001 - shown in the UI, the text is untouched
            app.post_message(AnalysisFailed(generation, one_line(err)))

    # --- results ---------------------------------------------------------------------------------
    def on_ready(self, message: AnalysisReady) -> None:
        app = self.app
        if message.analysis.generation != self.generation:
            message.drawn.set()
            return  # made for text that has changed since: never drawn
        hold = self.input_priority.remaining()
        if hold > 0:
            # A keystroke is being handled: its frame goes out first, the result right after it (drawing a
            # result takes ~10 ms of the UI thread, which the keystroke would otherwise wait for).
            app.set_timer(hold, partial(self.on_ready, message))
            return
        app.call_after_refresh(message.drawn.set)
        self.analysis = message.analysis
        self.base = message.offset_base
        self._scales = message.scales if message.scales is not None else self.engine.feature_scales(self.analysis)
        self.refresh_highlights(message.plan)
        self.refresh_panel()
        if self._server_trouble:
            self._server_trouble = ""
            app.notify("the server is back: analysis resumed", title="Server back", timeout=4)
        if not message.partial:
            self.last_latency_ms = (time.perf_counter() - self._pause_started) * 1000
            app.status.update_state(state="idle", detail=f"({message.analysis.n_tokens} tokens)",
                                    latency_ms=self.last_latency_ms)
        else:
            app.status.update_state(state="analysing", detail="(cursor region done)")

    def on_progress(self, message: AnalysisProgress) -> None:
        if message.generation == self.generation and message.done < message.total:
            self.app.status.update_state(state="analysing", detail=f"({message.done}/{message.total} blocks)")

    def on_failed(self, message: AnalysisFailed) -> None:
        app = self.app
        if message.server:  # a remote engine: say so once, and try again until the server is back
            if self._server_trouble != message.server:
                self._server_trouble = message.server
                app.notify(message.error, title="Server down" if message.server == "down" else "Server refused",
                           severity="warning", timeout=8)
            app.status.update_state(state="server down" if message.server == "down" else "key refused",
                                    detail="(retrying)" if message.server == "down" else "")
            if message.generation == self.generation and message.server == "down":
                if self._server_retry is not None:
                    self._server_retry.stop()
                self._server_retry = app.set_timer(SERVER_RETRY_S, lambda: self.schedule(0))
            return
        if message.generation != self.generation:
            return
        self.app.status.update_state(state="error", detail="")
        self.app.notify(message.error, title="Analysis failed", severity="error", timeout=10)

    def current(self) -> bool:
        """Is the latest analysis for the text as it is now? (The edit count moves with the text: an edit whose
        Changed message is still on its way counts already.)"""
        return self.analysis is not None and self.analysis.generation == self.generation

    def toggle(self) -> None:
        """Pause or resume live analysis (paused: no highlights)."""
        self.enabled = not self.enabled
        if self.enabled:
            self.schedule(0)
        else:
            self.app.view.set_overlay(Overlay.empty())
            self.app.status.update_state(state="off",
                                         detail=f"(live analysis paused: {self.app.key_name('toggle_analysis')})")

    # --- highlights and panel ----------------------------------------------------------------------
    @timed_work
    def refresh_highlights(self, plan: HighlightPlan | None = None) -> None:
        """Highlight the view; `plan` (made in the worker) is used when it was made for this very view."""
        if not self.current() or not self.enabled:
            return
        view = self.app.view
        visible = view.visible_offsets()
        if plan is None or plan.key != (*visible, self.pinned, len(self.palette)):
            analysis, base = self.analysis, self.base
            text = view.text_between(base, base + analysis.text_length)
            plan = plan_highlights(analysis, text, base, visible, self.pinned, len(self.palette), self._scales)
        if self.pinned is not None:
            slots = self.colour_book.assign([self.pinned] + [f for f in self.colour_book._slots if f != self.pinned])
        else:
            slots = self.colour_book.assign(plan.features)
        view.set_overlay(plan.overlay.with_slots(slots))
        mark(self, "highlights_set", generation=self.generation, partial=not self.analysis.stats.complete)
        self._show_legend(plan)

    def _show_legend(self, plan: HighlightPlan) -> None:
        rows = [PanelRow(f, self.engine.label(f), score, self.colour(f)) for f, score in zip(plan.features, plan.scores)]
        title = "Pinned feature" if self.pinned is not None else "Highlighted (distinctive in view)"
        self.app.panel.show_legend(title, rows)

    def _rows(self, pairs: list[tuple[int, float]]) -> list[PanelRow]:
        return [PanelRow(f, self.engine.label(f), act, self.colour(f)) for f, act in pairs]

    @timed_work
    def refresh_panel(self) -> None:
        """The features of the token, the paragraph and the selection at the cursor, and the pin."""
        if not self.current():
            return
        app = self.app
        analysis, base, panel, view = self.analysis, self.base, app.panel, app.view
        cursor = view.cursor_offset - base
        row, column = view.cursor_location
        line = view.document[row]
        # At the end of a word the writer means the word just typed, not the space or line break after it.
        at_word_end = column > 0 and (column >= len(line) or line[column].isspace()) and not line[column - 1].isspace()
        token = analysis.token_at(cursor - 1 if at_word_end else cursor)
        if token is not None and 0 <= cursor <= analysis.text_length:
            start, end = analysis.offsets[token]
            token_text = view.text_between(base + int(start), base + int(end))
            panel.show_token(token_text, self._rows(analysis.token_features(token, PANEL_ROWS, distinctive=True)))
        else:
            panel.show_token(None, [])
        index = analysis.paragraph_index(cursor)
        if index is None:
            panel.show_paragraph("Paragraph", [])
        else:
            summary = analysis.summary(index, PANEL_ROWS)
            variance = "—" if summary.explained_variance is None else f"{summary.explained_variance:.2f}"
            panel.show_paragraph(f"¶{index + 1} · {summary.n_tokens} tokens · variance explained {variance}",
                                 self._rows([(f.id, f.score) for f in summary.features[:PANEL_ROWS]]))
        sel_start, sel_end = view.selection_offsets
        if sel_end > sel_start:
            a, b = analysis.tokens_in(sel_start - base, sel_end - base)
            stats = analysis.span_features(a, b, PANEL_ROWS)
            panel.show_selection(f"Selection · {b - a} tokens",
                                 self._rows([(f.id, f.score) for f in stats[:PANEL_ROWS]]))
        else:
            panel.show_selection("Selection", [])
        if self.pinned is not None:
            key = app.key_name
            panel.show_pinned(f"Pinned #{self.pinned}: {self.engine.label(self.pinned)}\n"
                              f"{key('next_occurrence')}/{key('previous_occurrence')} next/previous · "
                              f"{key('unpin')} unpin")
        else:
            panel.show_pinned("")

    def cursor_moved(self) -> None:
        """The cursor or selection moved: the panel follows; out of the analysed window, analyse there."""
        if self.analysis is not None and self.engine is not None and self.enabled:
            cursor = self.app.view.cursor_offset
            if not self.base <= cursor <= self.base + self.analysis.text_length:
                self.schedule()
            else:
                self._schedule_prepare()
        self.refresh_panel()

    # --- preparing the cursor's block ----------------------------------------------------------------
    def _schedule_prepare(self) -> None:
        """When the cursor settles in another paragraph, the engine keeps that block's key/values (a
        background pass), so that the first pause after typing there costs what was typed, not the block."""
        if self._prepare_timer is not None:
            self._prepare_timer.stop()
        self._prepare_timer = self.app.set_timer(max(self.app.settings.debounce_ms, 1) / 1000, self._prepare)

    def _prepare(self) -> None:
        self._prepare_timer = None
        app = self.app
        if not self.current() or self.engine is None or not self.enabled:
            return
        if any(w.group == "analysis" and not w.is_finished for w in app.workers):
            return  # the analysis computes the cursor's block itself
        base, analysis = self.base, self.analysis
        cursor = app.view.cursor_offset - base
        where = (self.generation, analysis.paragraph_index(cursor))
        if where[1] is None or where == self._prepared or where[1] == analysis.paragraph_index(self._analysed_focus):
            return  # prepared already, or the analysis itself began there (typing)
        self._prepared = where
        text = app.view.text[base:base + analysis.text_length]
        app.run_worker(partial(self._prepare_block, text, cursor), thread=True, group="prepare", exclusive=True,
                       exit_on_error=False, name="prepare")

    def _prepare_block(self, text: str, focus: int) -> None:
        worker = get_current_worker()
        try:
            self.engine.prepare(text, focus, should_stop=lambda: worker.is_cancelled,
                                checkpoint=self.input_priority.checkpoint)
        except Exception:  # noqa: BLE001 - only a speed-up: the next analysis computes the block itself
            pass

    # --- the pinned feature ------------------------------------------------------------------------
    def pin(self, feature: int | None) -> None:
        self.pinned = feature
        self.refresh_highlights()
        self.refresh_panel()
        if feature is not None:
            self.app.notify(f"#{feature} {self.engine.label(feature)}", title="Pinned: heat map of one feature")

    def select_token_at(self, offset: int) -> None:
        """Select the token at `offset` (in the analysed text) and go there."""
        analysis, base, view = self.analysis, self.base, self.app.view
        token = analysis.token_at(offset)
        if token is None:
            return
        start, end = (int(v) + base for v in analysis.offsets[token])
        view.selection = (view.location_of(start), view.location_of(end))
        view.scroll_cursor_visible(center=True)
        view.focus()

    def occurrence(self, forward: bool) -> None:
        """Go to the next (previous) token where the pinned feature fires, round the document."""
        app = self.app
        if self.pinned is None:
            app.notify(f"pin a feature first (choose it in the panel: {app.key_name('focus_panel')}, then "
                       f"{app.key_name('panel.pin')})", severity="warning")
            return
        if not self.current():
            return
        import numpy as np

        values = self.analysis.feature_values(self.pinned)
        hits = np.nonzero(values > 0)[0]
        if len(hits) == 0:
            app.notify("the pinned feature does not fire in this document", severity="warning")
            return
        starts = self.analysis.offsets[hits, 0]
        view = app.view
        cursor = view.offset_of(min(view.selection.start, view.selection.end)) - self.base
        if forward:
            later = np.nonzero(starts > cursor)[0]
            index = hits[later[0]] if len(later) else hits[0]
        else:
            earlier = np.nonzero(starts < cursor)[0]
            index = hits[earlier[-1]] if len(earlier) else hits[-1]
        self.select_token_at(int(self.analysis.offsets[index, 0]))
