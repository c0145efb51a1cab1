"""`morph [FILE]`: open the editor. Bad input is refused here, before the screen is taken over."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from morph.cli import add_lens_arguments

    parser.add_argument("file", nargs="?", help="the file to edit (created on first save if it does not exist)")
    parser.add_argument("--no-model", action="store_true", help="open the editor without loading any model")
    parser.add_argument("--theme", help="theme name (see the command palette: ctrl+p, 'Theme')")
    parser.add_argument("--debounce", type=int, metavar="MS", help="pause before analysis, in milliseconds")
    add_lens_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from morph.config import Settings, load_settings, with_updates
    from morph.errors import InputError

    try:
        settings, settings_error = load_settings(), ""
    except InputError as err:  # the editor opens on the defaults and says why
        settings, settings_error = Settings(), str(err)
    changes = {}
    if args.theme:
        changes["theme"] = args.theme
    if args.debounce is not None:
        if not 0 <= args.debounce <= 10_000:
            raise InputError("--debounce must be between 0 and 10000 ms")
        changes["debounce_ms"] = args.debounce
    settings = with_updates(settings, **changes) if changes else settings
    loaded = None
    text = ""
    if args.file:
        from morph.textio import read_document

        loaded = read_document(args.file, max_bytes=settings.max_file_bytes)
        text = loaded.text
    factory = None
    note = ""
    server = args.server or settings.server
    if server and not args.no_model:
        if args.model or args.sae or args.device:
            raise InputError("--server uses the server's model: leave out --model, --sae and --device")
        from morph.server.address import server_url

        factory = remote_engine_factory(server_url(server), args.secret_key)
    elif not args.no_model:
        from morph.features.engine import LensSpec
        from morph.models.presets import default_available

        spec = LensSpec(model=args.model or settings.model, sae=args.sae or settings.sae,
                        device=args.device or settings.device)
        if spec.model is None and spec.sae is None and not default_available():
            from morph.models.default_model import HOW_TO_GET

            note = HOW_TO_GET
        else:
            factory = local_engine_factory(spec, settings.labels_fetch == "always", settings.neuronpedia_url)
    from morph.editor.app import MorphApp

    app = MorphApp(str(loaded.path) if loaded else None, text, settings, factory, note, loaded=loaded,
                   settings_error=settings_error)
    app.run()
    return int(app.return_code or 0)


def local_engine_factory(spec, fetch_labels: bool = False, neuronpedia_url: str | None = None):
    """Builds the local engine (in the editor's loader thread); `progress` hears a first conversion.
    `fetch_labels`: the user allows Neuronpedia's explanations to download on an SAE's first load."""

    def build(progress):
        import os

        from morph.features.analysis import AnalysisConfig
        from morph.features.engine import Engine

        # Leave a core to the UI thread, so typing never waits for the model.
        threads = max(1, (os.cpu_count() or 2) - 1)
        return Engine.load(spec, AnalysisConfig(threads=threads), progress, fetch_labels, neuronpedia_url)

    return build


SERVER_RETRY_S = 2.0
PROGRESS_EVERY_S = 0.25  # while waiting: `progress` is told this often (it raises once the editor closes)


def remote_engine_factory(url: str, secret_key: str | None):
    """Builds the engine of the server at `url` (morph.server.remote.connect_engine). A server that is down
    is waited for: asked again every SERVER_RETRY_S, the wait told through `progress` (done < 0) every
    PROGRESS_EVERY_S, until it answers or `progress` raises (the editor closing); a server that refuses the
    key fails at once (the editor says so and works on without analysis)."""
    def build(progress):
        import time

        from morph.errors import ServerUnavailable
        from morph.server.remote import connect_engine

        while True:
            try:
                return connect_engine(url, secret_key)
            except ServerUnavailable as err:
                waited = 0.0
                while waited < SERVER_RETRY_S:
                    progress(f"{err}; trying again", -1.0)
                    time.sleep(PROGRESS_EVERY_S)
                    waited += PROGRESS_EVERY_S

    return build
