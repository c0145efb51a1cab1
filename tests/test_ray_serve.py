"""`morph serve --ray`: two Ray Serve replicas on a local Ray instance serve two clients at once, each with
the local engine's numbers, and a client's document stays on the replica that holds it.

Ray Serve is in the test extra, so CI runs this (about 35 s on two cores, most of it starting Ray); it is
skipped only where Ray is not installed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("ray.serve")
pytest.importorskip("httpx")

from morph.features.engine import Engine  # noqa: E402
from tests.live_server import free_port  # noqa: E402

TEXT = "The sea was loud.\n\nThe lamp was cold and the keeper slept by the window.\n" * 12
ARRAYS = ("token_ids", "offsets", "indptr", "indices", "values", "hook_acts", "sse")


def test_two_replicas_serve_two_clients(tiny_dirs, tiny_lens):
    import httpx

    from morph.server.remote import RemoteEngine

    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    server = subprocess.Popen([sys.executable, "-m", "morph", "serve", "--ray", "--replicas", "2", "--model",
                               str(tiny_dirs["model"]), "--sae", str(tiny_dirs["sae"]), "--device", "cpu",
                               "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        replicas: set[str] = set()
        while len(replicas) < 2:  # the proxy answers once one replica is up; wait for both
            try:
                answer = httpx.get(url + "/v1/morph/info", timeout=2)
                if answer.status_code == 200:
                    replicas.add(answer.json()["replica"])
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, f"2 replicas did not start: {replicas}"
            time.sleep(0.2)

        texts = [TEXT, TEXT.replace("sea", "river")]
        results: dict[int, list] = {}
        errors: list[BaseException] = []

        def client(i: int) -> None:
            try:
                remote = RemoteEngine(url)
                first = remote.analyze(texts[i], 1)
                edited = texts[i] + " And then"
                second = remote.analyze(edited, 2, focus=len(edited))
                # routing by document is best effort (the replica registers a document once it holds it):
                # later edits must find it there
                later = [remote.analyze(edited + " more" * k, 2 + k, focus=len(edited) + 5 * k) for k in (1, 2)]
                results[i] = [first, second, *later]
            except BaseException as err:  # noqa: BLE001 - reported below
                errors.append(err)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors
        for i in range(2):
            first, second, *later = results[i]
            local = Engine(tiny_lens)
            expected_first = local.analyze(texts[i], 1)
            for name in ARRAYS:  # from scratch on both sides: the same numbers
                assert np.array_equal(getattr(expected_first, name), getattr(first, name)), name
            expected_second = local.analyze(texts[i] + " And then", 2, focus=len(texts[i]) + 9)
            for name in ARRAYS:
                assert np.allclose(getattr(expected_second, name).astype(np.float64),
                                   getattr(second, name).astype(np.float64), atol=1e-4), name
            # the document stays on its replica: an edit costs the edit
            assert any(a.stats.reused_blocks > 0 for a in later), [a.stats for a in [second, *later]]
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()
