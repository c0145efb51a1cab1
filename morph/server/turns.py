"""Fair turns on the one model for the requests of several clients.

Every analysis request of the server runs in a thread of its own and calls `checkpoint()` between its
steps (morph.features.analysis: between stages and batches, and between layers). A request runs until its
next checkpoint; there, if another request is waiting, it hands the turn to the one waiting longest and
queues behind the others. So when one editor opens a long document (many batches) while another types, the
typist's block goes between two of the long analysis's batches instead of after all of them. A checkpoint
reached while the thread holds the model's lock (Lens.lock) (between the layers of a forward pass) never waits:
the request waiting could not run the model before that pass ends anyway, and waiting there would deadlock.

Several documents' padded analysis batches share passes (morph.features.analysis.shared_passes): each pass
takes one turn (`one_turn`), and a thread gives up its turn before it waits for a pass.

Steering takes turns the same way, a token step at a time (`taking_turns`), and so do `prepare` and
Neuronpedia's steered completions: a writer's keystroke waits for one step of another's rewrite, not for all
of it.
"""

from __future__ import annotations

import threading
from collections import deque
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")


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
        """The calling thread's request has ended, or it is about to wait for a pass shared with other requests
        (morph.features.analysis.shared_passes, which take turns of their own): its turn (or its place in the
        queue) goes."""
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


def taking_turns(turns: FairTurns, steps: Iterable[T]) -> Iterator[T]:
    """`steps`, each one computed in a turn of its own (a checkpoint before each), the turn given up at the end
    (or when the consumer stops early)."""
    try:
        it = iter(steps)
        while True:
            turns.checkpoint()
            try:
                item = next(it)
            except StopIteration:
                return
            yield item
    finally:
        turns.done()


@contextmanager
def one_turn(turns: FairTurns) -> Iterator[None]:
    """A request of one step (reading a selection ahead): it waits for its turn and gives it up after."""
    turns.checkpoint()
    try:
        yield
    finally:
        turns.done()
