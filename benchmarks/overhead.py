"""4. Analysis overhead: tokens/s of the full analysis over tokens/s of the bare model, same text, same process.

Full analysis: a fresh Analyzer (empty cache) on the document: tokenization with offsets, block cutting,
the model up to the hook with left context per block, SAE encode/decode, sparse results, assembly.
Bare forward: the whole model (LM head included) over the document's tokens in context-size windows,
batched to the analyzer's token budget, no hooks. Truncated forward: the same windows, stopped at the
hook layer (morph.models.hooks.capture, no SAE): the honest comparison, since analysis never runs the
layers after the hook. The three alternate in rotating order; ratios per repeat, median over repeats.
"""

from __future__ import annotations

import time

from benchmarks.common import Context, Figure, figure
from benchmarks.corpus import document_tokens

NAME = "overhead"


def _windows(lens, ids: list[int], budget: int):
    import torch

    size = lens.context_size
    chunks = [ids[i:i + size] for i in range(0, len(ids), size)]
    full = [c for c in chunks if len(c) == size]
    rest = [c for c in chunks if len(c) != size]
    per_batch = max(1, budget // size)
    batches = [torch.tensor(full[i:i + per_batch]) for i in range(0, len(full), per_batch)]
    batches += [torch.tensor([c]) for c in rest]
    return [b.to(lens.device) for b in batches]


def run(ctx: Context) -> list[Figure]:
    import torch

    from morph.features.analysis import Analyzer
    from morph.models.hooks import capture

    lens = ctx.load()
    config = ctx.analysis_config()
    size = ctx.pick(8000, 2000, 500)
    reps = ctx.pick(7, 3, 1)
    text = document_tokens(ctx.count_tokens, size, seed=4)
    ids = lens.tokenizer(text, add_special_tokens=False)["input_ids"]
    batches = _windows(lens, ids, config.batch_tokens)

    def analysis() -> float:
        t0 = time.perf_counter()
        Analyzer(lens, config).analyze(text)
        return time.perf_counter() - t0

    def bare() -> float:
        t0 = time.perf_counter()
        with torch.inference_mode():
            for batch in batches:
                lens.model(input_ids=batch, use_cache=False)
        return time.perf_counter() - t0

    def truncated() -> float:
        t0 = time.perf_counter()
        for batch in batches:
            capture(lens.model, lens.hook, batch)
        return time.perf_counter() - t0

    runs = {"analysis": analysis, "bare": bare, "truncated": truncated}
    names = list(runs)
    for fn in runs.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {n: [] for n in names}
    previous = torch.get_num_threads()
    torch.set_num_threads(ctx.threads)
    try:
        for rep in range(reps):
            for name in names[rep % 3:] + names[:rep % 3]:
                times[name].append(runs[name]())
    finally:
        torch.set_num_threads(previous)
    n = len(ids)
    probe = Analyzer(lens, config).analyze(text)
    details = dict(document_tokens=n, windows=lens.context_size, batches=len(batches),
                   model_tokens_per_document_token=round(probe.stats.computed_tokens / max(1, n), 3),
                   analysis_tokens_per_s=round(n / min(times["analysis"])),
                   bare_tokens_per_s=round(n / min(times["bare"])),
                   truncated_tokens_per_s=round(n / min(times["truncated"])), torch_threads=ctx.threads)
    full = figure("analysis_vs_forward", "analysis tokens/s ÷ bare full forward tokens/s",
                  [b / a for a, b in zip(times["analysis"], times["bare"])], unit="×", target=(">=", 0.8), **details)
    cut = figure("analysis_vs_truncated_forward", "analysis tokens/s ÷ forward to the hook layer tokens/s",
                 [t / a for a, t in zip(times["analysis"], times["truncated"])], unit="×", **details)
    tps = figure("analysis_tokens_per_s", "full analysis throughput", [n / a for a in times["analysis"]],
                 unit="tok/s", document_tokens=n)
    for fig in (full, cut, tps):
        fig.benchmark = NAME
    return [full, cut, tps]
