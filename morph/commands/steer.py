"""`morph steer FILE --start A --end B (--feature ID | --concept TEXT)`: steered rewrites of a span."""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from morph.cli import add_lens_arguments

    parser.add_argument("file", help="a UTF-8 text file")
    parser.add_argument("--start", type=int, required=True, metavar="A",
                        help="first character of the span to rewrite (offsets count characters of the file)")
    parser.add_argument("--end", type=int, required=True, metavar="B", help="character just after the span")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--feature", type=int, metavar="ID", help="the SAE feature to steer with")
    target.add_argument("--concept", metavar="TEXT", help="steer with the feature whose label best matches TEXT")
    parser.add_argument("--strength", default="medium", metavar="S",
                        help="subtle, medium, strong, or a number (units of the feature's typical max activation)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--away", action="store_true", help="steer away from the feature")
    mode.add_argument("--suppress", action="store_true", help="zero the feature through the SAE")
    parser.add_argument("-n", type=int, default=4, metavar="N", help="number of candidates (default 4)")
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="sampling seed (default 0)")
    parser.add_argument("--max-tokens", type=int, default=None, metavar="N", help="cap on generated tokens")
    parser.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (default 0.8)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    add_lens_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from morph.commands.common import engine_from_args, read_input
    from morph.errors import InputError
    from morph.features.steering import SteerRequest, steerer_for, strength_value

    source = read_input(args.file)
    start, end = args.start - source.shift, args.end - source.shift
    if not 0 <= start <= end <= len(source.text):
        raise InputError(f"--start/--end [{args.start}, {args.end}) are outside the file "
                         f"({len(source.text) + source.shift} characters)")
    strength = strength_value(args.strength)
    if not 1 <= args.n <= 16:
        raise InputError(f"-n must be 1 to 16, not {args.n}")
    engine = engine_from_args(args)
    steerer = steerer_for(engine.lens)
    if args.concept is not None:
        feature = steerer.search(args.concept, limit=1)[0].id
    else:
        from morph.features.concepts import check_feature

        feature = check_feature(engine.lens, args.feature)
    mode = "suppress" if args.suppress else "away" if args.away else "toward"
    request = SteerRequest.single(feature, strength, mode=mode, n=args.n, seed=args.seed,
                                  max_tokens=args.max_tokens, temperature=args.temperature)
    result = steerer.run(source.text, start, end, request)
    report = build_report(engine, result, feature)
    if args.json:
        json.dump(report, sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        print_report(report, result)
    return 0


def build_report(engine, result, feature: int) -> dict:
    request = result.request
    return {
        "model": engine.model_name,
        "sae": engine.sae_name,
        "feature": feature,
        "label": engine.label(feature),
        "mode": request.mode,
        "strength": None if request.mode == "suppress" else round(result.features[0][1], 4),  # signed
        "typical_max": round(result.scales[0], 5),
        "original": {
            "text": result.original.text,
            "target_activation": round(result.original.target_activation, 5),
            "fluency": round(result.original.fluency, 4),
        },
        "candidates": [
            {
                "text": c.text,
                "target_activation": round(c.target_activation, 5),
                "fluency": round(c.fluency, 4),
                "similarity": round(c.similarity, 4),
                "gain": round(c.gain, 4),
                "score": round(c.score, 4),
                "rank": c.rank,
                "raises_concept": c.raises_concept,
            }
            for c in result.candidates
        ],
        "first_candidate_s": None if result.first_candidate_s is None else round(result.first_candidate_s, 3),
        "elapsed_s": round(result.elapsed_s, 3),
        "tokens_per_s": round(result.tokens_per_s, 1),
    }


def print_report(report: dict, result) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    verb = {"toward": "toward", "away": "away from", "suppress": "suppressing"}[report["mode"]]
    strength = "" if report["strength"] is None else f" at strength {abs(report['strength']):g}"
    console.print(f"[b]{escape(report['model'])}[/b] · SAE [b]{escape(report['sae'])}[/b] · "
                  f"steering {verb} feature [b]{report['feature']}[/b] "
                  f"({escape(report['label'])}){strength}")
    original = report["original"]
    table = Table(title_justify="left", expand=False)
    table.add_column("rank", justify="right")
    table.add_column("concept", justify="right")
    table.add_column("gain", justify="right")
    table.add_column("fluency", justify="right")
    table.add_column("similar", justify="right")
    table.add_column("text")
    table.add_row("orig", f"{original['target_activation']:.3f}", "", f"{original['fluency']:.2f}", "1.00",
                  escape(original["text"]), style="dim")
    for c in report["candidates"]:
        mark = "" if c["raises_concept"] else " ✗"
        table.add_row(f"{c['rank']}{mark}", f"{c['target_activation']:.3f}", f"{c['gain']:+.3f}",
                      f"{c['fluency']:.2f}", f"{c['similarity']:.2f}", escape(c["text"]))
    console.print(table)
    first = report["first_candidate_s"]
    console.print(f"[dim]{len(report['candidates'])} candidates in {report['elapsed_s']:.1f} s"
                  f"{'' if first is None else f' (first after {first:.1f} s)'}, "
                  f"{report['tokens_per_s']:.0f} tokens/s; ✗ = does not move the concept the asked way[/dim]")
