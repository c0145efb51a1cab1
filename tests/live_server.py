"""A real `morph serve` app on 127.0.0.1 in a thread of the test process: start, stop, start again."""

from __future__ import annotations

import socket
import threading
import time

from morph.server.app import ServeSettings, create_app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    def __init__(self, engine, settings: ServeSettings | None = None, port: int | None = None) -> None:
        self.engine = engine
        self.settings = settings or ServeSettings()
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = None
        self._thread: threading.Thread | None = None
        self.app = None

    def start(self) -> "LiveServer":
        import uvicorn

        self.app = create_app(self.engine, self.settings)  # the Guard; its `app` is the FastAPI app
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port,
                                log_level="error", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="live server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True
            self._thread.join(10)
            self._server = None

    def __enter__(self) -> "LiveServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
