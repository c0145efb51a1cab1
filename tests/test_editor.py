"""The editor, driven with Textual's Pilot on a tiny random model: analysis, highlights, panel, pinning."""

from __future__ import annotations


import pytest

from morph.config import Settings
from morph.editor.app import MorphApp
from morph.editor.document import DocumentView
from morph.editor.panel import FeatureList
from morph.features.engine import Engine
from tests.pilot import wait_for

TEXT = (
    "The river ran past the old mill, and the miller's daughter watched the water.\n\n"
    "In the evening the lamps were lit along the harbour. Sailors sang.\n\n"
    "Mr. Holmes lit his pipe. Watson opened the window; fog drifted in.\n"
)


def analysed(app: MorphApp) -> bool:
    return (app.analysis is not None and app.analysis.generation == app.generation
            and app.analysis.stats.complete and app.status.state.state == "idle")


def hold_tokenize(analyzer):
    """Make the analyzer's tokenizing wait: (entered, release) events, set when a run reaches it and to let
    it go on."""
    import threading

    entered, release = threading.Event(), threading.Event()
    tokenize = analyzer.tokenize

    def slow_tokenize(text):
        entered.set()
        release.wait(10)
        return tokenize(text)

    analyzer.tokenize = slow_tokenize
    return entered, release


@pytest.fixture
def make_app(tiny_lens, tmp_path, monkeypatch):
    monkeypatch.setenv("MORPH_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("MORPH_STATE_DIR", str(tmp_path / "state"))

    def make(text: str = TEXT, **settings) -> MorphApp:
        return MorphApp(None, text, Settings(**{"debounce_ms": 30, **settings}), lambda _progress: Engine(tiny_lens))

    return make


async def test_analysis_highlights_the_document_and_fills_the_panel(make_app):
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: analysed(app))
        view = app.query_one(DocumentView)
        assert len(view.overlay) > 0
        # highlighted spans lie on real words of the text
        for start, end, _, _ in view.overlay.between(0, len(TEXT)):
            assert TEXT[start:end].strip()
        # the rendered line carries the highlight colours
        styled = view.get_line(0)
        assert any(span.style and getattr(span.style, "bgcolor", None) for span in styled.spans)
        token_list = app.query_one("#token-features", FeatureList)
        paragraph_list = app.query_one("#paragraph-features", FeatureList)
        assert paragraph_list.rows and token_list.rows
        assert all(row.label for row in paragraph_list.rows)
        assert "idle" in str(app.status.render_state()) and "ms" in str(app.status.render_state())


async def test_typing_reanalyses_and_never_draws_stale_results(make_app):
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: analysed(app))
        first = app.analysis
        view = app.query_one(DocumentView)
        view.move_cursor((0, 9))
        await pilot.press(*" quickly")
        assert view.text.startswith("The river quickly ran")
        await wait_for(pilot, lambda: analysed(app) and app.analysis is not first)
        assert app.analysis.text_length == len(view.text)
        # a result made for an older generation is dropped
        from morph.editor.messages import AnalysisReady

        current = app.analysis
        app.post_message(AnalysisReady(first, partial=False))
        await pilot.pause(0.05)
        assert app.analysis is current


async def test_cursor_token_and_selection_sections(make_app):
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: analysed(app))
        view = app.query_one(DocumentView)
        view.move_cursor((2, 9))
        await pilot.pause(0.05)
        title = str(app.query_one("#token-title").render())
        token = title.split("'")[1]
        assert token.strip() and token.strip() in "evening"
        view.selection = ((0, 0), (0, 20))
        await pilot.pause(0.05)
        assert app.query_one("#selection-features", FeatureList).rows
        assert "Selection ·" in str(app.query_one("#selection-title").render())


async def test_pin_makes_a_heat_map_and_navigates_occurrences(make_app):
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: analysed(app))
        await pilot.press("f9")
        focused = app.focused
        assert isinstance(focused, FeatureList)
        feature = focused.rows[0].feature
        await pilot.press("enter")
        assert app.pinned == feature
        view = app.query_one(DocumentView)
        assert set(view.overlay.features.tolist()) == {feature}
        values = app.analysis.feature_values(feature)
        assert len(view.overlay) <= int((values > 0).sum())
        await pilot.press("escape", "f8")
        start = view.offset_of(view.selection.start)
        token = app.analysis.token_at(start)
        assert values[token] > 0
        await pilot.press("shift+f9")
        assert app.pinned is None


