"""morph.features.batching: concurrent calls that arrive while a batch runs go together as the next batch."""

from __future__ import annotations

import threading

import pytest

from morph.features.batching import Batcher


def test_a_lone_call_runs_at_once_as_a_batch_of_one():
    seen = []
    batcher = Batcher(lambda items: seen.append(list(items)) or [x * 2 for x in items])
    assert batcher(21) == 42 and batcher(5) == 10
    assert seen == [[21], [5]] and batcher.stats.largest == 1


def test_calls_made_while_a_batch_runs_go_together_and_each_gets_its_own_result():
    release, started = threading.Event(), threading.Event()
    seen: list[list[int]] = []

    def run(items: list[int]) -> list[int]:
        seen.append(list(items))
        if items == [0]:  # the first batch holds the model until the others have queued
            started.set()
            assert release.wait(10)
        return [x * 10 for x in items]

    batcher = Batcher(run)
    results: dict[int, int] = {}
    first = threading.Thread(target=lambda: results.__setitem__(0, batcher(0)))
    first.start()
    assert started.wait(10)
    others = [threading.Thread(target=lambda i=i: results.__setitem__(i, batcher(i))) for i in range(1, 5)]
    for thread in others:
        thread.start()
    while len(batcher._queue) < 4:  # all four queued behind the running batch
        threading.Event().wait(0.005)
    release.set()
    for thread in [first, *others]:
        thread.join(10)
    assert results == {i: i * 10 for i in range(5)}
    assert seen[0] == [0] and sorted(seen[1]) == [1, 2, 3, 4] and len(seen) == 2


def test_limits_split_the_queue_into_several_batches():
    release, started = threading.Event(), threading.Event()
    seen: list[list[int]] = []

    def run(items: list[int]) -> list[int]:
        seen.append(list(items))
        if items == [0]:
            started.set()
            release.wait(10)
        return items

    batcher = Batcher(run, max_items=3, cost=lambda items: sum(items), max_cost=7)
    threads = [threading.Thread(target=batcher, args=(0,))]
    threads[0].start()
    assert started.wait(10)
    for value in (1, 2, 3, 4, 5):
        threads.append(threading.Thread(target=batcher, args=(value,)))
        threads[-1].start()
        while len(batcher._queue) < value:
            threading.Event().wait(0.005)
    release.set()
    for thread in threads:
        thread.join(10)
    assert seen == [[0], [1, 2, 3], [4], [5]]  # 1+2+3 fits 7; 4+5 would not; a lone 5 always runs


def test_an_error_reaches_every_caller_of_its_batch_and_the_batcher_goes_on():
    batcher = Batcher(lambda items: 1 / 0 if 13 in items else items)
    with pytest.raises(ZeroDivisionError):
        batcher(13)
    assert batcher(7) == 7


def test_concurrent_prompts_run_as_one_padded_pass_with_the_numbers_of_one_pass_each(tiny_lens, one_torch_thread):
    """Engine.prompt_activations from several threads (a server's clients): those that arrive while the model is
    busy go in one forward pass, right-padded, and each gets the activations it would get alone."""
    import torch

    from morph.features.engine import Engine
    from morph.features.prompts import prompt_features, prompt_ids

    engine = Engine(tiny_lens)
    prompts = ["The harbour was quiet.", "A storm came over the hills and the river rose by night.", "Bread."]
    alone = [prompt_features(tiny_lens, [prompt_ids(tiny_lens, p)])[0] for p in prompts]
    results: dict[int, torch.Tensor] = {}
    with engine.model_lock:  # the model is busy (another client's analysis): the prompts queue
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(
            i, engine.prompt_activations(prompts[i], 512, fold=False).features)) for i in range(3)]
        threads[0].start()
        while engine.prompt_batches.stats.batches < 1:  # the first leads a batch of itself, waiting for the model
            threading.Event().wait(0.005)
        for thread in threads[1:]:
            thread.start()
        while len(engine.prompt_batches._queue) < 2:
            threading.Event().wait(0.005)
    for thread in threads:
        thread.join(30)
    assert engine.prompt_batches.stats.sizes == [1, 2]
    for i in range(3):
        assert results[i].shape == alone[i].shape
        torch.testing.assert_close(results[i], alone[i], atol=1e-5, rtol=1e-4)
    from fastapi.testclient import TestClient

    from morph.server.app import ServeSettings, create_app

    info = TestClient(create_app(engine, ServeSettings())).get("/v1/morph/info").json()
    assert info["prompt_batches"] == {"batches": 2, "prompts": 3, "largest": 2}  # what a server's operator sees
