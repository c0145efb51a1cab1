"""The Textual UI. Only this package imports Textual; it reaches the engine through morph.features."""

import os

# Textual draws at most TEXTUAL_FPS frames a second, and after a frame drawn off its schedule (an analysis
# result arriving from the worker) its timer waits for the slot after next: at the default 60, a
# keystroke typed just after a result waited 17 to 33 ms for its frame (benchmarks: the p99 of keystrokes
# with analysis on, 41 ms against 18 ms with it off). At 120 that wait halves. Read when Textual is first
# imported, so it is set here, before any module of this package imports Textual; the user's own wins.
os.environ.setdefault("TEXTUAL_FPS", "120")
