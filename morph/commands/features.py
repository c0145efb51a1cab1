"""`morph features [QUERY] [--id N] [--json]`: search the SAE's feature labels, or show one feature."""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from morph.cli import add_lens_arguments

    parser.add_argument("query", nargs="?", help="text to look for in the labels (substring, then fuzzy)")
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
        json.dump([{"id": f.id, "label": f.label, "density": f.density, "mean_act": f.mean_act, "max_act": f.max_act,
                    "top_tokens": [list(t) for t in f.top_tokens], "promoted": list(f.promoted)} for f in infos],
                  sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{engine.sae_name} · labels from {labels.source}", title_justify="left")
    for column in ("id", "label", "density", "max", "promotes", "fires on"):
        table.add_column(column)
    for f in infos:
        table.add_row(str(f.id), f.label, "—" if f.density is None else f"{f.density:.4f}",
                      "—" if f.max_act is None else f"{f.max_act:.2f}", " ".join(f.promoted[:6]),
                      " ".join(t for t, _ in f.top_tokens[:6]))
    Console().print(table)
    return 0