async def test_feature_detail_view(make_app):
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: analysed(app))
        await pilot.press("f9", "d")
        from morph.editor.feature_screen import FeatureDetailScreen

        await wait_for(pilot, lambda: isinstance(app.screen, FeatureDetailScreen))
        screen = app.screen
        assert "Feature #" in str(screen.query_one("#title").render())
        assert "this document: active on" in str(screen.query_one("#facts").render())
        await pilot.press("p")
        assert app.pinned == screen.report.info.id


async def test_model_failure_is_shown_and_editing_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv("MORPH_CONFIG_DIR", str(tmp_path))
    monkeypatch.setenv("MORPH_STATE_DIR", str(tmp_path / "state"))

    def broken(_progress):
        from morph.errors import ModelLoadError

        raise ModelLoadError("model folder '/nope' does not exist")

    app = MorphApp(None, "Hello", Settings(debounce_ms=30), broken)
    async with app.run_test(size=(100, 20)) as pilot:
        await wait_for(pilot, lambda: app.status.state.state == "no model")
        await pilot.press("end", *" world")
        assert app.query_one(DocumentView).text == "Hello world"
        assert any("does not exist" in str(n.message) for n in app._notifications)


async def test_analysis_error_is_a_notification_not_a_crash(make_app):
    app = make_app()
    async with app.run_test(size=(100, 20)) as pilot:
        await wait_for(pilot, lambda: analysed(app))

        def explode(*args, **kwargs):
            raise RuntimeError("boom")

        app.engine.stream = explode
        await pilot.press("x")
        await wait_for(pilot, lambda: app.status.state.state == "error")
        assert app.query_one(DocumentView).text.startswith("x")
        assert any("boom" in str(n.message) for n in app._notifications)


async def test_status_shows_progress_of_a_long_analysis(make_app):
    from morph.editor.messages import AnalysisProgress

    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: analysed(app))
        app.post_message(AnalysisProgress(app.generation, 3, 10))
        await pilot.pause(0.05)
        assert "analysing (3/10 blocks)" in str(app.status.render_state())
        app.post_message(AnalysisProgress(app.generation - 1, 4, 10))  # an older run's progress: ignored
        await pilot.pause(0.05)
        assert "4/10" not in str(app.status.render_state())


async def test_at_the_end_of_a_word_the_panel_shows_that_word(make_app):
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: analysed(app))
        view = app.query_one(DocumentView)
        view.move_cursor((0, len(view.document[0])))  # end of the first line, after "water."
        await pilot.pause(0.05)
        token = str(app.query_one("#token-title").render()).split("'")[1]
        assert token.strip() and token.strip() in "water."


async def test_paused_analysis_keeps_highlights_off_when_scrolling(make_app):
    app = make_app(TEXT * 20)
    async with app.run_test(size=(120, 20)) as pilot:
        await wait_for(pilot, lambda: analysed(app))
        view = app.query_one(DocumentView)
        assert len(view.overlay) > 0
        await pilot.press("f7")
        assert len(view.overlay) == 0
        view.scroll_to(y=10, animate=False)
        await pilot.pause(0.1)
        app.live.refresh_highlights()
        assert len(view.overlay) == 0


async def test_long_feature_labels_stay_on_one_line_in_the_panel(make_app):
    from morph.editor.panel import PanelRow

    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: analysed(app))
        token_list = app.query_one("#token-features", FeatureList)
        rows = [PanelRow(7, "a very long label that goes on and on " * 3, 1.5, "#ff0000"),
                PanelRow(8, "short", 0.5, None)]
        app.panel.show_token("x", rows)
        await pilot.pause()
        assert token_list.option_count == 2
        assert token_list.virtual_size.height == 2  # one screen line per feature
        prompt = str(token_list.get_option_at_index(0).prompt)
        assert prompt.endswith("…") and "#7" in prompt
        assert str(token_list.get_option_at_index(1).prompt).endswith("short")


