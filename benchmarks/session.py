"""A real editor process for the start-up and memory benchmarks; run as a script in a fresh interpreter:

    MORPH_BENCH_T0=<time.time() at spawn> python benchmarks/session.py MODE FILE [--model M --sae S] [--type N]

It does what `morph FILE` does (settings, read the file, the engine factory of `morph.commands.edit`,
MorphApp), with the headless driver, and prints one JSON line: seconds since spawn at first paint, at
model ready, at the first highlights; and its peak RSS. MODE "startup" exits once the first analysis is
drawn; MODE "memory" then types N characters (an analysis runs after each word) and waits for the last
analysis before reporting. Kept free of imports from `benchmarks` so that its start-up is the editor's.
"""

from __future__ import annotations

import os
import time

T0 = float(os.environ.get("MORPH_BENCH_T0", time.time()))


def since() -> float:
    return time.time() - T0


MARKS: dict[str, float] = {"interpreter": since()}


def peak_rss_mb() -> float:
    """This process's peak resident set. VmHWM (Linux) belongs to the process's own memory map; ru_maxrss
    is not trustworthy here: Linux carries it across fork+exec, so a child spawned by a large parent
    reports the parent's size."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    import argparse
    import json

    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("startup", "memory"))
    parser.add_argument("file")
    parser.add_argument("--model")
    parser.add_argument("--sae")
    parser.add_argument("--type", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()

    from morph.commands.edit import local_engine_factory
    from morph.config import load_settings
    from morph.editor.app import MorphApp
    from morph.editor.messages import EngineReady
    from morph.models.lens import LensSpec
    from morph.textio import read_document

    MARKS["imported"] = since()
    settings = load_settings()
    loaded = read_document(args.file, max_bytes=settings.max_file_bytes)
    spec = LensSpec(model=args.model, sae=args.sae, device="cpu")
    factory = local_engine_factory(spec)

    class SessionApp(MorphApp):
        def _display(self, screen, renderable) -> None:
            super()._display(screen, renderable)
            if renderable is not None and not self._batch_count and "first_paint" not in MARKS:
                from textual._compositor import CompositorUpdate

                if isinstance(renderable, CompositorUpdate):
                    renderable.render_segments(self.console)  # what a terminal run would write
                MARKS["first_paint"] = since()

        def on_engine_ready(self, message: EngineReady) -> None:  # before MorphApp's handler
            MARKS["model_ready"] = since()
            MARKS["model_load_s"] = message.seconds

        def on_analysis_ready(self, message) -> None:  # before MorphApp's handler
            if "first_highlights" not in MARKS and message.analysis.generation == self.generation:
                MARKS["first_highlights"] = since()

        def on_mount(self) -> None:  # before MorphApp's handler
            if args.mode == "startup":
                self.set_interval(0.01, self._startup_check)

        def _startup_check(self) -> None:
            if "first_paint" in MARKS and analysed():
                MARKS["first_analysis_done"] = since()
                self.exit()
            elif since() > args.timeout:
                MARKS["timeout"] = since()
                self.exit()

    try:
        app = SessionApp(str(loaded.path), loaded.text, settings, factory, "", loaded)
    except TypeError:  # an older MorphApp without `loaded`
        app = SessionApp(str(loaded.path), loaded.text, settings, factory, "")

    def analysed() -> bool:
        a = app.analysis
        return a is not None and a.generation == app.generation and a.stats.complete

    async def drive(pilot) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        deadline = loop.time() + args.timeout

        async def until(cond) -> None:
            while not cond():
                if loop.time() > deadline:
                    MARKS["timeout"] = since()
                    return
                await asyncio.sleep(0.01)

        await until(lambda: "first_paint" in MARKS and analysed())
        MARKS["first_analysis_done"] = since()
        if args.mode == "memory" and args.type:
            view = app.view
            view.move_cursor((view.document.line_count - 1, 0))
            typed = "and then the lamps were lit along the harbour, one by one, as the fog came in. " * 10
            for ch in typed[: args.type]:
                await pilot.press(ch)
                await asyncio.sleep(0.03 if ch != " " else app.settings.debounce_ms / 1000 + 0.05)
            await until(analysed)
            MARKS["typed"] = args.type
        app.exit()

    import asyncio

    async def run() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await drive(pilot)

    if args.mode == "startup":
        app.run(headless=True, size=(120, 40))  # Textual's own run loop, as `morph` runs it, minus the terminal
    else:
        asyncio.run(run())
    MARKS["maxrss_mb"] = peak_rss_mb()
    print("MORPH_BENCH " + json.dumps(MARKS), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
