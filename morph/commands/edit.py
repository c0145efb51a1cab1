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
    if not args.no_model:
        from morph.features.engine import LensSpec
        from morph.models.presets import default_available

        spec = LensSpec(model=args.model or settings.model, sae=args.sae or settings.sae,
                        device=args.device or settings.device)
        if spec.model is None and spec.sae is None and not default_available():
            from morph.models.default_model import HOW_TO_GET

            note = HOW_TO_GET
        else:
            factory = _engine_factory(spec, settings.labels_fetch == "always", settings.neuronpedia_url)
    from morph.editor.app import MorphApp

    app = MorphApp(str(loaded.path) if loaded else None, text, settings, factory, note, loaded=loaded,
                   settings_error=settings_error)
    app.run()
    return int(app.return_code or 0)


def _engine_factory(spec, fetch_labels: bool = False, neuronpedia_url: str | None = None):
    """`fetch_labels`: the user allows Neuronpedia's explanations to download on an SAE's first load."""

    def build(progress):
        import os

        from morph.features.analysis import AnalysisConfig
        from morph.features.engine import Engine

        # Leave a core to the UI thread, so typing never waits for the model.
        threads = max(1, (os.cpu_count() or 2) - 1)
        return Engine.load(spec, AnalysisConfig(threads=threads), progress, fetch_labels, neuronpedia_url)

    return build
