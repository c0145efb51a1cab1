"""3. Incremental against from-scratch analysis, engine level, side by side in one process.

An 8,000-token document (quick: 2,000) is analysed once. Then, repeatedly: one word somewhere in the
middle half is replaced by another; the warm analyzer re-analyses the edited text (incremental), and a
fresh Analyzer (empty cache, same lens and configuration) analyses the same text from scratch. The order
of the two alternates between repeats. Figure: incremental time / from-scratch time, median over repeats.
"""

from __future__ import annotations

import random
import re
import time

from benchmarks.common import Context, Figure, figure
from benchmarks.corpus import document_tokens

NAME = "incremental"
REPLACEMENTS = ["crimson", "harbour", "patience", "elaborate", "whispered", "tomorrow", "lantern", "seventeen"]


def run(ctx: Context) -> list[Figure]:
    from morph.features.analysis import Analyzer

    lens = ctx.load()
    config = ctx.analysis_config()
    size = ctx.pick(8000, 2000, 500)
    reps = ctx.pick(11, 5, 2)
    text = document_tokens(ctx.count_tokens, size, seed=3)
    warm = Analyzer(lens, config)
    warm.analyze(text)
    rng = random.Random(5)
    ratios, inc_ms, scratch_ms, fractions, blocks = [], [], [], [], []
    for rep in range(reps):
        words = [m for m in re.finditer(r"[A-Za-z]{4,}", text) if len(text) // 4 < m.start() < 3 * len(text) // 4]
        m = rng.choice(words)
        new_word = REPLACEMENTS[rep % len(REPLACEMENTS)]
        if new_word == m.group(0):
            new_word = new_word + "s"
        text = text[: m.start()] + new_word + text[m.end():]
        timings = {}
        order = ("inc", "scratch") if rep % 2 == 0 else ("scratch", "inc")
        for which in order:
            analyzer = warm if which == "inc" else Analyzer(lens, config)
            t0 = time.perf_counter()
            result = analyzer.analyze(text)
            timings[which] = time.perf_counter() - t0
            if which == "inc":
                fractions.append(result.stats.computed_tokens / max(1, result.stats.total_tokens))
                blocks.append(result.stats.computed_blocks)
                total_blocks = result.stats.computed_blocks + result.stats.reused_blocks
        ratios.append(timings["inc"] / timings["scratch"])
        inc_ms.append(timings["inc"] * 1000)
        scratch_ms.append(timings["scratch"] * 1000)
    fig = figure("incremental_vs_scratch", "re-analysis after a one-word edit / from scratch", ratios, unit="×",
                 document_tokens=ctx.count_tokens(text), incremental_ms=sorted(inc_ms), scratch_ms=sorted(scratch_ms),
                 computed_token_fraction=sorted(round(f, 4) for f in fractions), computed_blocks=sorted(blocks),
                 total_blocks=total_blocks)
    fig.benchmark = NAME
    ms = figure("incremental_ms", "re-analysis after a one-word edit", inc_ms, unit="ms",
                document_tokens=ctx.count_tokens(text))
    ms.benchmark = NAME
    return [fig, ms]
