"""`morph labels fetch [--model M] [--sae S] [--url URL]`: download an SAE's Neuronpedia explanations.

They go into Morph's cache (morph.features.neuronpedia); from then on the SAE's labels, its details and
concept search use them, offline. A progress bar goes to stderr, one summary line to stdout.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from morph.features.neuronpedia_fetch import FetchProgress


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from morph.cli import add_lens_arguments

    sub = parser.add_subparsers(dest="labels_command", required=True, metavar="fetch")
    fetch = sub.add_parser("fetch", help="download the SAE's explanations from Neuronpedia's bulk export",
                           description="Download the SAE's explanations from Neuronpedia's public bulk export "
                           "into Morph's cache (the SAE needs a Neuronpedia id, as SAE-Lens's registry SAEs have).")
    fetch.add_argument("--url", help="the export bucket or a mirror (default: $MORPH_NEURONPEDIA_URL, the "
                       "neuronpedia_url setting, then Neuronpedia's own)")
    add_lens_arguments(fetch, remote=False)  # fetching labels needs no engine: no --server


def run(args: argparse.Namespace) -> int:
    from morph.config import load_settings
    from morph.features.engine import Engine, LensSpec
    from morph.features.neuronpedia_fetch import export_url

    settings = load_settings()
    spec = LensSpec(model=args.model or settings.model, sae=args.sae or settings.sae)
    base = args.url.rstrip("/") if args.url else export_url(settings.neuronpedia_url)
    with _ProgressBar() as bar:
        result = Engine.fetch_labels(spec, base, bar.update)
    print(f"{result.explanations} explanations of {result.features} features "
          f"({result.files} files from {base}) cached in {result.path}")
    return 0


class _ProgressBar:
    """A rich progress bar on stderr when it is a terminal: batch files (of a total once the listing gives
    one) and bytes."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        console = Console(file=sys.stderr)
        self.progress = Progress(TextColumn("Neuronpedia explanations"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("files · {task.fields[size]}"), TimeElapsedColumn(),
                                 console=console, transient=True, disable=not console.is_terminal)
        self.task = self.progress.add_task("fetch", total=None, size="0 B")

    def __enter__(self) -> "_ProgressBar":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, state: "FetchProgress") -> None:
        from rich.filesize import decimal

        self.progress.update(self.task, completed=state.files_done, total=state.files_total,
                             size=decimal(state.bytes_done))
