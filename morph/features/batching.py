"""Batching of concurrent calls: calls that arrive while a batch runs wait, and run together as the next batch.

A server answering several clients at once calls the engine from several threads. `Batcher(run)` turns
concurrent single calls into calls of `run(items) -> results` (one result per item, in order):

- a call made while no batch runs starts one at once with what is queued (alone: just itself), so a lone
  client never waits for a batching window;
- calls made while a batch runs queue; when it ends, one of their threads runs the queue as the next batch
  (at most `max_items` items, and `cost(items) <= max_cost` where given, at least one item: an item that
  would break the limit waits for a later batch while the ones after it that fit go in);
- each caller gets its own item's result, or the exception the batch raised.

So under load one forward pass serves many callers, and the batches grow with the load.

A caller with several items (an analysis's padded batches) submits them all (`submit`), then waits for each
in turn (`wait`): the items of different owners take turns in the queue (each batch takes the first queued
item of every owner before the second of any), so a long document's batches do not hold back another
client's, and two documents opened at once share their passes. `release` runs before a thread waits for a
batch (to run it or to have it run): a thread holding a turn on the model (morph.server.turns) gives it up
there, since the batch that would serve it may need that turn.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Generic, Hashable, TypeVar

GIVE_UP_POLL_S = 0.05  # how often a waiting caller that may give up asks whether it does

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass(eq=False)
class Ticket(Generic[In, Out]):
    """One submitted item: its owner, and its result (or error) once its batch has run."""

    item: In
    owner: Hashable
    done: bool = False
    result: Out | None = None
    error: BaseException | None = None


@dataclass
class BatchStats:
    batches: int = 0
    items: int = 0
    largest: int = 0
    owners: int = 0
    """The most owners whose items ran in one batch."""
    sizes: list[int] = field(default_factory=list)
    """The sizes of the last batches (at most 100)."""


class Batcher(Generic[In, Out]):
    def __init__(self, run: Callable[[list[In]], list[Out]], max_items: int = 16,
                 cost: Callable[[list[In]], float] = len, max_cost: float | None = None,
                 release: Callable[[], None] | None = None) -> None:
        self._run = run
        self._max_items = max(1, max_items)
        self._cost = cost
        self._max_cost = max_cost
        self._release = release
        self._cond = threading.Condition()
        self._queue: list[Ticket[In, Out]] = []
        self._running = False
        self.stats = BatchStats()

    @property
    def queued(self) -> int:
        """Items waiting for a batch."""
        return len(self._queue)

    def __call__(self, item: In) -> Out:
        return self.wait(self.submit(item))  # type: ignore[return-value]  # None only for one that gives up

    def submit(self, item: In, owner: Hashable | None = None) -> Ticket[In, Out]:
        """Queue `item` (owner None: an owner of its own); its result comes from `wait`."""
        ticket: Ticket[In, Out] = Ticket(item, owner)
        if owner is None:
            ticket.owner = id(ticket)
        with self._cond:
            self._queue.append(ticket)
        return ticket

    def withdraw(self, ticket: Ticket[In, Out]) -> None:
        """Take a ticket out of the queue if its batch has not started (its caller no longer wants it)."""
        with self._cond:
            if ticket in self._queue:
                self._queue.remove(ticket)

    def wait(self, ticket: Ticket[In, Out], give_up: Callable[[], bool] | None = None) -> Out | None:
        """The ticket's result: it runs the next batch itself when none runs, else waits for its own. With
        `give_up`, asked every GIVE_UP_POLL_S while the ticket is still queued: when it says so, the ticket
        is withdrawn and None returned (a ticket whose batch runs is waited for)."""
        if not ticket.done and self._release is not None:
            self._release()
        with self._cond:
            while not ticket.done:
                if give_up is not None and ticket in self._queue and give_up():
                    self._queue.remove(ticket)
                    return None
                if self._running or ticket not in self._queue:
                    self._cond.wait(GIVE_UP_POLL_S if give_up is not None else None)
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
        if ticket.error is not None:
            raise ticket.error
        return ticket.result  # type: ignore[return-value]

    def _take(self) -> list[Ticket[In, Out]]:
        """Queued tickets for the next batch, the owners taking turns: in the order every owner's first queued
        ticket, then every owner's second..., each one that still fits the limits (the first always does)."""
        turn: dict[Hashable, int] = {}
        order = []
        for k, ticket in enumerate(self._queue):
            turn[ticket.owner] = turn.get(ticket.owner, -1) + 1
            order.append((turn[ticket.owner], k, ticket))
        batch: list[Ticket[In, Out]] = []
        for *_, ticket in sorted(order, key=lambda o: o[:2]):
            if len(batch) == self._max_items:
                break
            if not batch or self._max_cost is None or self._cost([t.item for t in (*batch, ticket)]) <= self._max_cost:
                batch.append(ticket)
        n = len(batch)
        taken = set(batch)  # tickets compare by identity
        self._queue = [t for t in self._queue if t not in taken]
        self.stats.batches += 1
        self.stats.items += n
        self.stats.largest = max(self.stats.largest, n)
        self.stats.owners = max(self.stats.owners, len({t.owner for t in batch}))
        self.stats.sizes = [*self.stats.sizes[-99:], n]
        return batch

    def _run_batch(self, batch: list[Ticket[In, Out]]) -> None:
        try:
            results = self._run([ticket.item for ticket in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} gave {len(results)} results")
        except BaseException as err:  # noqa: BLE001 - every caller of the batch gets the error
            for ticket in batch:
                ticket.error, ticket.done = err, True
            return
        for ticket, result in zip(batch, results):
            ticket.result, ticket.done = result, True
