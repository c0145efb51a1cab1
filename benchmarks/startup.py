"""6. Start-up of a real editor process: spawn -> first paint, and spawn -> model ready.

Each run spawns a fresh interpreter on benchmarks/session.py (what `morph FILE` does, headless; see
there) with the spawn time passed in MORPH_BENCH_T0; the child reports seconds since spawn at the end of
its first screen update (rendered to terminal bytes), when EngineReady reaches the app, and when the
first analysis result arrives. The file is a 2,000-word document. Median over runs (the first run, with
cold file caches, is dropped as warm-up). The child may write Python's bytecode caches
(PYTHONDONTWRITEBYTECODE is dropped from its environment): an installed Morph has them, and without them
every start compiles Morph's own modules again (~0.3 s here).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import Context, Figure, figure
from benchmarks.corpus import document_words

NAME = "startup"
SESSION = Path(__file__).resolve().with_name("session.py")


def spawn(ctx: Context, mode: str, file: Path, extra: list[str] | None = None, timeout: float = 300) -> dict:
    argv = [sys.executable, str(SESSION), mode, str(file)]
    if ctx.model:
        argv += ["--model", ctx.model, "--sae", ctx.sae]
    argv += extra or []
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["MORPH_BENCH_T0"] = repr(time.time())
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout + 60,
                          cwd=tempfile.gettempdir())
    for line in proc.stdout.splitlines():
        if line.startswith("MORPH_BENCH "):
            return json.loads(line[len("MORPH_BENCH "):])
    raise RuntimeError(f"session failed (exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()[-400:]}")


def run(ctx: Context) -> list[Figure]:
    runs = ctx.pick(5, 2, 1)
    warmup = ctx.pick(1, 1, 0)
    with tempfile.TemporaryDirectory(prefix="morph-bench-start-") as tmp:
        file = Path(tmp) / "chapter.md"
        file.write_text(document_words(2000, seed=21))
        marks = [spawn(ctx, "startup", file) for _ in range(runs + warmup)][warmup:]
    bad = [m for m in marks if "timeout" in m]
    if bad:
        raise RuntimeError(f"the editor did not finish starting within the timeout: {bad[0]}")
    paint = figure("startup_first_paint_s", "start-up: spawn → first paint", [m["first_paint"] for m in marks],
                   unit="s", target=("<", 1.0), imports_s=[round(m["imported"], 3) for m in marks],
                   interpreter_s=[round(m["interpreter"], 3) for m in marks])
    ready = figure("startup_model_ready_s", "start-up: spawn → model ready", [m["model_ready"] for m in marks],
                   unit="s", target=("<", 5.0), model_load_s=[round(m["model_load_s"], 3) for m in marks])
    first = figure("startup_first_analysis_s", "start-up: spawn → first analysis drawn",
                   [m.get("first_highlights", m["first_analysis_done"]) for m in marks], unit="s")
    for fig in (paint, ready, first):
        fig.benchmark = NAME
    return [paint, ready, first]
