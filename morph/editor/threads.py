"""The editor's default executor: a thread per job, ended with the job.

Textual runs thread workers (model loading, analysis, steering, concept search) in the event loop's default
executor. asyncio's default is a pool whose threads outlive their jobs, and every pool thread that has run
torch keeps its own OpenMP team (torch's CPU threads). Once a process holds more OpenMP threads than cores,
libgomp stops spin-waiting between parallel regions, and a model forward (thousands of small regions) pays
a thread wake-up in each: in the editor on 2 cores, rewrites generated at ~8 tokens/s where `morph steer`
generated ~20 (a decoding step of the default at batch 4: ~111 ms in the only thread running torch, ~250 ms
in a thread beside another that kept its team). A thread that ends releases its team, so with a thread per
job only the jobs running now hold one.
"""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, TypeVar

T = TypeVar("T")


class ThreadPerJob(ThreadPoolExecutor):
    """An executor that starts a thread for each job; `shutdown(wait=True)` joins those still running. (A
    ThreadPoolExecutor by type only, which asyncio asks of a default executor: its pool is never used.)"""

    def __init__(self, name: str = "morph-worker") -> None:
        super().__init__(max_workers=1, thread_name_prefix=name)
        self._name = name
        self._lock = threading.Lock()
        self._running: set[threading.Thread] = set()
        self._closed = False
        self._numbers = itertools.count()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()

        def job() -> None:
            try:
                if future.set_running_or_notify_cancel():
                    try:
                        result = fn(*args, **kwargs)
                    except BaseException as err:  # noqa: BLE001 - handed to whoever waits on the future
                        future.set_exception(err)
                    else:
                        future.set_result(result)
            finally:
                with self._lock:
                    self._running.discard(threading.current_thread())

        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new jobs after shutdown")
            thread = threading.Thread(target=job, name=f"{self._name}-{next(self._numbers)}")
            self._running.add(thread)
        thread.start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._closed = True
            running = list(self._running)
        if wait:
            for thread in running:
                thread.join()