async def test_highlights_planned_in_the_worker_equal_those_planned_on_the_ui(make_app):
    from morph.features.highlights import HighlightPlan, Overlay

    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: analysed(app))
        view = app.query_one(DocumentView)
        from_worker = view.overlay
        assert len(from_worker) > 0
        app.live.refresh_highlights()  # no plan: made here, for the same view
        for name in ("starts", "ends", "slots", "levels", "features"):
            assert (getattr(view.overlay, name) == getattr(from_worker, name)).all(), name
        # a plan made for another view (or another pinned feature) is not used
        app.live.refresh_highlights(HighlightPlan((0, 1, None, len(app.palette)), [], Overlay.empty()))
        assert len(view.overlay) == len(from_worker)


async def test_the_panel_keeps_its_result_while_an_edit_waits_for_analysis(make_app):
    # TextArea posts SelectionChanged before Changed: the panel must not read the old analysis against the
    # new text in between (the token under the cursor is a different one).
    app = make_app(debounce_ms=60_000)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: app.engine is not None)
        app.live.start()
        await wait_for(pilot, lambda: analysed(app))
        view = app.query_one(DocumentView)
        view.move_cursor((0, 9))  # after "The river"
        await pilot.pause()
        token_list = app.query_one("#token-features", FeatureList)
        title = str(app.query_one("#token-title").content)
        rows = token_list.rows
        assert title.startswith("Token '") and rows
        await pilot.press("s")
        await pilot.pause()
        assert app.analysis.generation != app.generation
        assert token_list.rows is rows
        assert str(app.query_one("#token-title").content) == title


async def test_an_edit_cancels_the_running_analysis_at_once(make_app):
    app = make_app(debounce_ms=60_000)  # no new analysis starts: the edit alone must stop the old one
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: analysed(app))  # the first analysis, on loading
        before = app.analysis
        analyzer = app.engine.analyzer
        entered, release = hold_tokenize(analyzer)
        outcomes: list[str] = []
        stream = app.engine.stream

        def recording_stream(*args, **kwargs):
            try:
                yield from stream(*args, **kwargs)
            except Exception as err:
                outcomes.append(type(err).__name__)
                raise
            outcomes.append("finished")

        app.engine.stream = recording_stream
        app.view.insert("y")  # new text, so the run tokenizes (the debounce never fires)
        await pilot.pause()
        app.live.start()
        await wait_for(pilot, lambda: entered.is_set())
        worker = next(w for w in app.workers if w.group == "analysis")
        await pilot.press("x")
        await pilot.pause()
        assert worker.is_cancelled
        release.set()
        await wait_for(pilot, lambda: outcomes)
        assert outcomes == ["AnalysisCancelled"]
        await pilot.pause(0.05)
        assert app.analysis is before  # nothing from the cancelled run was drawn


async def test_the_rest_of_the_document_waits_until_the_cursor_block_is_drawn(make_app):
    from dataclasses import replace

    from morph.editor.messages import AnalysisReady

    text = "\n\n".join(TEXT.strip() for _ in range(12)) + "\n"
    app = make_app(text, debounce_ms=60_000)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: analysed(app))
        analyzer = app.engine.analyzer
        analyzer.config = replace(analyzer.config, max_block_tokens=24, min_block_tokens=8)  # many blocks
        posted: list[AnalysisReady] = []
        post = app.post_message

        def recording_post(message):
            if isinstance(message, AnalysisReady):
                posted.append(message)
            return post(message)

        computes: list[bool] = []  # for each batch of blocks: had every partial result been drawn?
        compute = analyzer._compute

        def recording_compute(*args, **kwargs):
            computes.append(all(m.drawn.is_set() for m in posted if m.partial))
            return compute(*args, **kwargs)

        app.post_message = recording_post
        analyzer._compute = recording_compute
        app.view.move_cursor((20, 3))
        app.view.insert("x")
        await pilot.pause()
        app.live.start()
        await wait_for(pilot, lambda: analysed(app))
        assert any(m.partial for m in posted) and len(computes) == 2
        assert computes == [True, True]  # the second batch began after the cursor's block was on screen


