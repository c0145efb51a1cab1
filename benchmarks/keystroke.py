"""1. Keystroke latency in the real editor, live analysis on and off, interleaved in one app.

A 5,000-word document; the cursor at the end of a line in the middle; text typed one Key event at a time
with a writer's rhythm: a key every 60 ms, and after each word a pause just longer than the debounce
(default setting, 300 ms), so that with analysis on an analysis starts after every word and runs in its
worker thread, and its results reach the UI, while the next word is being typed: the collisions are the
point. Blocks of 50 characters alternate on/off in the order on, off, off, on, on, off, ... (ABBA, so a
slow drift of the machine hits both alike), 500 characters per condition; F7's action switches live
analysis, as the writer would (off: highlights cleared, no analysis). A block starts once the previous
analysis has finished.

Per keystroke: from the Key event's dispatch in the app to the end of the first screen update that
includes its edit (see benchmarks/editor.py). Figures: p50/p95/p99 over all keystrokes of each condition
(bootstrap 95% interval) and p99(on) / p99(off). For reference, the same typing into Textual's stock
TextArea (soft wrap, same size and text; no Morph code) in the same process: the floor Textual sets.
The JSON details also give the share of "on" keystrokes that overlapped a running analysis and the UI
thread's time per analysis result (highlights + panel).
"""

from __future__ import annotations

import asyncio
import gc
import time

from benchmarks.common import Context, Figure, median, percentile, pooled, ratio_figure
from benchmarks.corpus import document_words
from benchmarks.editor import StockApp, analysis_busy, new_app, settled, wait_until

NAME = "keystroke"
TYPED = ("and then, without a word to anyone, she folded the letter twice and set it on the windowsill "
         "where the light was best; ")
SIZE = (120, 40)
TIMEOUT = 120


