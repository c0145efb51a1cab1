"""Overlay spans: clipping to a range, colouring by slots, and the token-range form of feature_matrix."""

from __future__ import annotations

import numpy as np

from morph.features.highlights import Overlay, build_overlay
from morph.features.analysis import Analyzer


def spans() -> Overlay:
    a = np.array
    return Overlay(a([0, 4, 10]), a([3, 8, 15]), a([0, 0, 0]), a([1, 2, 3]), a([7, 9, 7]))


def test_between_clips_spans_to_the_range():
    overlay = spans()
    assert overlay.between(0, 20) == [(0, 3, 0, 1), (4, 8, 0, 2), (10, 15, 0, 3)]
    assert overlay.between(5, 12) == [(5, 8, 0, 2), (10, 12, 0, 3)]
    assert overlay.between(8, 10) == []
    assert all(isinstance(v, int) for span in overlay.between(0, 20) for v in span)


def test_with_slots_colours_each_span_by_its_feature():
    coloured = spans().with_slots({7: 2, 9: 5})
    assert coloured.slots.tolist() == [2, 5, 2]
    assert spans().with_slots({9: 1}).slots.tolist() == [0, 1, 0]  # a feature without a slot: slot 0
    assert coloured.levels.tolist() == [1, 2, 3] and coloured.starts.tolist() == [0, 4, 10]


def test_feature_matrix_of_a_token_range_is_that_slice_of_the_whole(tiny_lens):
    text = "The river ran past the old mill.\n\nIn the evening the lamps were lit along the harbour.\n"
    analysis = Analyzer(tiny_lens).analyze(text)
    features = sorted({int(f) for f in analysis.indices[:40]})[:5]
    whole = analysis.feature_matrix(features)
    for a, b in ((0, analysis.n_tokens), (3, 9), (5, 5), (analysis.n_tokens - 2, analysis.n_tokens)):
        assert np.array_equal(analysis.feature_matrix(features, a, b), whole[:, a:b])


def test_overlay_of_a_token_range_is_that_part_of_the_whole(tiny_lens):
    text = "The river ran past the old mill.\n\nIn the evening the lamps were lit along the harbour.\n"
    analysis = Analyzer(tiny_lens).analyze(text)
    features = sorted({int(f) for f in analysis.indices})[:6]
    scales = np.maximum(analysis.feature_max(), 1e-6)  # intensities relative to each feature's max here
    slots = {f: i for i, f in enumerate(features)}
    whole = build_overlay(analysis, text, features, slots, scales)
    a, b = 4, 12
    part = build_overlay(analysis, text, features, slots, scales, tokens=(a, b))
    lo, hi = int(analysis.offsets[a, 0]), int(analysis.offsets[b - 1, 1])
    assert len(part) > 0
    assert part.between(0, len(text)) == whole.between(lo, hi)
