"""`morph features`."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    from morph.errors import InputError

    raise InputError("`morph features` is not built yet")