class GcWatch:
    """Full (generation 2) collections of the cyclic GC, timed: they stop every thread, the UI's too."""

    def __init__(self) -> None:
        self.full: list[tuple[float, float]] = []
        self._start = 0.0

    def __enter__(self) -> "GcWatch":
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.full.append((self._start, time.perf_counter()))

    def summary(self, keys: list) -> dict:
        slow = sorted(keys, key=lambda k: k.latency_ms or 0)[-max(1, len(keys) // 20):]  # the slowest 5%
        hit = sum(any(a < k.shown and b > k.dispatch for a, b in self.full) for k in slow)
        return {"full_collections": len(self.full),
                "full_collection_ms": round(median([(b - a) * 1000 for a, b in self.full]), 1) if self.full else None,
                "slowest_5pct_during_full_collection": f"{hit}/{len(slow)}",
                "tracked_objects": len(gc.get_objects())}


def _middle(view) -> None:
    lines = view.text.split("\n")
    row = len(lines) // 2
    while row < len(lines) - 1 and not lines[row].strip():
        row += 1
    view.move_cursor((row, len(lines[row])))
    view.scroll_cursor_visible(center=True)


async def _type(pilot, app, stream: str, pos: int, count: int, pace_s: float, word_pause_s: float,
                out: list[float], keys: list | None = None) -> int:
    """Type `count` characters of `stream` from `pos`, one key at a time; latencies (ms) go to `out`."""
    for _ in range(count):
        slot_start = time.perf_counter()
        char = stream[pos % len(stream)]
        await pilot.press(char)
        pos += 1
        last = app.probe.keys[-1] if app.probe.keys else None
        await wait_until(pilot, lambda: last is None or last.shown is not None, timeout=60, step=0.001)
        if last is not None and last.latency_ms is not None:
            out.append(last.latency_ms)
            if keys is not None:
                keys.append(last)
        rest = (word_pause_s if char == " " else pace_s) - (time.perf_counter() - slot_start)
        if rest > 0:
            await asyncio.sleep(rest)
    return pos


async def _morph_session(ctx: Context, text: str, chars: int, block: int, pace_s: float, word_pause_s: float,
                         warmup: int) -> dict:
    app = new_app(ctx, text)
    watch = GcWatch()
    samples: dict[str, list[float]] = {"on": [], "off": []}
    keys: dict[str, list] = {"on": [], "off": []}
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: settled(app), timeout=TIMEOUT)
        _middle(app.view)
        await pilot.pause(0.05)
        pos = await _type(pilot, app, TYPED, 0, warmup, pace_s, word_pause_s, [])  # warm caches; not counted
        watch.__enter__()
        n_blocks = 2 * max(1, -(-chars // block))
        typed = {"on": 0, "off": 0}
        for index in range(n_blocks):
            condition = "on" if (index % 4) in (0, 3) else "off"
            await wait_until(pilot, lambda: settled(app) or not app.analysis_enabled, timeout=TIMEOUT)
            if app.analysis_enabled != (condition == "on"):
                app.action_toggle_analysis()
            if condition == "on":
                await wait_until(pilot, lambda: settled(app), timeout=TIMEOUT)
            else:
                await wait_until(pilot, lambda: not analysis_busy(app), timeout=TIMEOUT)
            count = min(block, chars - typed[condition])
            if count <= 0:
                continue
            app.probe.keys.clear()
            pos = await _type(pilot, app, TYPED, pos, count, pace_s, word_pause_s, samples[condition],
                              keys[condition])
            typed[condition] += count
        # leave only once the last analysis is drawn (a result arriving during shutdown is not our subject)
        await wait_until(pilot, lambda: settled(app) or not app.analysis_enabled, timeout=TIMEOUT)
        watch.__exit__()
        analyses = [a for a in app.probe.analyses if a["end"] is not None]
        ui = app.probe.ui_costs
    per_call: dict[str, list[float]] = {}
    for name, start, end in ui:
        per_call.setdefault(name, []).append((end - start) * 1000)

    def overlaps(intervals) -> dict[str, float]:
        return {c: round(sum(any(a < k.shown and b > k.dispatch for a, b in intervals) for k in ks) / max(1, len(ks)), 3)
                for c, ks in keys.items()}

    return {"samples": samples, "analyses": len(analyses), "gc": watch.summary(keys["on"] + keys["off"]),
            "stages": {c: app.keystroke_breakdown(ks) for c, ks in keys.items()},
            "ui_ms": {name: round(median(v), 2) for name, v in per_call.items()},
            "with_analysis_running": overlaps([(a["start"], a["end"]) for a in analyses]),
            "with_result_drawn": overlaps([(start, end) for name, start, end in ui if name == "refresh_highlights"])}


async def _stock_session(text: str, chars: int, pace_s: float, word_pause_s: float, warmup: int) -> tuple[list, dict]:
    app = StockApp(text)
    out: list[float] = []
    keys: list = []
    async with app.run_test(size=SIZE) as pilot:
        _middle(app.view)
        await pilot.pause(0.05)
        pos = await _type(pilot, app, TYPED, 0, warmup, pace_s, word_pause_s, [])
        with GcWatch() as watch:
            await _type(pilot, app, TYPED, pos, chars, pace_s, word_pause_s, out, keys)
    return out, {**watch.summary(keys), "stages": app.keystroke_breakdown(keys)}


def run(ctx: Context) -> list[Figure]:
    from morph.config import Settings

    debounce_s = Settings().debounce_ms / 1000
    word_pause_s = debounce_s + 0.06
    params = ctx.pick(full=dict(chars=500, block=50, warmup=10),
                      quick=dict(chars=60, block=15, warmup=5),
                      smoke=dict(chars=4, block=2, warmup=1))
    pace_s = ctx.pick(0.06, 0.06, 0.0)
    stock_chars = ctx.pick(150, 30, 3)
    words = ctx.pick(5000, 5000, 300)
    text = document_words(words, seed=11)
    result = asyncio.run(_morph_session(ctx, text, pace_s=pace_s, word_pause_s=word_pause_s, **params))
    stock, stock_gc = asyncio.run(_stock_session(text, stock_chars, pace_s, word_pause_s, params["warmup"]))
    on, off = result["samples"]["on"], result["samples"]["off"]
    common = dict(document_words=words, document_tokens=ctx.count_tokens(text), pace_ms=pace_s * 1000,
                  word_pause_ms=round(word_pause_s * 1000), debounce_ms=round(debounce_s * 1000),
                  analyses_completed=result["analyses"], ui_ms_per_call=result["ui_ms"], screen=list(SIZE),
                  gc_full_collections=result["gc"])
    figures = []
    for condition, values in (("off", off), ("on", on)):
        for q in (50, 95, 99):
            target = ("<", 16.0) if q == 50 else None
            figures.append(pooled(f"keystroke_p{q}_{condition}_ms", f"keystroke p{q}, analysis {condition}", values,
                                  q, unit="ms", target=target, seed=q, keystrokes=len(values),
                                  stages_median_ms=result["stages"][condition],
                                  share_with_analysis_running=result["with_analysis_running"][condition],
                                  share_with_result_drawn=result["with_result_drawn"][condition], **common))
    figures.append(ratio_figure("keystroke_p99_ratio", "keystroke p99 on / off", on, off,
                                lambda xs: percentile(xs, 99), target=("<=", 1.2), **common))
    for q in (50, 99):
        figures.append(pooled(f"keystroke_p{q}_stock_textarea_ms", f"keystroke p{q}, stock Textual TextArea (ref.)",
                              stock, q, unit="ms", seed=q, keystrokes=len(stock), stock_gc=stock_gc))
    for fig in figures:
        fig.benchmark = NAME
    return figures
