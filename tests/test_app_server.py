"""The editor as a client of `morph serve` (Pilot, a live loopback server): highlights come from the
server; the server going away costs no keystroke and the status bar says so; analysis resumes when it is
back."""

from __future__ import annotations

import pytest

from morph.config import Settings
from morph.editor.app import MorphApp
from morph.editor.document import DocumentView
from morph.features.engine import Engine
from tests.pilot import wait_for

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from tests.live_server import LiveServer  # noqa: E402

TEXT = (
    "The river ran past the old mill, and the miller's daughter watched the water.\n\n"
    "In the evening the lamps were lit along the harbour. Sailors sang.\n"
)


def analysed(app: MorphApp) -> bool:
    return (app.analysis is not None and app.analysis.generation == app.generation
            and app.analysis.stats.complete and app.status.state.state == "idle")


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.setenv("MORPH_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("MORPH_STATE_DIR", str(tmp_path / "state"))
    return Settings(debounce_ms=30)


async def test_editor_through_a_server_that_goes_down_and_comes_back(tiny_lens, settings, one_torch_thread):
    from morph.commands.edit import remote_engine_factory

    live = LiveServer(Engine(tiny_lens)).start()
    try:
        app = MorphApp(None, TEXT, settings, remote_engine_factory(live.url, None))
        async with app.run_test(size=(120, 30)) as pilot:
            await wait_for(pilot, lambda: analysed(app))
            view = app.query_one(DocumentView)
            assert len(view.overlay) > 0
            assert app.engine.model_name in str(app.status.render_state())
            local = Engine(tiny_lens).analyze(TEXT, app.generation)
            assert (local.values == app.analysis.values).all() and (local.indices == app.analysis.indices).all()

            live.stop()
            view.move_cursor((0, 9))
            await pilot.press(*" quietly")
            assert view.text.startswith("The river quietly ran")  # no keystroke lost
            await wait_for(pilot, lambda: app.status.state.state == "server down")
            assert "server down" in str(app.status.render_state())
            await pilot.press(*" on")
            assert view.text.startswith("The river quietly on ran")

            live.start()  # the same address: the editor's retries find it
            await wait_for(pilot, lambda: analysed(app) and app.analysis.text_length == len(view.text), timeout=30)
            assert len(view.overlay) > 0
            assert view.text.startswith("The river quietly on ran")
    finally:
        live.stop()


async def test_editor_started_before_its_server_waits_for_it(tiny_lens, settings, one_torch_thread):
    from morph.commands.edit import remote_engine_factory

    live = LiveServer(Engine(tiny_lens))
    try:
        app = MorphApp(None, TEXT, settings, remote_engine_factory(live.url, None))
        async with app.run_test(size=(120, 30)) as pilot:
            await wait_for(pilot, lambda: app.status.state.state == "server down")
            await pilot.press("end", *"!")
            live.start()
            await wait_for(pilot, lambda: analysed(app), timeout=30)
            assert app.analysis.text_length == len(app.query_one(DocumentView).text)
    finally:
        live.stop()


async def test_a_refused_key_is_said_and_editing_goes_on(tiny_lens, settings):
    from morph.commands.edit import remote_engine_factory
    from morph.server.app import ServeSettings

    live = LiveServer(Engine(tiny_lens), ServeSettings(secret_key="right")).start()
    try:
        app = MorphApp(None, TEXT, settings, remote_engine_factory(live.url, "wrong"))
        async with app.run_test(size=(120, 30)) as pilot:
            await wait_for(pilot, lambda: app.status.state.state == "no model")
            await pilot.press("end", *"ok")
            assert "theok water" in app.query_one(DocumentView).text  # typed at the end of the first line
            assert any("refused the key" in str(n.message) for n in app._notifications)
    finally:
        live.stop()


async def test_closing_the_editor_while_it_waits_for_its_server_ends_the_wait(settings):
    import threading

    from morph.commands.edit import remote_engine_factory
    from tests.live_server import free_port

    ended = threading.Event()
    waiting = remote_engine_factory(f"http://127.0.0.1:{free_port()}", None)

    def factory(progress):
        try:
            return waiting(progress)
        finally:
            ended.set()

    app = MorphApp(None, TEXT, settings, factory)
    async with app.run_test(size=(100, 20)) as pilot:
        await wait_for(pilot, lambda: app.status.state.state == "server down")
        assert "server down" in str(app.status.render_state())
    assert ended.wait(5)  # the loader thread is gone: quitting never hangs on it
