"""4. Analysis overhead: tokens/s of the full analysis over tokens/s of the bare model, same text, same process.

Full analysis: a fresh Analyzer (empty cache) on the document: tokenization with offsets, block cutting,
the model up to the hook with left context per block, SAE encode/decode, sparse results, assembly.
Bare forward: the whole model (LM head included) over the document's tokens in context-size windows,
batched to the analyzer's token budget, no hooks. Truncated forward: the same windows, stopped at the
hook layer (morph.models.hooks.capture, no SAE): the honest comparison, since analysis never runs the
layers after the hook. Peer: what an interpretability engineer would write today, TransformerLens's
`run_with_cache` (its TransformerBridge over a copy of the same Hugging Face model, stopped after the hook
layer, caching only the hook) plus SAE-Lens's `encode` (the same SAE, loaded by SAE-Lens) over the same
windows. The runs alternate in rotating order; ratios per repeat, median over repeats.

After an edit (what a writer pays on every pause): a word is typed at the end of a line in the middle of
the document; Morph re-analyses it with the cache of the previous analysis (to the complete result, not
only the cursor's block); the peer re-runs only the one window that holds the edit (as generous a peer as
a careful engineer could write by hand: nothing after the window is redone).
"""

from __future__ import annotations

import time

from benchmarks.common import Context, Figure, figure, torch_threads
from benchmarks.corpus import document_tokens

NAME = "overhead"
WINDOW = 1024  # tokens per window of the bare and peer forwards (GPT-2's context; longer ones cost quadratically)


def _windows(lens, ids: list[int], budget: int):
    import torch

    size = min(lens.context_size, WINDOW)
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

    lines = text.split("\n")
    row = len(lines) // 2
    while row < len(lines) - 1 and not lines[row].strip():
        row += 1
    at = sum(len(line) + 1 for line in lines[:row]) + len(lines[row])
    typed = {"text": text, "at": at, "n": 0}
    warm = Analyzer(lens, config)
    warm.analyze(text, focus=at)
    size = min(lens.context_size, WINDOW)
    edited_token = len(lens.tokenizer(text[:at], add_special_tokens=False)["input_ids"])
    edit_window = [torch.tensor([ids[edited_token // size * size:][:size]]).to(lens.device)]

    def edit() -> float:
        word = (" softly", " again", " below", " still")[typed["n"] % 4]
        typed["n"] += 1
        typed["text"] = typed["text"][:typed["at"]] + word + typed["text"][typed["at"]:]
        typed["at"] += len(word)
        t0 = time.perf_counter()
        warm.analyze(typed["text"], focus=typed["at"])
        return time.perf_counter() - t0

    runs = {"analysis": analysis, "bare": bare, "truncated": truncated, "edit": edit}
    peer_note = ""
    try:
        peer = _peer(ctx, lens)
        runs["peer"] = lambda: peer(batches)
        runs["peer_edit"] = lambda: peer(edit_window)
    except Exception as err:  # noqa: BLE001 - the peer is optional (TransformerLens may not know the model)
        peer_note = f"{type(err).__name__}: {err}"[:200]
        ctx.log(f"overhead: no TransformerLens peer ({peer_note})")
    names = list(runs)
    for fn in runs.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {n: [] for n in names}
    with torch_threads(ctx.threads):
        for rep in range(reps):
            for name in names[rep % len(names):] + names[:rep % len(names)]:
                times[name].append(runs[name]())
    n = len(ids)
    probe = Analyzer(lens, config).analyze(text)
    details = dict(document_tokens=n, windows=min(lens.context_size, WINDOW), batches=len(batches),
                   model_tokens_per_document_token=round(probe.stats.computed_tokens / max(1, n), 3),
                   analysis_tokens_per_s=round(n / min(times["analysis"])),
                   bare_tokens_per_s=round(n / min(times["bare"])),
                   truncated_tokens_per_s=round(n / min(times["truncated"])), torch_threads=ctx.threads)
    full = figure("analysis_vs_forward", "analysis tokens/s ÷ bare full forward tokens/s",
                  [b / a for a, b in zip(times["analysis"], times["bare"])], unit="×", **details)
    # the aim (issue "Concepts a writer can read") is against the forward to the hook: analysis never runs
    # the layers above it, so the full forward's ratio flatters it
    cut = figure("analysis_vs_truncated_forward", "analysis tokens/s ÷ forward to the hook layer tokens/s",
                 [t / a for a, t in zip(times["analysis"], times["truncated"])], unit="×", target=(">=", 0.8),
                 **details)
    tps = figure("analysis_tokens_per_s", "full analysis throughput", [n / a for a in times["analysis"]],
                 unit="tok/s", document_tokens=n)
    figures = [full, cut, tps]
    if "peer" in times:
        figures.append(figure("analysis_vs_peer", "analysis tokens/s ÷ TransformerLens run_with_cache + SAE-Lens "
                              "encode tokens/s", [p / a for a, p in zip(times["analysis"], times["peer"])], unit="×",
                              target=(">=", 1.0), peer_tokens_per_s=round(n / min(times["peer"])), **details))
        figures.append(figure("edit_vs_peer", "after a typed word: peer re-running the edited window ÷ Morph's "
                              "incremental re-analysis (time)", [p / a for a, p in zip(times["edit"], times["peer_edit"])],
                              unit="×", edit_ms=round(1000 * min(times["edit"]), 1),
                              peer_edit_ms=round(1000 * min(times["peer_edit"]), 1), peer_window_tokens=size))
    else:
        figures.append(figure("analysis_vs_peer", "analysis ÷ TransformerLens + SAE-Lens (not run)", [], unit="×",
                              why=peer_note))
    for fig in figures:
        fig.benchmark = NAME
    return figures


def _peer(ctx: Context, lens):
    """A timed function of batches: TransformerLens (bridge over a copy of the lens's HF model) + SAE-Lens."""
    import copy
    import warnings

    import torch
    from sae_lens import SAE
    from transformer_lens.model_bridge import TransformerBridge

    sae_dir = lens.sae_dir
    if sae_dir is None:
        raise RuntimeError("the SAE is not a local folder")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sae = SAE.load_from_disk(str(sae_dir), device="cpu")
        name = getattr(lens.model, "name_or_path", "") or str(sae.cfg.metadata.model_name)
        from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

        # Morph's own Llama and tokenizer reader: the peer gets transformers' of the same folder. A copy of
        # transformers' model otherwise: booting the bridge swaps the model's own submodules for its
        # components, in place, which would leave the benchmarks after this one (steering's hooks) running on
        # a changed model
        hf_model = (copy.deepcopy(lens.model) if isinstance(lens.model, PreTrainedModel)
                    else AutoModelForCausalLM.from_pretrained(name, dtype=torch.float32).eval())
        tokenizer = (lens.tokenizer if isinstance(lens.tokenizer, PreTrainedTokenizerBase)
                     else AutoTokenizer.from_pretrained(name))
        bridge = TransformerBridge.boot_transformers(name, hf_model=hf_model, tokenizer=tokenizer, device="cpu")
    hook = lens.hook.name
    stop = lens.hook.layer + 1

    def peer(batches) -> float:
        import time

        t0 = time.perf_counter()
        with torch.inference_mode():
            for batch in batches:
                _, cache = bridge.run_with_cache(batch, names_filter=hook, stop_at_layer=stop)
                sae.encode(cache[hook])
        return time.perf_counter() - t0

    return peer
