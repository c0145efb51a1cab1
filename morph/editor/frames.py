"""Frame pacing: the screen's update timer, without Textual's extra frame of delay after an idle spell.

Textual draws the screen from a repeating timer on a fixed grid of slots (1 / TEXTUAL_FPS apart) that
pauses while nothing needs drawing. When it wakes late (a keystroke after a pause, an analysis result),
`Timer._run` catches up with `count = int((now - start) / interval + 1)` and then waits for slot
`count + 1`: not the next slot but the one after it. The next keystroke after any off-grid frame (a
result, a blinking cursor) then waits up to two frame periods instead of one. FrameTimer resumes on the
next slot; PacedScreen is a Screen that draws on a FrameTimer.
"""

from __future__ import annotations

from textual import _time
from textual._time import sleep
from textual.screen import UPDATE_PERIOD, Screen
from textual.timer import EventTargetGone, Timer


# Textual internals this module relies on (tests/test_textual_internals.py): Timer's loop and its state,
# the Screen's update-timer property, and the private module textual._time.
TIMER_INTERNALS = ("_run", "_repeat", "_interval", "_active", "_skip", "_reset", "_tick", "_start")
SCREEN_INTERNALS = ("_update_timer", "_on_timer_update", "_timers")


def next_slot(start: float, now: float, interval: float) -> int:
    """The index of the first slot (start + index * interval) strictly after `now`, minus one: the
    `count` from which the timer's loop computes its next wake-up, start + (count + 1) * interval."""
    return int((now - start) // interval)


class FrameTimer(Timer):
    """A Timer that, after running late, wakes on the next slot of its grid (Textual's wakes a slot later)."""

    async def _run(self) -> None:
        # Textual's Timer._run (textual 8.2), with the catch-up arithmetic of next_slot.
        count = 0
        _repeat = self._repeat
        _interval = self._interval
        self._active  # noqa: B018 - create the Event in this thread, as Textual does
        await self._active.wait()
        start = _time.get_time()
        while _repeat is None or count <= _repeat:
            next_timer = start + ((count + 1) * _interval)
            now = _time.get_time()
            if self._skip and next_timer < now:
                count = next_slot(start, now, _interval)
                continue
            await sleep(max(0, next_timer - _time.get_time()))
            count += 1
            await self._active.wait()
            if self._reset:
                start = _time.get_time()
                count = 0
                self._reset = False
                continue
            try:
                await self._tick(next_timer=next_timer, count=count)
            except EventTargetGone:
                break


class PacedScreen(Screen):
    """The editor's main screen: Textual's Screen, updated by a FrameTimer."""

    _frame_timer: FrameTimer | None = None

    @property
    def _update_timer(self) -> Timer:  # Screen reads its update timer only through this property
        if self._frame_timer is None:
            self._frame_timer = FrameTimer(self, UPDATE_PERIOD, name="screen_update",
                                           callback=self._on_timer_update, pause=True)
            self._frame_timer._start()
            self._timers.add(self._frame_timer)
        return self._frame_timer
