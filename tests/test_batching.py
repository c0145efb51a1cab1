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


def test_owners_take_turns_in_each_batch_and_a_withdrawn_item_does_not_run():
    """A caller with several items submits them all and waits for each: every owner's first queued item goes
    in a batch before any owner's second, so one long document does not hold back another's."""
    release, started = threading.Event(), threading.Event()
    seen: list[list[str]] = []

    def run(items: list[str]) -> list[str]:
        seen.append(list(items))
        if items == ["lead"]:
            started.set()
            assert release.wait(10)
        return [item.upper() for item in items]

    released: list[int] = []
    batcher = Batcher(run, max_items=3, release=lambda: released.append(1))
    lead = threading.Thread(target=batcher, args=("lead",))
    lead.start()
    assert started.wait(10)
    long_doc = [batcher.submit(f"a{i}", owner="a") for i in range(4)]
    other = [batcher.submit(f"b{i}", owner="b") for i in range(2)]
    dropped = batcher.submit("c0", owner="c")
    batcher.withdraw(dropped)
    release.set()
    assert [batcher.wait(t) for t in long_doc] == ["A0", "A1", "A2", "A3"]
    assert [batcher.wait(t) for t in other] == ["B0", "B1"]
    lead.join(10)
    assert seen == [["lead"], ["a0", "b0", "a1"], ["a2", "b1", "a3"]]
    assert not dropped.done and batcher.stats.owners == 2
    assert released  # a thread that waits for a batch first gives up what `release` releases


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


TEXT = ("The river ran past the old mill, and the miller's daughter watched the water.\n"
        "In the evening the lamps were lit along the harbour.\n\n"
        "Mr. Holmes lit his pipe. Watson opened the window; fog drifted in.\n")


def _dense(analysis):
    return analysis.feature_matrix(list(range(analysis.d_sae)))


def _shared_engine(lens):
    from morph.features.analysis import AnalysisConfig
    from morph.features.engine import Engine

    return Engine(lens, AnalysisConfig(context_tokens=12, min_block_tokens=6, max_block_tokens=20, segment_tokens=60))


def _analyses_while_busy(engine, passes, texts, stops=None, queued=lambda threads: None):
    """Analyse `texts` in threads of their own, one analyzer each on `passes`, the first starting while the model
    is busy and the others once its pass waits for the model; `queued(threads)` runs when all wait for passes,
    before the model is free. Returns each one's result (an Analysis, or the AnalysisCancelled it raised)."""
    from morph.features.analysis import AnalysisCancelled

    stops = stops or [lambda: False] * len(texts)
    analyzers = [engine.new_analyzer(passes=passes) for _ in texts]
    results: dict[int, object] = {}

    def analyse(i: int) -> None:
        try:
            results[i] = analyzers[i].analyze(texts[i], should_stop=stops[i])
        except AnalysisCancelled as err:
            results[i] = err

    threads = [threading.Thread(target=analyse, args=(i,)) for i in range(len(texts))]
    with engine.model_lock:  # another client's work holds the model
        threads[0].start()
        while passes.stats.batches < 1:  # the first document's first pass waits for the model
            threading.Event().wait(0.005)
        for thread in threads[1:]:
            thread.start()
        while len({t.owner for t in passes._queue}) < len(texts) - 1 + any(t.owner is analyzers[0]
                                                                             for t in passes._queue):
            threading.Event().wait(0.005)
        queued(threads)
    for thread in threads:
        thread.join(60)
    return results


def test_documents_opened_at_once_share_padded_passes_with_the_numbers_of_their_own(tiny_lens, one_torch_thread):
    """Analyzers of several documents on an Engine's shared passes (a server's clients): the padded batches that
    analyses submit while a pass runs go together in the next one, and each document gets the numbers it gets
    alone, from an analyzer of its own."""
    import numpy as np

    engine = _shared_engine(tiny_lens)
    passes = engine.shared_passes()
    texts = [TEXT * 3, TEXT * 6, TEXT.replace("river", "canal") * 6]
    results = _analyses_while_busy(engine, passes, texts)
    assert passes.stats.owners >= 2  # two documents' batches in one pass
    for i, text in enumerate(texts):
        alone = engine.new_analyzer().analyze(text)
        shared = results[i]
        assert shared.stats.complete and shared.n_tokens == alone.n_tokens
        np.testing.assert_array_equal(shared.token_ids, alone.token_ids)
        np.testing.assert_allclose(_dense(shared), _dense(alone), atol=1e-5)  # float rounding: the pass's shape
        np.testing.assert_allclose(shared.sse, alone.sse, rtol=1e-4, atol=1e-5)


def test_an_analysis_stopped_while_it_waits_for_a_shared_pass_is_left_out_and_the_others_finish(
        tiny_lens, one_torch_thread, monkeypatch):
    """A document edited again while its batches wait for a pass (its analysis replaced by a newer one) is not
    run: its analysis stops at once, the model still busy (the newer one need not wait for a pass), and the
    documents in the pass with it finish with their own numbers."""
    import numpy as np

    import morph.models.hooks as hooks
    from morph.features.analysis import AnalysisCancelled

    engine = _shared_engine(tiny_lens)
    passes = engine.shared_passes()
    tokens_run: list[int] = []
    capture_rows = hooks.capture_rows
    monkeypatch.setattr(hooks, "capture_rows", lambda model, hook, rows, *a, **k: tokens_run.append(
        sum(map(len, rows))) or capture_rows(model, hook, rows, *a, **k))
    stopped = threading.Event()
    texts = [TEXT * 3, TEXT * 6, TEXT.replace("river", "canal") * 6]
    def edited_again(threads) -> None:
        stopped.set()
        threads[2].join(10)
        assert not threads[2].is_alive()  # gave up its place in the queue while the model was still busy

    results = _analyses_while_busy(engine, passes, texts, [lambda: False, lambda: False, stopped.is_set],
                                   queued=edited_again)
    assert isinstance(results[2], AnalysisCancelled)
    assert results[0].stats.complete and results[1].stats.complete
    monkeypatch.undo()
    alone = [engine.new_analyzer().analyze(text) for text in texts[:2]]
    assert sum(tokens_run) == sum(a.stats.computed_tokens for a in alone)  # none of the third document's
    np.testing.assert_allclose(_dense(results[1]), _dense(alone[1]), atol=1e-5)
