"""Morph's benchmarks: one command measures the product's figures and prints a table.

    python -m benchmarks [--quick] [--model M --sae S] [--only NAME,...] [--markdown] [--out PATH]

Every figure is a median over repeated runs (or a percentile over pooled samples) with its spread, and
every comparison is a ratio measured side by side in one process, so a busy machine shifts both sides
alike. Results go to `benchmarks/results.json`. One module per benchmark, each with `NAME` and
`run(ctx) -> list[Figure]`.
"""

from __future__ import annotations

BENCHMARKS = ("keystroke", "pause", "incremental", "overhead", "steer", "startup", "memory", "labels", "large", "serve")
