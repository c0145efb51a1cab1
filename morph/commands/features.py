"""`morph features [QUERY] [--id N] [--json]`: search the SAE's feature labels, or show one feature."""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from morph.cli import add_lens_arguments

    parser.add_argument("query", nargs="?", help="a concept to look for: the words features fire on, their labels "
                        "(substring, then fuzzy)")
    parser.add_argument("--id", type=int, help="show one feature in full")
    parser.add_argument("--limit", type=int, default=20, help="how many matches to list (default 20)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    add_lens_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from morph.commands.common import engine_from_args
    from morph.errors import InputError

    if args.query is None and args.id is None:
        raise InputError("give a QUERY to search the labels, or --id N")
    engine = engine_from_args(args)
    labels = engine.labels
    ids = [args.id] if args.id is not None else labels.search(args.query, args.limit)
    if args.query is not None and not ids:
        raise InputError(f"no feature label matches {args.query!r}")
    infos = [labels.info(i) for i in ids]
    if args.json:
        json.dump([feature_json(f) for f in infos], sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    from rich.console import Console

    console = Console()
    if args.id is not None:
        print_feature(console, infos[0])
        return 0
    from rich.table import Table

    table = Table(title=f"{engine.sae_name} · labels from {labels.source}", title_justify="left")
    for column in ("id", "label", "density", "typical max", "fires on words", "says (steered)" if any(
            f.says for f in infos) else "promotes"):
        table.add_column(column)
    for f in infos:
        table.add_row(str(f.id), f.label, "—" if f.density is None else f"{f.density:.4f}",
                      "—" if f.typical_max is None else f"{f.typical_max:.2f}",
                      " ".join(w for w, _, _ in f.words[:6]) or " ".join(t for t, _ in f.top_tokens[:6]),
                      " ".join(f.output[:6]))
    console.print(table)
    return 0


def feature_json(f) -> dict:
    return {"id": f.id, "label": f.label, "density": f.density, "mean_act": f.mean_act, "max_act": f.max_act,
            "typical_max": f.typical_max, "quantiles": {str(q): v for q, v in f.quantiles},
            "words": [list(w) for w in f.words],
            "contexts": [{"before": c.before, "token": c.token, "after": c.after, "act": c.activation}
                         for c in f.contexts],
            "top_tokens": [list(t) for t in f.top_tokens], "promoted": list(f.promoted), "says": list(f.says),
            "explanations": [{"description": e.description, "explainer": e.explainer, "kind": e.kind}
                             for e in f.explanations]}


def print_feature(console, f) -> None:
    """One feature in full: label, statistics, words, contexts (firing token marked), what it says steered and
    the tokens it promotes."""
    from rich.text import Text

    console.print(Text(f"Feature #{f.id} · {f.label}", style="bold"))
    if f.explanations:
        console.print(Text("Neuronpedia's explanations (best first):"))
        for e in f.explanations:
            console.print(Text(f"  {e.description}", style="bold" if e is f.explanations[0] else ""),
                          Text(f"({', '.join(x for x in (e.explainer, e.kind) if x)})", style="dim"))
    if f.density is not None:
        quantiles = ", ".join(f"q{q:g} {v:.2f}" for q, v in f.quantiles)
        console.print(f"density {f.density:.5f} (1 token in {1 / f.density:,.0f})" if f.density else "never active",
                      f"· mean when active {f.mean_act or 0:.2f} · max {f.max_act or 0:.2f}"
                      + (f" · {quantiles}" if quantiles else ""))
    if f.words:
        console.print("fires on words: " + ", ".join(f"{w} ({n})" for w, _, n in f.words))
    elif f.top_tokens:
        console.print("fires on tokens: " + ", ".join(f"{t} ({n})" for t, n in f.top_tokens))
    for c in f.contexts:
        line = Text(f"  {c.activation:6.2f}  ")
        before, token, after = c.shown()
        line.append(before.lstrip(), style="dim")
        line.append(token, style="bold reverse")
        line.append(after.rstrip(), style="dim")
        console.print(line)
    for line in f.output_lines():
        console.print(line)
