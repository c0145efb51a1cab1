"""1. Keystroke latency in the real editor, live analysis on and off, interleaved in one app.

A 5,000-word document; the cursor at the end of a line in the middle; characters typed one Key event at
a time at a steady pace. Blocks of keystrokes alternate on/off in the order on, off, off, on, on, off, ...
(ABBA, so a slow drift of the machine hits both alike); F7's action switches live analysis, as the writer
would. With analysis on the debounce is short (20 ms), so an analysis starts after nearly every keystroke
and runs in its worker thread while the next keys arrive: the worst case for the UI thread. With it off,
the highlights are cleared (F7 pauses them) and no analysis runs; an "off" block starts only once the
last analysis has finished.

Per keystroke: from the Key event's dispatch in the app to the end of the first screen update that
includes its edit (see benchmarks/editor.py). Figures: p50/p95/p99 over all keystrokes of each condition
(bootstrap 95% interval) and p99(on) / p99(off). For reference, the same typing into Textual's stock
TextArea (soft wrap, same size and text; no Morph code) in the same process: the floor Textual sets.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time

from benchmarks.common import Context, Figure, percentile, pooled, ratio_figure
from benchmarks.corpus import document_words
from benchmarks.editor import StockApp, analysis_busy, new_app, settled, wait_until

NAME = "keystroke"
TYPED = ("and then, without a word to anyone, she folded the letter twice and set it on the windowsill "
         "where the light was best; ")
SIZE = (120, 40)


def _gc_freeze() -> None:
    """MORPH_BENCH_GC_FREEZE=1 emulates a proposed fix: gc.freeze() once the model is loaded, so the
    cyclic collector's full passes stop scanning the ~0.5 M long-lived objects of torch/transformers."""
    if os.environ.get("MORPH_BENCH_GC_FREEZE") == "1":
        gc.collect()
        gc.freeze()


def _middle(view) -> None:
    lines = view.text.split("\n")
    row = len(lines) // 2
    while row < len(lines) - 1 and not lines[row].strip():
        row += 1
    view.move_cursor((row, len(lines[row])))
    view.scroll_cursor_visible(center=True)


async def _type(pilot, app, stream: str, pos: int, count: int, pace_s: float, out: list[float],
                busy: list[bool] | None = None) -> int:
    """Type `count` characters of `stream` from `pos`, one key at a time; latencies (ms) go to `out`."""
    for _ in range(count):
        slot_start = time.perf_counter()
        await pilot.press(stream[pos % len(stream)])
        pos += 1
        last = app.probe.keys[-1] if app.probe.keys else None
        await wait_until(pilot, lambda: last is None or last.shown is not None, timeout=60, step=0.001)
        if last is not None and last.latency_ms is not None:
            out.append(last.latency_ms)
            if busy is not None:
                busy.append(bool(getattr(app, "workers", None)) and analysis_busy(app))
        rest = pace_s - (time.perf_counter() - slot_start)
        if rest > 0:
            await asyncio.sleep(rest)
    return pos


async def _morph_session(ctx: Context, text: str, chars: int, block: int, pace_s: float, debounce_ms: int,
                         warmup: int) -> dict:
    app = new_app(ctx, text, debounce_ms=debounce_ms)
    samples: dict[str, list[float]] = {"on": [], "off": []}
    busy: dict[str, list[bool]] = {"on": [], "off": []}
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: settled(app), timeout=600)
        _gc_freeze()
        _middle(app.view)
        await pilot.pause(0.05)
        pos = await _type(pilot, app, TYPED, 0, warmup, pace_s, [])  # warm caches; not counted
        n_blocks = max(2, -(-chars // block))
        typed = 0
        for index in range(n_blocks):
            condition = "on" if (index % 4) in (0, 3) else "off"
            await wait_until(pilot, lambda: settled(app) or not app.analysis_enabled, timeout=600)
            if app.analysis_enabled != (condition == "on"):
                app.action_toggle_analysis()
            if condition == "on":
                await wait_until(pilot, lambda: settled(app), timeout=600)
            else:
                await wait_until(pilot, lambda: not analysis_busy(app), timeout=600)
            count = min(block, chars - typed)
            if count <= 0:
                break
            app.probe.keys.clear()
            pos = await _type(pilot, app, TYPED, pos, count, pace_s, samples[condition], busy[condition])
            typed += count
        analyses = [a for a in app.probe.analyses if a["end"] is not None]
    return {"samples": samples, "busy": busy, "analyses": len(analyses)}


async def _stock_session(text: str, chars: int, pace_s: float, warmup: int) -> list[float]:
    app = StockApp(text)
    out: list[float] = []
    async with app.run_test(size=SIZE) as pilot:
        _middle(app.view)
        await pilot.pause(0.05)
        pos = await _type(pilot, app, TYPED, 0, warmup, pace_s, [])
        await _type(pilot, app, TYPED, pos, chars, pace_s, out)
    return out


def run(ctx: Context) -> list[Figure]:
    params = ctx.pick(full=dict(chars=500, block=50, pace_s=0.06, debounce_ms=20, warmup=10),
                      quick=dict(chars=60, block=15, pace_s=0.06, debounce_ms=20, warmup=5),
                      smoke=dict(chars=6, block=3, pace_s=0.0, debounce_ms=20, warmup=1))
    stock_chars = ctx.pick(150, 30, 3)
    words = ctx.pick(5000, 5000, 300)
    text = document_words(words, seed=11)
    result = asyncio.run(_morph_session(ctx, text, **params))
    stock = asyncio.run(_stock_session(text, stock_chars, params["pace_s"], params["warmup"]))
    on, off = result["samples"]["on"], result["samples"]["off"]
    common = dict(document_words=words, document_tokens=ctx.count_tokens(text), pace_ms=params["pace_s"] * 1000,
                  debounce_ms=params["debounce_ms"], analyses_completed=result["analyses"], screen=list(SIZE),
                  gc_freeze=os.environ.get("MORPH_BENCH_GC_FREEZE") == "1")
    figures = []
    for condition, values in (("off", off), ("on", on)):
        flags = result["busy"][condition]
        share = sum(flags) / max(1, len(flags))
        for q in (50, 95, 99):
            target = ("<", 16.0) if q == 50 else None
            figures.append(pooled(f"keystroke_p{q}_{condition}_ms", f"keystroke p{q}, analysis {condition}", values,
                                  q, unit="ms", target=target, seed=q, keystrokes=len(values),
                                  analysis_running_share=round(share, 3), **common))
    figures.append(ratio_figure("keystroke_p99_ratio", "keystroke p99 on / off", on, off,
                                lambda xs: percentile(xs, 99), target=("<=", 1.2), **common))
    for q in (50, 99):
        figures.append(pooled(f"keystroke_p{q}_stock_textarea_ms", f"keystroke p{q}, stock Textual TextArea (ref.)",
                              stock, q, unit="ms", seed=q, keystrokes=len(stock), **common))
    for fig in figures:
        fig.benchmark = NAME
    return figures
