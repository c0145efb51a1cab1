"""2. Pause to highlight, in the real editor.

Documents of 500, 2,000 and 8,000 tokens (prose, counted with the model's tokenizer). After the first
full analysis, a word is typed at the end of the document or at the end of a line in its middle; the
clock starts when the debounce fires (the pause is detected: `LiveAnalysis.start`), and stops at the end of
the first screen update after the view received highlights for the current text (the first delivery is
the partial result with the cursor's block computed first, so the edited paragraph is in it). The
debounce itself is reported separately (it is a setting). Each repeat waits for the previous analysis to
complete. The breakdown per run (engine: worker start -> focus block delivered; UI: message -> overlay
set; draw) is kept in the JSON details.
"""

from __future__ import annotations

import asyncio

from benchmarks.common import Context, Figure, figure, median, ratio_figure
from benchmarks.corpus import document_tokens
from benchmarks.editor import new_app, settled, wait_until

NAME = "pause"
SIZES = (500, 2000, 8000)
WORDS = [" quietly", " again", " below", " softly", " perhaps", " still", " outside", " tonight", " anyway"]


def _place(view, where: str) -> None:
    lines = view.text.split("\n")
    if where == "end":
        row = len(lines) - 1
        while row > 0 and not lines[row].strip():
            row -= 1
    else:
        row = len(lines) // 2
        while row < len(lines) - 1 and not lines[row].strip():
            row += 1
    view.move_cursor((row, len(lines[row])))
    view.scroll_cursor_visible(center=True)


async def _session(ctx: Context, text: str, reps: int, debounce_ms: int) -> dict:
    app = new_app(ctx, text, debounce_ms=debounce_ms)
    out: dict[str, list] = {"end": [], "middle": []}
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: settled(app), timeout=600)
        k = 0
        for rep in range(reps):
            for where in (("end", "middle") if rep % 2 == 0 else ("middle", "end")):
                _place(app.view, where)
                await pilot.pause(0.05)
                probe = app.probe
                probe.shown_highlights.clear()
                probe._pending_highlight = None
                fired_before = len(probe.fired)
                analyses_before = len(probe.analyses)
                await pilot.press(*WORDS[k % len(WORDS)])
                k += 1
                generation = app.generation
                await wait_until(pilot, lambda: any(g == generation for _, g in probe.shown_highlights), timeout=300)
                shown = next(t for t, g in probe.shown_highlights if g == generation)
                fired = [t for t, g in probe.fired[fired_before:] if g == generation]
                set_at = next(t for t, g, _ in probe.highlights if g == generation)
                runs = [a for a in probe.analyses[analyses_before:] if a["generation"] == generation]
                await wait_until(pilot, lambda: settled(app), timeout=600)
                if not fired:
                    continue
                run = runs[-1] if runs else None
                record = {"ms": (shown - fired[-1]) * 1000, "draw_ms": (shown - set_at) * 1000}
                if run is not None and run["first"] is not None:
                    record.update(worker_start_ms=(run["start"] - fired[-1]) * 1000,
                                  focus_block_ms=(run["first"] - run["start"]) * 1000,
                                  to_ui_ms=(set_at - run["first"]) * 1000,
                                  full_analysis_ms=((run["end"] or run["first"]) - run["start"]) * 1000,
                                  tokens=run["tokens"], computed_tokens=run["computed_tokens"])
                out[where].append(record)
    return out


def run(ctx: Context) -> list[Figure]:
    from morph.config import Settings

    reps = ctx.pick(11, 3, 1)  # 11: the 8,000 / 500 ratio of medians of 7 moved by ±0.2 between runs
    debounce = Settings().debounce_ms
    session_debounce = ctx.pick(debounce, 50, 20)  # the figure starts when the debounce fires either way
    results: dict[int, dict] = {}
    for size in SIZES:
        text = document_tokens(ctx.count_tokens, size, seed=size)
        results[size] = asyncio.run(_session(ctx, text, reps, session_debounce))
        results[size]["tokens"] = ctx.count_tokens(text)
    figures = [figure("debounce_ms", "debounce (setting; not in the figures below)", [debounce], unit="ms")]
    for where in ("end", "middle"):
        for size in SIZES:
            records = results[size][where]
            details = {key: round(median([r[key] for r in records if key in r]), 2)
                       for key in ("worker_start_ms", "focus_block_ms", "to_ui_ms", "draw_ms", "full_analysis_ms",
                                   "computed_tokens")}
            figures.append(figure(f"pause_to_highlight_{size}_{where}_ms",
                                  f"pause → highlight, {size:,} tokens, edit at {where}",
                                  [r["ms"] for r in records], unit="ms", target=("<", 150.0),
                                  document_tokens=results[size]["tokens"], breakdown_median_ms=details))
        big = [r["ms"] for r in results[SIZES[-1]][where]]
        small = [r["ms"] for r in results[SIZES[0]][where]]
        figures.append(ratio_figure(f"pause_{SIZES[-1]}_vs_{SIZES[0]}_{where}",
                                    f"pause → highlight {SIZES[-1]:,} / {SIZES[0]:,} tokens, {where}", big, small,
                                    median, target=("<=", 1.3)))
    for fig in figures:
        fig.benchmark = NAME
    return figures
