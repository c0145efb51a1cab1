"""10. A keystroke's re-analysis through `morph serve` (loopback) against the local engine, at two sizes.

A document of 2,000 and one of 8,000 tokens (quick: 1,000 and 4,000) is analysed once by a local Engine
and once through a RemoteEngine against a server on 127.0.0.1 (the same lens, served from a thread of this
process, so client and server share the cores as they would on one laptop). Then, repeatedly, one letter is
typed in the middle of the document and both re-analyse it as the editor does (focus at the cursor); the
order of the two alternates between repeats. Figures: remote time / local time per size (what the server
adds: the JSON delta of the edited rows, HTTP, decoding), and remote time at the large size / at the small
one (a keystroke through the server should cost the edit, not the document: about 1×). Then 8 clients post a
Neuronpedia activation request each at once, answered with the engine's batching and with one forward
pass each: the time until all are answered, unbatched ÷ batched. Last, 4 clients open a document each at once
(about 1,000 tokens; quick: 500): the time until all are analysed, with the server's shared passes (their
padded batches go through the model together) ÷ with each document's batches in passes of their own (as
before the passes were shared).
"""

from __future__ import annotations

import time

from benchmarks.common import Context, Figure, figure
from benchmarks.corpus import document_tokens

NAME = "serve"
CLIENTS = 8
OPENING = 4  # clients opening a document at once


def run(ctx: Context) -> list[Figure]:
    import socket
    import threading

    import uvicorn

    from morph.features.engine import Engine
    from morph.server.app import create_app
    from morph.server.remote import RemoteEngine

    lens = ctx.load()
    served = Engine(lens, ctx.analysis_config())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(served)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error",
                                           access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    sizes = ctx.pick((2000, 8000), (1000, 4000), (300, 900))
    reps = ctx.pick(15, 7, 2)
    figures: list[Figure] = []
    remote_ms: dict[int, list[float]] = {}
    try:
        for size in sizes:
            text = document_tokens(ctx.count_tokens, size, seed=11)
            local = Engine(lens, ctx.analysis_config())
            remote = RemoteEngine(f"http://127.0.0.1:{port}")
            local.analyze(text)
            remote.analyze(text)
            at = len(text) // 2
            ratios, local_ms, through_ms = [], [], []
            for rep in range(reps):
                text = text[:at] + "e" + text[at:]
                at += 1
                timings = {}
                for which in (("local", "remote") if rep % 2 == 0 else ("remote", "local")):
                    engine = local if which == "local" else remote
                    t0 = time.perf_counter()
                    engine.analyze(text, rep + 1, focus=at)
                    timings[which] = time.perf_counter() - t0
                ratios.append(timings["remote"] / timings["local"])
                local_ms.append(timings["local"] * 1000)
                through_ms.append(timings["remote"] * 1000)
            remote.close()
            remote_ms[size] = through_ms
            fig = figure(f"serve_vs_local_{size}", f"keystroke re-analysis through a loopback server / local, "
                         f"{size} tokens", ratios, unit="×", local_ms=sorted(local_ms), remote_ms=sorted(through_ms))
            fig.benchmark = NAME
            figures.append(fig)
        small, large = sizes
        pairs = [b / a for a, b in zip(remote_ms[small], remote_ms[large])]
        fig = figure(f"serve_{large}_vs_{small}", f"keystroke through the server, {large} / {small} tokens", pairs,
                     unit="×")
        fig.benchmark = NAME
        figures.append(fig)
        figures.append(_concurrent_prompts(ctx, served, port, reps))
        figures.append(_opening_at_once(ctx, app.app.state.store, port, reps))
    finally:
        server.should_exit = True
        thread.join(10)
    return figures


def _concurrent_prompts(ctx: Context, served, port: int, reps: int) -> Figure:
    """CLIENTS threads post Neuronpedia topk-by-token requests at once (a prompt of about 120 tokens each); the
    time until all are answered, with the engine's batcher and with batches of one (one forward pass each)."""
    import threading
    from functools import partial

    import httpx

    from morph.features.batching import Batcher
    from morph.features.prompts import prompt_features

    prompts = [document_tokens(ctx.count_tokens, 120, seed=30 + i) for i in range(CLIENTS)]
    batched = served.prompt_batches
    single = Batcher(partial(prompt_features, served.lens), max_items=1)
    times: dict[str, list[float]] = {"batched": [], "single": []}
    url = f"http://127.0.0.1:{port}/v1/activation/topk-by-token"

    def ask(client: httpx.Client, prompt: str) -> None:
        body = {"prompt": prompt, "model": served.model_name, "source": served.sae_name, "ignoreBos": True, "topK": 5}
        client.post(url, json=body, timeout=300).raise_for_status()

    with httpx.Client() as client:
        for rep in range(reps + 1):
            for name in (("batched", "single") if rep % 2 == 0 else ("single", "batched")):
                served.prompt_batches = batched if name == "batched" else single
                elapsed = _all_at_once([threading.Thread(target=ask, args=(client, p)) for p in prompts])
                if rep > 0:  # the first round warms up
                    times[name].append(elapsed)
    served.prompt_batches = batched
    fig = figure("serve_batched_prompts", f"{CLIENTS} clients' Neuronpedia activation requests at once: one pass "
                 "each ÷ batched (time)", [s / b for s, b in zip(times["single"], times["batched"])], unit="×",
                 batched_ms=sorted(round(1000 * t) for t in times["batched"]),
                 single_ms=sorted(round(1000 * t) for t in times["single"]),
                 batch_sizes=batched.stats.sizes[-2 * CLIENTS:])
    fig.benchmark = NAME
    return fig


def _opening_at_once(ctx: Context, store, port: int, reps: int) -> Figure:
    """OPENING clients (RemoteEngines, each a new document on the server) analyse a document each at once; the
    time until all are analysed, the server's analyzers sharing passes or not (their `passes` taken away)."""
    import threading

    from morph.server.remote import RemoteEngine

    texts = [document_tokens(ctx.count_tokens, ctx.pick(1000, 500, 200), seed=40 + i) for i in range(OPENING)]
    shared_analyzer = store.new_analyzer
    passes = shared_analyzer().passes

    def apart_analyzer():
        analyzer = shared_analyzer()
        analyzer.passes = None
        return analyzer

    times: dict[str, list[float]] = {"shared": [], "apart": []}
    for rep in range(reps + 1):
        for name in (("shared", "apart") if rep % 2 == 0 else ("apart", "shared")):
            store.new_analyzer = shared_analyzer if name == "shared" else apart_analyzer
            clients = [RemoteEngine(f"http://127.0.0.1:{port}") for _ in texts]
            elapsed = _all_at_once([threading.Thread(target=c.analyze, args=(t,)) for c, t in zip(clients, texts)])
            if rep > 0:  # the first round warms up
                times[name].append(elapsed)
            for c in clients:
                c.close()
    store.new_analyzer = shared_analyzer
    fig = figure("serve_shared_passes", f"{OPENING} clients opening a document each at once: passes apart ÷ shared "
                 "(time)", [a / s for a, s in zip(times["apart"], times["shared"])], unit="×",
                 shared_ms=sorted(round(1000 * t) for t in times["shared"]),
                 apart_ms=sorted(round(1000 * t) for t in times["apart"]),
                 documents_in_a_pass=passes.stats.owners, last_pass_sizes=passes.stats.sizes[-20:])
    fig.benchmark = NAME
    return fig


def _all_at_once(threads) -> float:
    """Seconds from starting `threads` together to the end of the last."""
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0
