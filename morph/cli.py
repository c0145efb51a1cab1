"""The `morph` command: edit (default), analyze, steer, features, labels, models, train, serve.

Each subcommand lives in `morph.commands.<name>` with `add_arguments(parser)` and `run(args) -> int`;
they are imported only when chosen, so `morph --help` and the editor start without torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "edit": "open the editor (the default)",
    "analyze": "print the features a file activates",
    "steer": "rewrite a span of a file steered toward or away from a feature",
    "features": "search and inspect the SAE's features",
    "labels": "fetch the SAE's feature labels (Neuronpedia's explanations) into the cache",
    "models": "list the default model and the presets",
    "train": "train the tokenizer, model, SAE and labels on a folder of text",
    "serve": "serve the engine over HTTP for editors elsewhere (and Neuronpedia clients)",
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"morph: {message}", file=sys.stderr)
        raise SystemExit(2)


def add_lens_arguments(parser: argparse.ArgumentParser, remote: bool = True) -> None:
    parser.add_argument("--model", help="Hugging Face model id or folder, or a preset name (see `morph models`)")
    parser.add_argument("--sae", help="SAE folder, or RELEASE:SAE_ID from SAE-Lens's registry, or HF_REPO:PATH")
    parser.add_argument("--device", default=None, help="auto (cuda, mps, cpu), cpu, cuda or mps")
    if remote:
        parser.add_argument("--server", metavar="URL",
                            help="use the engine of `morph serve` at URL instead of loading a model here")
        parser.add_argument("--secret-key", help="the server's secret key (default: $MORPH_SECRET_KEY)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="morph", description="A writing editor that shows what a language model sees in your prose.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    for name, help_text in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        _module(name).add_arguments(command)
    return parser


def _module(name: str):
    return importlib.import_module(f"morph.commands.{name}")


def main(argv: list[str] | None = None) -> int:
    from morph.errors import MorphError

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv.insert(0, "edit")
    args = build_parser().parse_args(argv)
    try:
        return int(_module(args.command).run(args) or 0)
    except MorphError as err:
        print(f"morph: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("morph: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