async def test_the_analysis_pauses_while_a_key_is_handled(make_app):
    """A key arriving while the analysis runs holds the analysis at its next checkpoint (the UI first);
    a key that does not edit (a cursor move) does not cancel it, and its result is drawn."""
    app = make_app(debounce_ms=60_000)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: analysed(app))
        app.input_priority.hold_s = 1.0  # long enough that the release below falls inside it on any machine
        analyzer = app.engine.analyzer
        entered, release = hold_tokenize(analyzer)
        app.view.move_cursor((0, 0))
        app.view.insert("y")  # new text, so the run tokenizes (the debounce never fires)
        await pilot.pause()
        app.live.start()
        await wait_for(pilot, lambda: entered.is_set())
        generation = app.generation
        await pilot.press("right")
        release.set()
        await wait_for(pilot, lambda: analysed(app))
        assert app.input_priority.waited_s > 0.1  # the checkpoint after tokenizing held it
        assert app.generation == generation and app.analysis.generation == generation
        assert len(app.view.overlay) > 0


async def test_a_result_arriving_while_a_key_is_handled_is_drawn_after_it(make_app):
    """The keystroke's frame goes out first: a result that arrives within the input hold is applied when the
    hold ends, not dropped (and a stale one is still never drawn)."""
    from dataclasses import replace

    from morph.editor.messages import AnalysisReady

    app = make_app(debounce_ms=60_000)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: analysed(app))
        before = app.analysis
        newer = replace(before)  # the same numbers, a new result object
        app.input_priority.hold_s = 0.5
        app.input_priority.input_arrived()
        message = AnalysisReady(newer, False)
        app.post_message(message)
        await pilot.pause(0.1)
        assert app.analysis is before and not message.drawn.is_set()  # held back while input is handled
        await wait_for(pilot, lambda: app.analysis is newer)
        await wait_for(pilot, lambda: message.drawn.is_set())


async def test_the_cursor_settling_in_another_paragraph_prepares_its_block_once(make_app):
    """Moving into another paragraph makes the engine keep that block's key/values in the background (so the
    first pause after typing there costs the typed tokens); moving within it asks for nothing more, and the
    text and the analysis are untouched."""
    text = "\n\n".join(f"{i}. {TEXT.strip()}" for i in range(8)) + "\n"  # blocks of several paragraphs
    app = make_app(text)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: analysed(app))
        before = app.analysis
        prepare = app.engine.prepare
        calls: list[tuple[int, bool]] = []

        def recording_prepare(text, focus, *args, **kwargs):
            done = prepare(text, focus, *args, **kwargs)
            calls.append((focus, done))
            return done

        app.engine.prepare = recording_prepare
        row = text.split("\n").index("7. The river ran past the old mill, and the miller's daughter watched the water.")
        app.view.move_cursor((row, 5))  # a paragraph in the last block
        await wait_for(pilot, lambda: len(calls) == 1)
        app.view.move_cursor((row, 9))  # the same paragraph
        await pilot.pause(0.2)
        assert len(calls) == 1 and calls[0][1]
        assert app.analysis is before and app.view.text == text
        await pilot.press("x")
        await wait_for(pilot, lambda: analysed(app))
        assert app.view.document[row].startswith("7. The rixver")


async def test_timing_marks_follow_a_pause_from_the_debounce_to_the_highlights(tiny_lens, tmp_path, monkeypatch):
    """The hook benchmarks measure with (morph.editor.timing): each point of a pause, in order, for the edit
    count it is about, and the UI-thread work on each result."""
    monkeypatch.setenv("MORPH_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("MORPH_STATE_DIR", str(tmp_path / "state"))
    marks = []
    app = MorphApp(None, TEXT, Settings(debounce_ms=30), lambda _progress: Engine(tiny_lens), timings=marks.append)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: analysed(app))
        marks.clear()
        await pilot.press("x")
        generation = app.generation
        await wait_for(pilot, lambda: analysed(app) and app.analysis.generation == generation)
        await wait_for(pilot, lambda: any(m.kind == "highlights_set" and not m.partial for m in marks))
        kinds = [m.kind for m in marks if m.kind != "ui_work"]
        firsts = [kinds.index(k) for k in ("debounce_fired", "analysis_started", "analysis_delivered",
                                           "analysis_finished", "highlights_set")]
        assert firsts == sorted(firsts)
        assert all(m.generation == generation for m in marks if m.kind != "ui_work")
        finished = next(m for m in marks if m.kind == "analysis_finished")
        assert finished.tokens and finished.computed_tokens is not None
        work = {m.name for m in marks if m.kind == "ui_work"}
        assert {"refresh_highlights", "refresh_panel"} <= work
        assert all(m.started <= m.at for m in marks if m.kind == "ui_work")
