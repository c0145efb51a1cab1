"""`morph analyze FILE [--json] [--top K]`: the features of each paragraph (and token) of a file.

A long file is analysed a window of about 100,000 characters at a time (morph.features.windows), each
window's results written out before the next is read: memory follows the window, not the file. A paragraph
longer than a window is reported in parts, one per window.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TextIO

# Paragraph reports wait in memory up to this size for the end of the token list (--json), then on disk.
SPOOL_BYTES = 4 * 1024 * 1024


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from morph.cli import add_lens_arguments

    parser.add_argument("file", help="a UTF-8 text file")
    parser.add_argument("--json", action="store_true", help="print JSON (offsets in characters of the file)")
    parser.add_argument("--top", type=int, default=5, metavar="K", help="features per paragraph and token (default 5)")
    parser.add_argument("--tokens", action="store_true", help="also print a table of tokens (not with --json)")
    parser.add_argument("--window", type=int, default=None, help=argparse.SUPPRESS)  # characters (tests)
    add_lens_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from morph.commands.common import engine_from_args, read_input
    from morph.errors import InputError, MorphError

    if args.top < 1:
        raise InputError("--top must be at least 1")
    if args.window is not None and args.window < 1_000:
        raise InputError("--window must be at least 1000 characters")
    source = read_input(args.file)
    engine = engine_from_args(args)
    out = JsonOut(sys.stdout, engine) if args.json else TableOut(engine, args.tokens)
    progress = Progress(len(source.text))
    try:
        for window in engine.analyze_windows(source.text, args.window):
            out.add(window_report(engine, window, source.text, args.top, source.shift))
            progress.done(window.end)
            del window  # the next window is analysed without this one in memory
    except MemoryError:
        raise MorphError(f"not enough memory to analyse {source.path.name}, even a window at a time") from None
    finally:
        progress.clear()
    out.finish()
    return 0


def window_report(engine, window, text: str, top: int, shift: int = 0) -> dict:
    """The paragraphs and tokens of `window` (morph.features.engine.TextWindow) that lie in the window proper,
    not in its left context; offsets are characters of the file (`shift`: 1 with a BOM). A paragraph that
    began in the context (one longer than a window) is reported from the window's start."""
    analysis, base = window.analysis, window.base
    skip = window.start - base  # the context's characters
    paragraphs = []
    for index, (start, end) in enumerate(analysis.paragraphs):
        if end <= skip:
            continue
        if start >= skip:
            summary = analysis.summary(index, top)
            n_tokens, features, variance = summary.n_tokens, summary.features, summary.explained_variance
        else:  # the rest of a paragraph that a cut split
            start = skip
            a, b = analysis.tokens_in(start, end)
            n_tokens, features, variance = b - a, analysis.span_features(a, b, top), analysis.explained_variance(a, b)
        paragraphs.append({
            "start": start + base + shift,
            "end": end + base + shift,
            "n_tokens": n_tokens,
            "features": [{"id": f.id, "label": engine.label(f.id), "score": round(f.score, 5), "max": round(f.max, 5),
                          "mean": round(f.mean, 5)} for f in features[:top]],
            "explained_variance": None if variance is None else round(variance, 5),
        })
    tokens = []
    for i, (start, end) in enumerate(analysis.offsets.tolist()):
        if start < skip:
            continue
        tokens.append({
            "start": start + base + shift, "end": end + base + shift, "text": text[base + start:base + end],
            "top": [[fid, round(act, 5)] for fid, act in analysis.token_features(i, top)],
        })
    return {"paragraphs": paragraphs, "tokens": tokens, "elapsed_s": analysis.stats.elapsed_s}


class JsonOut:
    """One JSON object, {"model", "sae", "tokens", "paragraphs"}, written as the windows come: the tokens go
    straight out, the paragraphs (far fewer) wait in a spooled file for the end of the token list."""

    def __init__(self, out: TextIO, engine) -> None:
        import tempfile

        self.out = out
        self.paragraphs = tempfile.SpooledTemporaryFile(SPOOL_BYTES, mode="w+", encoding="utf-8")
        self.tokens_written = self.paragraphs_written = 0
        head = json.dumps({"model": engine.model_name, "sae": engine.sae_name}, ensure_ascii=False)
        out.write(head[:-1] + ', "tokens": [')

    def add(self, report: dict) -> None:
        self._items(self.out, report["tokens"], "tokens_written")
        self._items(self.paragraphs, report["paragraphs"], "paragraphs_written")

    def _items(self, stream: TextIO, items: list, counter: str) -> None:
        if not items:
            return
        text = json.dumps(items, ensure_ascii=False)[1:-1]  # the C encoder, a window at a time
        stream.write((", " if getattr(self, counter) else "") + text)
        setattr(self, counter, getattr(self, counter) + len(items))

    def finish(self) -> None:
        import shutil

        self.out.write('], "paragraphs": [')
        self.paragraphs.seek(0)
        shutil.copyfileobj(self.paragraphs, self.out)
        self.paragraphs.close()
        self.out.write("]}\n")


class TableOut:
    """Tables on the terminal: each window's paragraphs (and tokens) as soon as it is analysed."""

    def __init__(self, engine, with_tokens: bool) -> None:
        from rich.console import Console

        self.console = Console()
        self.with_tokens = with_tokens
        self.paragraphs = self.tokens = 0
        self.elapsed = 0.0
        self.console.print(f"[b]{engine.model_name}[/b] · SAE [b]{engine.sae_name}[/b]")

    def add(self, report: dict) -> None:
        from rich.table import Table

        self.elapsed += report["elapsed_s"]
        for paragraph in report["paragraphs"]:
            self.paragraphs += 1
            variance = paragraph["explained_variance"]
            title = (f"¶{self.paragraphs}  chars {paragraph['start']}–{paragraph['end']}, {paragraph['n_tokens']} "
                     f"tokens, variance explained {'—' if variance is None else f'{variance:.2f}'}")
            table = Table(title=title, title_justify="left", expand=False)
            table.add_column("feature", justify="right")
            table.add_column("label")
            table.add_column("score", justify="right")
            table.add_column("max", justify="right")
            table.add_column("mean", justify="right")
            for feature in paragraph["features"]:
                table.add_row(str(feature["id"]), feature["label"], f"{feature['score']:.2f}",
                              f"{feature['max']:.2f}", f"{feature['mean']:.3f}")
            self.console.print(table)
        self.tokens += len(report["tokens"])
        if self.with_tokens and report["tokens"]:
            table = Table(title="tokens", title_justify="left")
            table.add_column("chars")
            table.add_column("token")
            table.add_column("top features")
            for token in report["tokens"]:
                table.add_row(f"{token['start']}–{token['end']}", repr(token["text"]),
                              ", ".join(f"{fid}:{act:.2f}" for fid, act in token["top"]))
            self.console.print(table)

    def finish(self) -> None:
        self.console.print(f"{self.tokens} tokens in {self.elapsed * 1000:.0f} ms")


class Progress:
    """How far a long analysis is, on one line of stderr that rewrites itself (only on a terminal)."""

    def __init__(self, total_chars: int, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.total = total_chars
        self.started = time.monotonic()
        self.shown = False

    def done(self, chars: int) -> None:
        if chars >= self.total or not self.stream.isatty():
            return
        elapsed = time.monotonic() - self.started
        left = elapsed * (self.total - chars) / max(chars, 1)
        self.stream.write(f"\rmorph: analysed {chars / 1e6:.1f} of {self.total / 1e6:.1f} M characters "
                          f"({chars / self.total:.0%}), about {_duration(left)} left\x1b[K")
        self.stream.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
