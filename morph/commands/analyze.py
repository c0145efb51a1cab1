"""`morph analyze FILE [--json] [--top K]`: the features of each paragraph (and token) of a file."""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from morph.cli import add_lens_arguments

    parser.add_argument("file", help="a UTF-8 text file")
    parser.add_argument("--json", action="store_true", help="print JSON (offsets in characters of the file)")
    parser.add_argument("--top", type=int, default=5, metavar="K", help="features per paragraph and token (default 5)")
    parser.add_argument("--tokens", action="store_true", help="also print a table of tokens (not with --json)")
    add_lens_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from morph.commands.common import engine_from_args, read_input
    from morph.errors import InputError

    if args.top < 1:
        raise InputError("--top must be at least 1")
    source = read_input(args.file)
    engine = engine_from_args(args)
    analysis = engine.analyze(source.text)
    report = build_report(engine, analysis, source.text, args.top, source.shift)
    if args.json:
        json.dump(report, sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        print_report(report, args.tokens, analysis.stats.elapsed_s)
    return 0


def build_report(engine, analysis, text: str, top: int, shift: int = 0) -> dict:
    paragraphs = []
    for summary in analysis.summaries(top):
        paragraphs.append({
            "start": summary.start + shift,
            "end": summary.end + shift,
            "n_tokens": summary.n_tokens,
            "features": [{"id": f.id, "label": engine.label(f.id), "score": round(f.score, 5), "max": round(f.max, 5),
                          "mean": round(f.mean, 5)} for f in summary.features[:top]],
            "explained_variance": None if summary.explained_variance is None else round(summary.explained_variance, 5),
        })
    tokens = []
    for i, (start, end) in enumerate(analysis.offsets.tolist()):
        tokens.append({
            "start": start + shift, "end": end + shift, "text": text[start:end],
            "top": [[fid, round(act, 5)] for fid, act in analysis.token_features(i, top)],
        })
    return {"model": engine.model_name, "sae": engine.sae_name, "paragraphs": paragraphs, "tokens": tokens}


def print_report(report: dict, with_tokens: bool, elapsed: float) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[b]{report['model']}[/b] · SAE [b]{report['sae']}[/b] · "
                  f"{len(report['tokens'])} tokens in {elapsed * 1000:.0f} ms")
    for number, paragraph in enumerate(report["paragraphs"], 1):
        variance = paragraph["explained_variance"]
        title = (f"¶{number}  chars {paragraph['start']}–{paragraph['end']}, {paragraph['n_tokens']} tokens, "
                 f"variance explained {'—' if variance is None else f'{variance:.2f}'}")
        table = Table(title=title, title_justify="left", expand=False)
        table.add_column("feature", justify="right")
        table.add_column("label")
        table.add_column("score", justify="right")
        table.add_column("max", justify="right")
        table.add_column("mean", justify="right")
        for feature in paragraph["features"]:
            table.add_row(str(feature["id"]), feature["label"], f"{feature['score']:.2f}", f"{feature['max']:.2f}",
                          f"{feature['mean']:.3f}")
        console.print(table)
    if with_tokens:
        table = Table(title="tokens", title_justify="left")
        table.add_column("chars")
        table.add_column("token")
        table.add_column("top features")
        for token in report["tokens"]:
            table.add_row(f"{token['start']}–{token['end']}", repr(token["text"]),
                          ", ".join(f"{fid}:{act:.2f}" for fid, act in token["top"]))
        console.print(table)
