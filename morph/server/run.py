"""Launching `morph serve`: checks first (loopback or a key, a free port), then uvicorn (or Ray Serve)."""

from __future__ import annotations

import socket
import sys

from morph.errors import InputError
from morph.features.engine import Engine
from morph.server.app import ServeSettings, create_app
from morph.server.address import is_loopback


def check_bind(host: str, port: int, secret_key: str | None) -> None:
    """Refuse, in one line, what would expose the engine or fail later: a non-loopback address without a
    key, a port out of range or in use."""
    if not is_loopback(host) and not secret_key:
        raise InputError(f"--host {host} is not loopback: give a --secret-key (or set MORPH_SECRET_KEY) "
                         "so that only your clients can use the server")
    if not 0 < port < 65536:
        raise InputError(f"--port must be between 1 and 65535, not {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            if err.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
                raise InputError(f"port {port} on {host} is in use (another server?): choose one with --port")
            raise InputError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None


def serve(engine: Engine, host: str, port: int, settings: ServeSettings) -> None:
    """Serve `engine` until interrupted."""
    import uvicorn

    check_bind(host, port, settings.secret_key)
    app = create_app(engine, settings)
    print(f"morph: serving {engine.model_name} · {engine.sae_name} on http://{host}:{port}"
          + (" (secret key required)" if settings.secret_key else ""), file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
