"""`morph steer FILE --start A --end B (--concept WORDS | --like TEXT | --feature ID)`: rewrites of a span.

The concept is the writer's words ("calmer", "about the sea", "less jargon"), an example to imitate
(`--like`, "more like this"), or a feature number. Words and examples are mapped to features by label
match and output score (morph.features.concepts.concepts_for_words); the chosen features are printed with
why. `--method` picks how the rewrite is made (hybrid: the instruct model asked in words while the
features are steered; prompt: words only; steer: features only; continuation: a base model continuing the
text), `--strength auto` (the default) sweeps the strength over the candidates; every candidate is
re-read and scored, and the table shows the combined score with its parts and marks. When none of the
candidates passes (moves the concept with no mark), as many again are drawn (`SteerRequest.second_round`:
through the chat template they keep the sentence and add to it; `--one-round` stops after the first). Words that no feature
matches, or whose features no label shows them on (`concepts.unlabelled`; with auto, hybrid or prompt), or
`--by-words`, are rewritten by the instruction (hybrid also steers by the words' own contrastive direction,
`concepts.words_direction`) and measured by the words (morph.features.steering.SteerRequest.by_words).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from morph.features.concepts import ConceptMatch
    from morph.features.engine import Engine
    from morph.features.steering import SteerResult


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from morph.cli import add_lens_arguments
    from morph.features.steering import DEFAULT_CANDIDATES, METHODS

    parser.add_argument("file", help="a UTF-8 text file")
    parser.add_argument("--start", type=int, required=True, metavar="A",
                        help="first character of the span to rewrite (offsets count characters of the file)")
    parser.add_argument("--end", type=int, required=True, metavar="B", help="character just after the span")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--concept", metavar="WORDS",
                        help='what you want, in words: "calmer", "about the sea", "more formal", "less jargon"')
    target.add_argument("--like", metavar="TEXT", help="more like this: an example passage (or a few words) to imitate")
    target.add_argument("--feature", type=int, metavar="ID", help="an SAE feature by number")
    parser.add_argument("--by-words", action="store_true",
                        help="your words alone, no feature: the instruction rewrites, and the concept is measured by "
                             "how much more the model expects the words after a candidate (taken when no feature "
                             "matches the words)")
    parser.add_argument("--features", type=int, default=1, metavar="K",
                        help="how many of the concept's features to steer with (default 1: the first ranked)")
    parser.add_argument("--method", default="auto", choices=("auto",) + METHODS,
                        help="hybrid (instruction + steering), prompt (instruction only), steer (steering "
                             "only), continuation (base models); auto: hybrid on an instruct model")
    parser.add_argument("--strength", default="auto", metavar="S",
                        help="auto (a sweep over the candidates, the default), subtle, medium, strong, or a "
                             "number (units of the feature's typical max activation)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--away", action="store_true", help="steer away from the concept")
    mode.add_argument("--suppress", action="store_true", help="zero the features through the SAE")
    parser.add_argument("-n", type=int, default=DEFAULT_CANDIDATES, metavar="N",
                        help=f"number of candidates (default {DEFAULT_CANDIDATES})")
    parser.add_argument("--one-round", action="store_true",
                        help="no second round: by default, when none of the N candidates moves the concept with no "
                             "mark, N more are drawn (an instruct model's keep the sentence and add to it; a base "
                             "model's or a fragment's: half without steering, half at half the strength)")
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="sampling seed (default 0)")
    parser.add_argument("--max-tokens", type=int, default=None, metavar="N", help="cap on generated tokens")
    parser.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (default 0.7)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    add_lens_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from morph.commands.common import engine_from_args, read_input
    from morph.errors import InputError, NoFeatureMatches
    from morph.features.concepts import direction_of, unlabelled, unlabelled_note, unlabelled_reason
    from morph.features.steering import SteerRequest, is_auto, strength_value

    source = read_input(args.file)
    start, end = args.start - source.shift, args.end - source.shift
    if not 0 <= start <= end <= len(source.text):
        raise InputError(f"--start/--end [{args.start}, {args.end}) are outside the file "
                         f"({len(source.text) + source.shift} characters)")
    strength: float | str = "auto" if is_auto(args.strength) else strength_value(args.strength)
    if not 1 <= args.n <= 16:
        raise InputError(f"-n must be 1 to 16, not {args.n}")
    if not 1 <= args.features <= 8:
        raise InputError(f"--features must be 1 to 8, not {args.features}")
    if args.by_words and (args.concept is None or args.concept.strip().isdigit()):
        raise InputError("--by-words needs --concept WORDS")
    engine = engine_from_args(args)
    steerer = engine.steerer()
    words = ""
    matches: list[ConceptMatch] = []
    refused: NoFeatureMatches | None = None  # no feature matches the words: they are rewritten by themselves
    why = ""  # why the words go alone although features were found
    instruction = args.method in ("auto", "hybrid", "prompt") and not args.suppress  # can go by words alone
    if args.by_words:
        words = args.concept
    elif args.feature is not None:
        matches = steerer.concepts_for(str(args.feature), source.text, start, end) if args.feature >= 0 else []
        if not matches:
            raise InputError(f"feature {args.feature} does not exist")
    elif args.like is not None:
        matches = steerer.concepts_for("", source.text, start, end, example=args.like)[: args.features]
        words = "more like this: " + " ".join(args.like.split())[:80]
    else:
        words = args.concept if not args.concept.strip().isdigit() else ""
        try:
            matches = steerer.concepts_for(args.concept, source.text, start, end)[: args.features]
        except NoFeatureMatches as err:
            if not instruction:
                raise
            refused = err
        if instruction and unlabelled(words, matches):
            matches = []  # they only fire on the words: the words go alone (as the editor's default)
            why = unlabelled_reason(words) + ": "
    if args.suppress:
        mode = "suppress"
    elif args.away:
        mode = "away"
    else:
        mode = direction_of(words) if args.concept is not None else "toward"
    options = dict(n=args.n, seed=args.seed, max_tokens=args.max_tokens, temperature=args.temperature,
                   method=args.method, second_round=not args.one_round)
    if matches:
        request = SteerRequest.for_matches(matches, words if args.like is None else "", strength, mode=mode, **options)
        note = unlabelled_note(words, matches) if args.concept is not None and args.like is None else None
    else:
        request = SteerRequest.by_words(words, mode=mode, strength=strength, **options)
        note = ((str(refused).split(":")[0] + ": " if refused else why) + "rewritten by your words alone (the "
                "instruction; hybrid also steers by their own direction), measured by how much more the model "
                "expects them after a rewrite")
    try:
        result = steerer.run(source.text, start, end, request)
    except InputError:
        if refused is not None:  # nor can the words measure it: the refusal says what to do
            raise refused from None
        raise
    report = build_report(engine, result, matches, words, note)
    if args.json:
        json.dump(report, sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        print_report(report)
    return 0


def build_report(engine: Engine, result: SteerResult, matches: list[ConceptMatch], words: str = "",
                 note: str | None = None) -> dict:
    request = result.request
    feature = result.features[0][0] if result.features else None
    return {
        "model": engine.model_name,
        "sae": engine.sae_name,
        "method": result.method,
        "instruction": result.instruction,
        "concept": words,
        "feature": feature,
        "label": None if feature is None else engine.label(feature),
        "by_words": result.by_words,  # no feature: the concept measured by the words (gains in nats)
        "note": note,  # why the words go alone, or why the features do not show them (unlabelled_note), or None
        "features": [
            {"id": m.id, "label": m.label, "label_score": round(m.label_score, 3),
             "output_score": round(m.output_score, 3), "why": m.why}
            for m in matches
        ],
        "mode": request.mode,
        "strength": (None if request.mode == "suppress" or request.auto_strength else
                     round(result.features[0][1], 4) if result.features else
                     request.words_strength if result.method == "hybrid" else None),
        "auto_strength": bool(result.ladder),
        "ladder": list(result.ladder),
        "typical_max": round(result.scales[0], 5) if result.scales else None,
        "original": {
            "text": result.original.text,
            "target_activation": round(result.original.target_activation, 5),
            "fluency": round(result.original.fluency, 4),
            "words_level": None if result.original.words_level is None else round(result.original.words_level, 4),
        },
        "candidates": [
            {
                "text": c.text,
                "rank": c.rank,
                "score": round(c.score, 4),
                "parts": {name: round(value, 4) for name, value in c.parts},
                "marks": list(c.marks),
                "raises_concept": c.raises_concept,
                "gain": round(c.gain, 4),
                "words_gain": None if c.words_gain is None else round(c.words_gain, 4),  # nats (steering, 5.)
                "target_activation": round(c.target_activation, 5),
                "fluency": round(c.fluency, 4),
                "fluency_change": round(c.fluency_change, 4),
                "similarity": round(c.similarity, 4),
                "length_ratio": round(c.length_ratio, 3),
                "strength": c.strength,
                "adds": c.adds,  # the original sentence kept whole, words added (a second round's)
            }
            for c in result.candidates
        ],
        "rounds": result.rounds,  # 2: none of the first n passed, n more were drawn
        "first_candidate_s": None if result.first_candidate_s is None else round(result.first_candidate_s, 3),
        "elapsed_s": round(result.elapsed_s, 3),
        "tokens_per_s": round(result.tokens_per_s, 1),
    }


def words_text(candidate: dict, by_words: bool) -> str:
    """The words' gain beside the features' ("w +1.20"; a second reading; by the words alone it is the gain
    itself, so "")."""
    gain = candidate.get("words_gain")
    return "" if gain is None or by_words else f"w {gain:+.2f}"


def print_report(report: dict) -> None:
    from rich.console import Console
    from rich.markup import escape

    from morph.features.steering import FLUENCY_LOSS_MAX, SIMILARITY_MIN

    console = Console()
    units = ("nats (how much more the model expects your words after it)" if report["by_words"] else
             "typical-max units")
    words = ("" if report["by_words"] or all(c.get("words_gain") is None for c in report["candidates"]) else
             ", w: how much more the model expects your words after it, nats")
    verb = {"toward": "toward", "away": "away from", "suppress": "suppressing"}[report["mode"]]
    if report["auto_strength"]:
        strength = f" · strength auto (swept {', '.join(f'{s:g}' for s in report['ladder'])})"
    elif report["strength"] is not None:
        strength = f" · strength {abs(report['strength']):g}"
    else:
        strength = ""
    console.print(f"[b]{escape(report['model'])}[/b] · SAE [b]{escape(report['sae'])}[/b] · "
                  f"method [b]{report['method']}[/b]{strength}")
    if report["instruction"]:
        console.print(f"instruction: {escape(report['instruction'])}")
    alone = ("your words alone, no feature" + (": steered by their own direction" if report["method"] == "hybrid"
                                               else ""))
    console.print(f"{verb}:" + (f" {escape(repr(report['concept']))} ({alone})" if report["by_words"] else ""))
    if report.get("note"):
        console.print(f"  [yellow]{escape(report['note'])}[/yellow]")
    for f in report["features"]:
        console.print(f"  feature [b]{f['id']}[/b] ({escape(f['label'])}): label {f['label_score']:.2f}, "
                      f"output {f['output_score']:+.2f} nats · {escape(f['why'])}")
    if console.width < WIDE_TABLE:
        print_candidates_narrow(console, report)
    else:
        print_candidates_table(console, report)
    first = report["first_candidate_s"]
    count = len(report["candidates"])
    adds = any(c.get("adds") for c in report["candidates"])
    added = ": the second kept the sentence and added to it" if adds else ""
    rounds = (f" in two rounds (none of the first {count // 2} moved the concept unmarked{added})"
              if report["rounds"] > 1 else "")
    console.print(f"[dim]{count} candidates{rounds} in {report['elapsed_s']:.1f} s"
                  f"{'' if first is None else f' (first after {first:.1f} s)'}, "
                  f"{report['tokens_per_s']:.0f} tokens/s. score = harmonic mean of the parts (0..1); concept: "
                  f"gain in {units}{words}; fluency: nats/token vs the original; marked (✗): the concept did "
                  f"not move, fluency lost > {FLUENCY_LOSS_MAX} nats/token, meaning < {SIMILARITY_MIN}, or length "
                  f"off[/dim]")


# Narrower than this, the candidates are printed one under another (the text on its own lines, the scores
# below it) instead of as a table whose text column would be a few words wide.
WIDE_TABLE = 110


def print_candidates_narrow(console: Console, report: dict) -> None:
    """The original, then each candidate: its rank beside its text, the score with its parts below, its marks."""
    from rich.markup import escape
    from rich.table import Table

    from morph.features.steering import strength_text

    original = report["original"]
    grid = Table.grid(padding=(0, 2))
    grid.add_column(justify="right", no_wrap=True)
    grid.add_column()
    grid.add_row("[dim]orig[/dim]", f"[dim]{escape(original['text'].strip())}\nconcept "
                 f"{original['target_activation']:.3f} · fluency {original['fluency']:.2f}[/dim]")
    for c in report["candidates"]:
        parts = c["parts"]
        words = f", {w}" if (w := words_text(c, report["by_words"])) else ""
        at = strength_text(c["strength"])
        marks = f"\n[yellow]✗ {escape(', '.join(c['marks']))}[/yellow]" if c["marks"] else ""
        grid.add_row(f"[b]{c['rank']}[/b]", f"{escape(c['text'].strip())}\n[dim]score {c['score']:.2f} = concept "
                     f"{parts.get('concept', 0):.2f} ({c['gain']:+.3f}{words}) · fluency {parts.get('fluency', 0):.2f} "
                     f"({c['fluency_change']:+.2f}) · meaning {parts.get('meaning', 0):.2f} · length "
                     f"{parts.get('length', 0):.2f}{f' · {at}' if at else ''}[/dim]{marks}")
    console.print(grid)


def print_candidates_table(console: Console, report: dict) -> None:
    """The original and the candidates as one table (rank, score, its parts, text and marks)."""
    from rich.markup import escape
    from rich.table import Table

    from morph.features.steering import strength_text

    original = report["original"]
    table = Table(title_justify="left", expand=False)
    for name in ("rank", "score", "concept", "fluency", "meaning", "length", "text"):
        table.add_column(name, justify="left" if name == "text" else "right")
    table.add_row("orig", "", f"{original['target_activation']:.3f}", f"{original['fluency']:.2f}", "1.00", "1.00",
                  escape(original["text"]), style="dim")
    for c in report["candidates"]:
        marks = f"\n[yellow]✗ {escape(', '.join(c['marks']))}[/yellow]" if c["marks"] else ""
        at = strength_text(c["strength"])
        at = f"\n[dim]{at}[/dim]" if at else ""
        table.add_row(f"{c['rank']}{at}", f"{c['score']:.2f}",
                      f"{c['parts'].get('concept', 0):.2f}\n[dim]{c['gain']:+.3f}[/dim]"
                      + (f"\n[dim]{w}[/dim]" if (w := words_text(c, report["by_words"])) else ""),
                      f"{c['parts'].get('fluency', 0):.2f}\n[dim]{c['fluency_change']:+.2f}[/dim]",
                      f"{c['parts'].get('meaning', 0):.2f}", f"{c['parts'].get('length', 0):.2f}",
                      escape(c["text"]) + marks)
    console.print(table)
