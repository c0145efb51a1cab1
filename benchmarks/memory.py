"""7. Peak resident memory of an editing session on an 8,000-token document.

A fresh process (benchmarks/session.py, "memory" mode) opens the document, loads the model, analyses
it, types 100 characters (quick: 20) at the end with a pause after each word (so an analysis runs after
each), waits for the last analysis, and reports its own peak RSS (VmHWM: ru_maxrss would include the
benchmark process itself, which Linux carries across fork+exec). Median over runs.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.common import Context, Figure, figure
from benchmarks.corpus import document_tokens
from benchmarks.startup import spawn

NAME = "memory"


def run(ctx: Context) -> list[Figure]:
    runs = ctx.pick(3, 1, 1)
    typed = ctx.pick(100, 20, 4)
    text = document_tokens(ctx.count_tokens, 8000, seed=8)
    with tempfile.TemporaryDirectory(prefix="morph-bench-mem-") as tmp:
        file = Path(tmp) / "long.md"
        file.write_text(text)
        marks = [spawn(ctx, "memory", file, ["--type", str(typed)]) for _ in range(runs)]
    bad = [m for m in marks if "timeout" in m]
    if bad:
        raise RuntimeError(f"the editing session did not finish within the timeout: {bad[0]}")
    lens = ctx.load()
    weights_mb = (sum(p.numel() * p.element_size() for p in lens.model.parameters())
                  + sum(p.numel() * p.element_size() for p in lens.sae.parameters())) / 2**20
    fig = figure("memory_peak_rss_mb", "peak RSS, editing an 8,000-token document", [m["maxrss_mb"] for m in marks],
                 unit="MB", target=("<", 1500), document_tokens=ctx.count_tokens(text), typed_chars=typed,
                 weights_mb_in_memory=round(weights_mb, 1))
    fig.benchmark = NAME
    return [fig]
