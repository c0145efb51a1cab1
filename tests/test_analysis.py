"""The analysis engine on small random models: exactness, incremental = from scratch, windows, cancel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from morph.features.analysis import (AnalysisCancelled, AnalysisConfig, Analyzer, cut_blocks, cut_segments,
                                     find_paragraphs, markup_lead)

TEXT = (
    "The river ran past the old mill, and the miller's daughter watched the water.\n"
    "In the evening the lamps were lit along the harbour.\n\n"
    "Mr. Holmes lit his pipe. Watson opened the window; fog drifted in.\n"
)
SMALL = AnalysisConfig(context_tokens=12, min_block_tokens=6, max_block_tokens=20)


def dense(analysis, d_sae: int) -> np.ndarray:
    out = np.zeros((analysis.n_tokens, d_sae), dtype=np.float32)
    for i in range(analysis.n_tokens):
        lo, hi = analysis.indptr[i], analysis.indptr[i + 1]
        out[i, analysis.indices[lo:hi]] = analysis.values[lo:hi]
    return out


def reference(lens, text: str) -> np.ndarray:
    """SAE-Lens encoding of hidden states captured independently (output_hidden_states), BOS prepended."""
    ids = lens.tokenizer(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        hidden = lens.model(torch.tensor([[lens.bos_token_id] + ids]), output_hidden_states=True).hidden_states
        return lens.sae.encode(hidden[lens.hook.layer + 1][0, 1:]).numpy()


def test_short_text_equals_sae_lens_on_hidden_states(tiny_lens):
    analysis = Analyzer(tiny_lens).analyze(TEXT)
    assert analysis.stats.complete
    np.testing.assert_allclose(dense(analysis, tiny_lens.d_sae), reference(tiny_lens, TEXT), atol=1e-5)


def test_offsets_cover_the_text_and_tokens_match(tiny_lens):
    analysis = Analyzer(tiny_lens).analyze(TEXT)
    pieces = [TEXT[s:e] for s, e in analysis.offsets]
    assert "".join(pieces) == TEXT
    assert analysis.token_at(TEXT.index("Holmes")) == analysis.tokens_in(TEXT.index("Holmes"), TEXT.index("Holmes") + 1)[0]


def test_paragraph_summaries(tiny_lens):
    analysis = Analyzer(tiny_lens).analyze(TEXT)
    assert analysis.paragraphs == find_paragraphs(TEXT)
    assert len(analysis.paragraphs) == 2
    summary = analysis.summary(0, k=5)
    assert summary.start == 0 and TEXT[summary.end - 1] == "."
    assert summary.n_tokens > 10
    assert summary.features and all(f.max >= f.mean > 0 for f in summary.features)
    assert summary.explained_variance is not None and summary.explained_variance < 1.0
    maxes = [f.max for f in summary.features[:5]]
    assert maxes == sorted(maxes, reverse=True)


def test_a_headings_mark_is_markup_not_a_word_the_paragraph_ranks(tiny_lens):
    """A paragraph that opens with a Markdown mark ("# ", "> ", "- ", "1. ") ranks its features over its words
    only: on a text's first line the model reads "#" as a text's start, and features that fire there filled
    the heading's list. Its token count and explained variance still cover the mark."""
    assert [markup_lead(p) for p in ("# The Storm", "### Three", "> quoted", "- item", "12. item", "#tag",
                                     "The end", "  - nested")] == [2, 4, 2, 2, 4, 0, 0, 4]
    text = "# The river and the mill\n\nIn the evening the lamps were lit along the harbour.\n"
    analysis = Analyzer(tiny_lens).analyze(text)
    assert analysis.markup == [2, 0]
    summary = analysis.summary(0, k=5)
    a, b = analysis.tokens_in(0, summary.end)
    words, _ = analysis.tokens_in(2, summary.end)
    assert words > a and summary.n_tokens == b - a
    assert summary.features == tuple(analysis.span_features(words, b, 5))
    assert analysis.summary(1, 5).features == tuple(analysis.span_features(*analysis.tokens_in(*analysis.paragraphs[1]), 5))


