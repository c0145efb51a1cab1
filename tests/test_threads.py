"""The editor's default executor (morph.editor.threads): a thread per job, ended with the job, so that no
idle thread keeps an OpenMP team that slows the model in the thread running now."""

from __future__ import annotations

import threading

import pytest

from morph.editor.threads import ThreadPerJob


def test_each_job_runs_in_a_thread_of_its_own_that_ends_with_it():
    executor = ThreadPerJob()
    seen: list[threading.Thread] = []
    futures = [executor.submit(lambda k=k: (seen.append(threading.current_thread()), k * 2)[1]) for k in range(3)]
    assert [f.result(10) for f in futures] == [0, 2, 4]
    assert len({id(t) for t in seen}) == 3 and threading.main_thread() not in seen
    for thread in seen:
        thread.join(10)
        assert not thread.is_alive()


def test_errors_reach_the_waiter_and_shutdown_waits_for_running_jobs():
    executor = ThreadPerJob()
    with pytest.raises(ValueError, match="bad"):
        executor.submit(lambda: (_ for _ in ()).throw(ValueError("bad"))).result(10)
    gate = threading.Event()
    slow = executor.submit(lambda: gate.wait(10) and "done")
    threading.Timer(0.2, gate.set).start()
    executor.shutdown(wait=True)
    assert slow.done() and slow.result() == "done"
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(lambda: None)


async def test_the_editor_runs_its_thread_workers_there(dirs):
    import asyncio

    from morph.editor.app import MorphApp

    app = MorphApp(None, "text")
    async with app.run_test():
        assert isinstance(asyncio.get_running_loop()._default_executor, ThreadPerJob)
