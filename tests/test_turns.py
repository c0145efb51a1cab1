"""Fair turns on the model (morph.server.turns): two requests that both want the model alternate at their
checkpoints; one holding the model's lock never waits; an ended request's turn goes to the next."""

from __future__ import annotations

import threading

from morph.server.turns import FairTurns, owns


def test_two_requests_alternate_at_their_checkpoints():
    turns = FairTurns()
    order: list[str] = []
    both_in = threading.Barrier(2)

    def request(name: str) -> None:
        both_in.wait()
        for _ in range(30):
            turns.checkpoint()
            order.append(name)
        turns.done()

    threads = [threading.Thread(target=request, args=(n,)) for n in "AB"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(order) == ["A"] * 30 + ["B"] * 30
    runs = [1]
    for a, b in zip(order, order[1:]):
        runs[-1:] = [runs[-1] + 1] if a == b else [runs[-1], 1]
    # once both want the model, neither runs two steps while the other waits (bar the edges)
    assert max(runs[1:-1] or [1]) <= 2


def test_a_request_inside_a_forward_pass_never_waits():
    lock = threading.RLock()
    turns = FairTurns(owns(lock))
    turns.checkpoint()  # this thread has the turn
    waiting = threading.Thread(target=turns.checkpoint)
    waiting.start()
    while not turns._waiting:
        pass
    with lock:
        turns.checkpoint()  # holds the model: goes on, though another waits
    turns.done()  # ended: the waiting request runs
    waiting.join(5)
    assert not waiting.is_alive()