def test_blocks_tile_the_tokens_and_respect_limits(tiny_lens):
    text = TEXT * 30 + "word " * 200
    analyzer = Analyzer(tiny_lens, SMALL)
    ids, offsets = analyzer.tokenize(text)
    blocks = cut_blocks(text, offsets, SMALL)
    assert blocks[0][0] == 0 and blocks[-1][1] == len(ids)
    assert all(a == prev_b for (_, prev_b), (a, _) in zip(blocks, blocks[1:]))
    assert max(b - a for a, b in blocks) <= SMALL.max_block_tokens


def test_segments_respect_their_limit_and_an_edit_moves_only_nearby_boundaries(tiny_lens):
    """Segments are cut by the tokens alone: within the token limit, restarted at anchor blocks, so an edit
    inside one block leaves every boundary before it, and after the next anchor, where it was."""
    text = "".join(f"Note {i}. {TEXT}" for i in range(30))
    analyzer = Analyzer(tiny_lens, SMALL)
    ids, offsets = analyzer.tokenize(text)
    blocks = cut_blocks(text, offsets, SMALL)
    firsts = cut_segments(ids, blocks, SMALL, limit=60)
    assert firsts[0] == 0 and firsts == sorted(firsts) and all(firsts[f] == f for f in firsts)
    for f in set(firsts):
        members = [i for i, g in enumerate(firsts) if g == f]
        assert len(members) == 1 or blocks[members[-1]][1] - blocks[f][0] <= 60
    assert 1 < len(set(firsts)) < len(blocks)  # anchors and the limit both cut; not every block alone
    middle = len(blocks) // 2
    at = int(offsets[blocks[middle][0] + 3, 0])
    edited = text[:at] + " lantern" + text[at:]
    ids2, offsets2 = analyzer.tokenize(edited)
    blocks2 = cut_blocks(edited, offsets2, SMALL)
    firsts2 = cut_segments(ids2, blocks2, SMALL, limit=60)
    assert len(blocks2) == len(blocks)
    assert firsts2[:middle] == firsts[:middle]
    later = [i for i in range(middle + 1, len(blocks)) if firsts[i] == i and firsts2[i] == i]
    assert later and firsts2[later[0]:] == firsts[later[0]:]


def test_a_first_analysis_runs_each_token_about_once(tiny_lens):
    """Blocks share their segment's window: one left context per segment, not one per block."""
    text = "".join(f"Note {i}. {TEXT}" for i in range(60))
    config = AnalysisConfig(context_tokens=32, min_block_tokens=24, max_block_tokens=64)
    analysis = Analyzer(tiny_lens, config).analyze(text)
    assert analysis.stats.computed_tokens < 1.3 * analysis.n_tokens
    per_block = Analyzer(tiny_lens, AnalysisConfig(context_tokens=32, min_block_tokens=24, max_block_tokens=64,
                                                   segment_tokens=1)).analyze(text)  # a segment per block
    np.testing.assert_equal(per_block.token_ids, analysis.token_ids)
    assert per_block.stats.computed_tokens > 1.5 * analysis.n_tokens


def test_the_rest_of_the_cursors_segment_continues_its_window(tiny_lens):
    """After the cursor's block, the blocks after it in its segment run from the kept key/values: the
    analysis of an edit costs the tokens after the edit (and the next segment's window), not the segment."""
    config = AnalysisConfig(context_tokens=40, min_block_tokens=6, max_block_tokens=200, segment_every=1000)
    text = "".join(f"Note {i}. {TEXT}" for i in range(4))
    analyzer = Analyzer(tiny_lens, config)
    at = text.index("lamps")
    analyzer.analyze(text, focus=at)
    text = text[:at] + "bright " + text[at:]
    edited = analyzer.analyze(text, focus=at + len("bright "))
    after = len(tiny_lens.tokenizer(text[at:], add_special_tokens=False)["input_ids"])
    assert edited.stats.computed_tokens <= after + 2
    scratch = Analyzer(tiny_lens, config).analyze(text)
    np.testing.assert_allclose(dense(edited, tiny_lens.d_sae), dense(scratch, tiny_lens.d_sae), atol=1e-4)


