"""Batching of concurrent calls: calls that arrive while a batch runs wait, and run together as the next batch.

A server answering several clients at once calls the engine from several threads. `Batcher(run)` turns
concurrent single calls into calls of `run(items) -> results` (one result per item, in order):

- a call made while no batch runs starts one at once with what is queued (alone: just itself), so a lone
  client never waits for a batching window;
- calls made while a batch runs queue; when it ends, one of their threads runs the queue as the next batch
  (at most `max_items` items, and `cost(items) <= max_cost` where given, at least one item);
- each caller gets its own item's result, or the exception the batch raised.

So under load one forward pass serves many callers, and the batches grow with the load.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass
class _Slot(Generic[In, Out]):
    item: In
    done: bool = False
    result: Out | None = None
    error: BaseException | None = None


@dataclass
class BatchStats:
    batches: int = 0
    items: int = 0
    largest: int = 0
    sizes: list[int] = field(default_factory=list)
    """The sizes of the last batches (at most 100)."""


class Batcher(Generic[In, Out]):
    def __init__(self, run: Callable[[list[In]], list[Out]], max_items: int = 16,
                 cost: Callable[[list[In]], int] = len, max_cost: int | None = None) -> None:
        self._run = run
        self._max_items = max(1, max_items)
        self._cost = cost
        self._max_cost = max_cost
        self._cond = threading.Condition()
        self._queue: list[_Slot[In, Out]] = []
        self._running = False
        self.stats = BatchStats()

    def __call__(self, item: In) -> Out:
        slot: _Slot[In, Out] = _Slot(item)
        with self._cond:
            self._queue.append(slot)
            while not slot.done:
                if self._running:
                    self._cond.wait()
                    continue
                batch = self._take()
                self._running = True
                self._cond.release()
                try:
                    self._run_batch(batch)
                finally:
                    self._cond.acquire()
                    self._running = False
                    self._cond.notify_all()
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

    def _take(self) -> list[_Slot[In, Out]]:
        """The queue's head: as many slots as the limits allow, at least one."""
        n = 1
        while n < min(self._max_items, len(self._queue)) and (
                self._max_cost is None or self._cost([slot.item for slot in self._queue[:n + 1]]) <= self._max_cost):
            n += 1
        batch, self._queue[:n] = self._queue[:n], []
        self.stats.batches += 1
        self.stats.items += n
        self.stats.largest = max(self.stats.largest, n)
        self.stats.sizes = [*self.stats.sizes[-99:], n]
        return batch

    def _run_batch(self, batch: list[_Slot[In, Out]]) -> None:
        try:
            results = self._run([slot.item for slot in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} gave {len(results)} results")
        except BaseException as err:  # noqa: BLE001 - every caller of the batch gets the error
            for slot in batch:
                slot.error, slot.done = err, True
            return
        for slot, result in zip(batch, results):
            slot.result, slot.done = result, True
