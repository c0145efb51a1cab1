"""Input first: background analysis steps aside while the foreground handles the writer's input.

The analysis runs in a thread of the editor's process. While it computes, a keystroke handled at the same
moment took two to three times as long: the two threads take turns on the interpreter lock at every
numpy call and event-loop turn of the UI, and the model's kernels compete with the UI for the cores'
caches and memory bandwidth (pure Python work ran ~20% slower beside a model forward in another process).
Python has no thread priorities, so the analysis yields on its own: the UI calls `input_arrived()` as
each input event arrives, and the analysis calls `checkpoint()` between layers, SAE steps and stages,
which sleeps (releasing the lock) until `hold_s` after the latest input. A keystroke that edits cancels
the analysis anyway; one that does not (a cursor move) delays it by at most `hold_s`.
"""

from __future__ import annotations

import time

HOLD_S = 0.015  # about the p99 of a keystroke's handling and drawing with analysis off
MAX_WAIT_S = 0.25  # a stream of input (a held key) may delay a checkpoint, never stall it


class InputPriority:
    """Shared by the UI thread (which marks input) and analysis threads (which pause at checkpoints)."""

    def __init__(self, hold_s: float = HOLD_S, max_wait_s: float = MAX_WAIT_S) -> None:
        self.hold_s = hold_s
        self.max_wait_s = max_wait_s
        self._until = 0.0  # a float written by one thread and read by others: no lock needed
        self.waited_s = 0.0  # total time checkpoints slept (for diagnostics and tests)

    def input_arrived(self) -> None:
        self._until = time.perf_counter() + self.hold_s

    def remaining(self) -> float:
        """Seconds until the hold of the latest input ends (0 when no input is being handled)."""
        return max(0.0, self._until - time.perf_counter())

    def checkpoint(self) -> None:
        """Sleep while input is being handled (at most `max_wait_s`)."""
        start = now = time.perf_counter()
        while (left := min(self._until, start + self.max_wait_s) - now) > 0:
            time.sleep(left)
            now = time.perf_counter()
        self.waited_s += now - start