def test_long_document_is_analysed_whole_in_windows(tiny_lens):
    """Far longer than the model's 512 positions: every token gets features, none is dropped."""
    text = TEXT * 60
    analysis = Analyzer(tiny_lens).analyze(text)
    assert analysis.n_tokens > 3 * tiny_lens.context_size
    counts = np.diff(analysis.indptr)
    assert (counts > 0).all()


def test_edit_recomputes_only_nearby_blocks(tiny_lens):
    text = "".join(f"Note {i}. {TEXT}" for i in range(40))
    analyzer = Analyzer(tiny_lens, SMALL)
    first = analyzer.analyze(text)
    middle = len(text) // 2
    edited = analyzer.analyze(text[:middle] + " lantern" + text[middle:])
    assert edited.stats.computed_blocks <= 4
    assert edited.stats.computed_tokens < first.stats.computed_tokens / 5


def test_focus_block_is_delivered_first(tiny_lens):
    text = TEXT * 10
    partials = []
    analysis = Analyzer(tiny_lens, SMALL).analyze(text, focus=len(text) // 2, on_partial=partials.append)
    assert partials and not partials[0].stats.complete and analysis.stats.complete


@pytest.mark.parametrize("where", ["end", "middle"])
def test_typing_in_a_block_runs_only_the_tokens_after_the_edit(tiny_lens, where):
    """Typing continues the kept key/values of the block's window: the typed tokens (at a paragraph's end)
    or the tokens after the edit (in its middle) run, and the result still equals a fresh analysis."""
    text = "".join(f"Note {i}. {TEXT}" for i in range(4))
    # blocks stay whole; contexts reach back to "Note i" (a block of the same window elsewhere is computed once)
    config = AnalysisConfig(context_tokens=40, min_block_tokens=6, max_block_tokens=200)
    analyzer = Analyzer(tiny_lens, config)
    first = text.index("harbour.", text.index("Note 2.")) + len("harbour.")
    at = first if where == "end" else first - len("along the harbour.")
    analyzer.analyze(text, focus=at)
    for word in (" softly", " and", " then", " again"):
        text = text[:at] + word + text[at:]
        at += len(word)
        partials = []
        incremental = analyzer.analyze(text, focus=at, on_partial=partials.append)
        rest = text[at:text.index("\n", at)].strip() if where == "middle" else ""  # the block's words after the edit
        count = len(tiny_lens.tokenizer(word + " " + rest, add_special_tokens=False)["input_ids"])
        assert partials[0].stats.computed_tokens <= count + 3  # + the block's closing newlines
    scratch = Analyzer(tiny_lens, config).analyze(text)
    np.testing.assert_allclose(dense(incremental, tiny_lens.d_sae), dense(scratch, tiny_lens.d_sae), atol=1e-4)
    np.testing.assert_allclose(incremental.sse, scratch.sse, rtol=1e-4, atol=1e-4)


def test_prepare_makes_the_first_edit_in_another_block_cost_the_typed_tokens(tiny_lens):
    config = AnalysisConfig(context_tokens=40, min_block_tokens=6, max_block_tokens=200)
    text = "".join(f"Note {i}. {TEXT}" for i in range(4))
    analyzer = Analyzer(tiny_lens, config)
    before = analyzer.analyze(text, focus=0)
    at = text.index("harbour.", text.index("Note 2.")) + len("harbour.")
    assert not analyzer.prepare(text + "x", at)  # not the analysed text: nothing to do
    assert analyzer.prepare(text, at)
    assert not analyzer.prepare(text, at)  # kept already
    unchanged = analyzer.analyze(text, focus=at)
    np.testing.assert_allclose(dense(unchanged, tiny_lens.d_sae), dense(before, tiny_lens.d_sae), atol=1e-5)
    text = text[:at] + " softly" + text[at:]
    partials = []
    analyzer.analyze(text, focus=at + len(" softly"), on_partial=partials.append)
    typed = len(tiny_lens.tokenizer(" softly", add_special_tokens=False)["input_ids"])
    assert partials[0].stats.computed_tokens <= typed + 3  # + the block's closing newlines


def test_a_cancelled_continuation_leaves_no_half_extended_window(tiny_lens):
    """A run stopped inside the forward that continues a kept window must not leave that window half
    extended: the next run of the same text equals a fresh analysis."""
    config = AnalysisConfig(context_tokens=40, min_block_tokens=6, max_block_tokens=200)
    text = "".join(f"Note {i}. {TEXT}" for i in range(3))
    at = text.index("harbour.", text.index("Note 1.")) + len("harbour.")
    analyzer = Analyzer(tiny_lens, config)
    analyzer.analyze(text, focus=at)
    text = text[:at] + " softly" + text[at:]
    calls = []

    def checkpoint():
        calls.append(1)
        if len(calls) == 6:
            raise AnalysisCancelled("stopped in the forward")

    with pytest.raises(AnalysisCancelled):
        analyzer.analyze(text, focus=at + 7, checkpoint=checkpoint)
    again = analyzer.analyze(text, focus=at + 7)
    scratch = Analyzer(tiny_lens, config).analyze(text)
    np.testing.assert_allclose(dense(again, tiny_lens.d_sae), dense(scratch, tiny_lens.d_sae), atol=1e-4)


def test_cancel_stops_the_run(tiny_lens):
    with pytest.raises(AnalysisCancelled):
        Analyzer(tiny_lens, SMALL).analyze(TEXT * 10, should_stop=lambda: True)


def test_checkpoint_runs_between_layers_and_stages_without_changing_results(tiny_lens):
    import inspect

    text = TEXT * 6
    in_forward = []  # per call: made from inside a module's forward?
    paused = Analyzer(tiny_lens, SMALL).analyze(
        text, checkpoint=lambda: in_forward.append(any(f.function == "_call_impl" for f in inspect.stack())))
    plain = Analyzer(tiny_lens, SMALL).analyze(text)
    layers_run = tiny_lens.hook.layer + 1  # the forward stops at the hook
    assert sum(in_forward) >= 2 * layers_run  # at least each layer and a submodule of it
    assert len(in_forward) - sum(in_forward) >= 5  # stages: tokenize, SAE encode, decode, sparse, assemble
    np.testing.assert_array_equal(paused.indptr, plain.indptr)
    np.testing.assert_array_equal(paused.indices, plain.indices)
    np.testing.assert_allclose(paused.values, plain.values, atol=1e-6)


def test_cancel_inside_the_forward_stops_it_and_leaves_the_cache_sound(tiny_lens):
    """A newer edit stops a run at the next layer, not after its batch; what ran is not cached half-done."""
    def hooks():  # transformers keeps hooks of its own on the layers: compare, do not expect none
        return [(set(m._forward_pre_hooks), set(m._forward_hooks)) for m in tiny_lens.model.modules()]

    text = TEXT * 6
    analyzer = Analyzer(tiny_lens, SMALL)
    before = hooks()
    seen = []
    stop = [False]

    def checkpoint():
        seen.append(1)
        if len(seen) == 5:  # a few modules into the first forward
            stop[0] = True

    with pytest.raises(AnalysisCancelled):
        analyzer.analyze(text, should_stop=lambda: stop[0], checkpoint=checkpoint)
    assert len(seen) == 5
    assert hooks() == before
    again = analyzer.analyze(text)
    fresh = Analyzer(tiny_lens, SMALL).analyze(text)
    np.testing.assert_allclose(dense(again, tiny_lens.d_sae), dense(fresh, tiny_lens.d_sae), atol=1e-6)


def test_a_splice_that_misses_is_replaced_by_the_full_tokenization(tiny_lens):
    """The cursor's block may be computed on spliced tokens; the final result always rests on the full
    tokenization (here the splice is made wrong on purpose: one token dropped)."""
    text = TEXT * 6
    analyzer = Analyzer(tiny_lens, SMALL)
    analyzer.analyze(text)
    edited = text[:100] + " lantern" + text[100:]
    splice = analyzer._splicer.quick

    def wrong(new_text):
        ids, offsets = splice(new_text)
        return np.delete(ids, 3), np.delete(offsets, 3, axis=0)

    analyzer._splicer.quick = wrong
    analyzer._splicer.splices_are_exact = False  # as for a tokenizer without the byte-level guarantee
    partials = []
    result = analyzer.analyze(edited, focus=100, on_partial=partials.append)
    fresh = Analyzer(tiny_lens, SMALL).analyze(edited)
    assert analyzer._splicer.misses == 1
    assert np.array_equal(result.token_ids, fresh.token_ids) and np.array_equal(result.offsets, fresh.offsets)
    np.testing.assert_allclose(dense(result, tiny_lens.d_sae), dense(fresh, tiny_lens.d_sae), atol=1e-6)


@pytest.mark.parametrize("exact", [True, False])
def test_an_edit_is_tokenized_around_the_edit_only(tiny_lens, exact):
    """The tests' byte-level BPE splices exactly: only the lines around the edit are tokenized. For a
    tokenizer without that guarantee the whole text is tokenized once more, after the cursor's block."""
    text = TEXT * 20
    analyzer = Analyzer(tiny_lens, SMALL)
    assert analyzer._splicer.splices_are_exact
    analyzer._splicer.splices_are_exact = exact
    analyzer.analyze(text)
    lengths = []
    tokenize = analyzer.tokenize
    analyzer.tokenize = lambda part: lengths.append(len(part)) or tokenize(part)
    partials = []
    middle = text.index("\n", len(text) // 2)
    edited = text[:middle] + " lantern" + text[middle:]
    result = analyzer.analyze(edited, focus=middle, on_partial=partials.append)
    assert partials and lengths[0] < len(text) / 5  # the cursor's block: spliced tokens
    assert lengths[1:] == ([] if exact else [len(edited)])
    fresh = Analyzer(tiny_lens, SMALL).analyze(edited)
    assert np.array_equal(result.token_ids, fresh.token_ids) and np.array_equal(result.offsets, fresh.offsets)


def test_empty_and_whitespace_documents(tiny_lens):
    analyzer = Analyzer(tiny_lens)
    assert analyzer.analyze("").n_tokens == 0
    blank = analyzer.analyze("\n\n   \n")
    assert blank.paragraphs == [] and blank.n_tokens > 0


def test_pinned_feature_values(tiny_lens):
    analysis = Analyzer(tiny_lens).analyze(TEXT)
    feature = analysis.summary(0).features[0].id
    values = analysis.feature_values(feature)
    assert values.shape == (analysis.n_tokens,)
    np.testing.assert_allclose(values, dense(analysis, tiny_lens.d_sae)[:, feature])


edits = st.lists(
    st.tuples(st.floats(0, 1), st.integers(0, 12), st.sampled_from(["", " the", "\n", "\n\n", "Fog. ", "é", "lamp,"])),
    min_size=1, max_size=6,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=edits)
def test_incremental_equals_from_scratch(tiny_lens, edits):
    """After any sequence of edits, the cached analyzer's result equals a fresh analysis within 1e-4."""
    analyzer = Analyzer(tiny_lens, SMALL)
    text = TEXT * 3
    analyzer.analyze(text)
    for where, delete, insert in edits:
        at = int(where * len(text))
        text = text[:at] + insert + text[at + delete:]
        incremental = analyzer.analyze(text, focus=at)
    scratch = Analyzer(tiny_lens, SMALL).analyze(text)
    assert np.array_equal(incremental.token_ids, scratch.token_ids)
    assert np.array_equal(incremental.offsets, scratch.offsets)
    np.testing.assert_allclose(dense(incremental, tiny_lens.d_sae), dense(scratch, tiny_lens.d_sae), atol=1e-4)
    np.testing.assert_allclose(incremental.sse, scratch.sse, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("arch, sae_arch", [("llama", "standard"), ("llama", "jumprelu"), ("gpt2", "standard"),
                                            ("gpt2", "jumprelu"), ("llama", "topk")])
def test_engine_equals_sae_lens_across_architectures(tmp_path, arch, sae_arch):
    """Morph's analysis of a document equals SAE-Lens's encoding of transformers' hidden states (the model
    loaded by transformers itself: Morph runs a plain Llama with its own code)."""
    from transformers import AutoModelForCausalLM

    from morph.models.tiny import build_model, build_sae

    from morph.models.lens import LensSpec, load_lens

    build_model(tmp_path / "model", arch, d_model=64, n_layers=3)
    build_sae(tmp_path / "sae", d_in=64, hook_name="blocks.2.hook_resid_pre", arch=sae_arch)
    lens = load_lens(LensSpec(model=str(tmp_path / "model"), sae=str(tmp_path / "sae"), device="cpu"))
    analysis = Analyzer(lens).analyze(TEXT)
    ids = lens.tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        hf = AutoModelForCausalLM.from_pretrained(tmp_path / "model", dtype=torch.float32).eval()
        hidden = hf(torch.tensor([[lens.bos_token_id] + ids]), output_hidden_states=True).hidden_states
        expected = lens.sae.encode(hidden[2][0, 1:]).numpy()  # resid_pre of block 2 = hidden_states[2]
    np.testing.assert_allclose(dense(analysis, lens.d_sae), expected, atol=1e-5)
    assert (np.diff(analysis.indptr) > 0).any()


def test_progress_counts_the_blocks_to_compute(tiny_lens):
    text = "".join(f"Note {i}. {TEXT}" for i in range(12))
    seen = []
    analysis = Analyzer(tiny_lens, AnalysisConfig(context_tokens=12, min_block_tokens=6, max_block_tokens=20,
                                                  batch_tokens=64)).analyze(text, focus=0, on_progress=lambda d, t: seen.append((d, t)))
    total = analysis.stats.computed_blocks
    assert seen[0] == (1, total) and seen[-1] == (total, total)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and len(seen) > 2


def test_padded_batches_give_each_run_its_own_numbers(tiny_lens):
    """Runs of unlike lengths batched together (right-padded, no attention mask: causal attention never lets
    a real position see the padding after it) give the numbers each run gets in a pass of its own."""
    from morph.features import analysis as module

    text = TEXT * 6
    config = AnalysisConfig(context_tokens=12, min_block_tokens=6, max_block_tokens=20, segment_tokens=60)
    alone = Analyzer(tiny_lens, AnalysisConfig(**{**config.__dict__, "batch_tokens": 1})).analyze(text)
    share = module.PADDING_SHARE
    module.PADDING_SHARE = 1.0  # any padding: every run of unlike length in one batch
    analyzer = Analyzer(tiny_lens, config)
    widths: list[list[int]] = []
    run_batch = analyzer._run_batch
    analyzer._run_batch = lambda batch, *a: widths.append([len(r.ids) for r in batch]) or run_batch(batch, *a)
    try:
        batched = analyzer.analyze(text)
    finally:
        module.PADDING_SHARE = share
    assert any(len(set(w)) > 1 for w in widths), widths  # padding happened
    np.testing.assert_allclose(dense(batched, tiny_lens.d_sae), dense(alone, tiny_lens.d_sae), atol=1e-5)
    np.testing.assert_allclose(batched.sse, alone.sse, rtol=1e-4, atol=1e-5)


def test_batches_keep_padding_under_its_share():
    from morph.features.analysis import PADDING_SHARE, _batches

    class Run:
        def __init__(self, n: int) -> None:
            self.ids = [0] * n

    batches = _batches([Run(n) for n in (100, 104, 108, 300, 310, 1000)], budget=4096)
    assert [[len(r.ids) for r in b] for b in batches] == [[100, 104, 108], [300, 310], [1000]]
    for batch in batches:
        width = max(len(r.ids) for r in batch)
        assert sum(len(r.ids) for r in batch) >= (1 - PADDING_SHARE) * width * len(batch)
    # a model that packs rows pays for no padding: runs go in order, up to the budget in tokens
    packed = _batches([Run(n) for n in (300, 100, 1000, 310, 5000, 104)], budget=1500, packed=True)
    assert [[len(r.ids) for r in b] for b in packed] == [[300, 100, 1000], [310], [5000], [104]]
