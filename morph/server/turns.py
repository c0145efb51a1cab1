"""Fair turns on the one model for the requests of several clients.

Every analysis request of the server runs in a thread of its own and calls `checkpoint()` between its
steps (morph.features.analysis: between stages and batches, and between layers). A request runs until its
next checkpoint; there, if another request is waiting, it hands the turn to the one waiting longest and
queues behind the others. So when one editor opens a long document (many batches) while another types, the
typist's block goes between two of the long analysis's batches instead of after all of them. A checkpoint
reached while the thread holds the model's lock (Lens.lock) (between the layers of a forward pass) never waits:
the request waiting could not run the model before that pass ends anyway, and waiting there would deadlock.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Callable


class FairTurns:
    def __init__(self, holds_model: Callable[[], bool] = lambda: False) -> None:
        self._cond = threading.Condition()
        self._waiting: deque[int] = deque()  # thread idents, in arrival order
        self._running: int | None = None
        self._holds_model = holds_model

    def checkpoint(self) -> None:
        me = threading.get_ident()
        with self._cond:
            if self._running == me and not self._waiting:
                return
            if self._holds_model():
                return
            if self._running == me:
                self._running = None
            self._waiting.append(me)
            self._cond.notify_all()
            while not (self._running is None and self._waiting[0] == me):
                self._cond.wait()
            self._waiting.popleft()
            self._running = me

    def done(self) -> None:
        """The calling thread's request has ended: its turn (or its place in the queue) goes."""
        me = threading.get_ident()
        with self._cond:
            if self._running == me:
                self._running = None
            if me in self._waiting:
                self._waiting.remove(me)
            self._cond.notify_all()


def owns(lock: object) -> Callable[[], bool]:
    """Whether the calling thread holds re-entrant `lock` (threading.RLock), where the runtime says."""
    is_owned = getattr(lock, "_is_owned", None)
    return (lambda: bool(is_owned())) if callable(is_owned) else (lambda: True)
