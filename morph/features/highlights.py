"""Highlight planning: which features a view shows, and which token gets which colour slot and how strongly.

Spans are kept in character offsets and shifted on every edit (`Overlay.shift`), so highlights follow the
text while the writer types; the tokens an edit touches lose theirs until the next analysis arrives. A plan
is made in the analysis worker for the view the analysis started in, so that the UI only gives the features
their colours (morph.editor.colours) and swaps the spans in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from morph.features.analysis import Analysis

LEVELS = 4  # intensity steps; a token's level is its activation over the feature's typical max, quantised
MIN_INTENSITY = 0.25  # weaker than this (relative to the feature's typical max) is left plain
MAX_COLOURS = 6  # features coloured at once in the overview: few enough to tell apart, each in the legend
MIN_SCORE = 1.0  # how distinctive a feature must be in view to be coloured (morph.features.ranking)


@dataclass
class Overlay:
    """Highlighted spans, sorted by start: colour slot and intensity level per span."""

    starts: np.ndarray
    ends: np.ndarray
    slots: np.ndarray
    levels: np.ndarray
    features: np.ndarray  # the feature each span shows

    @classmethod
    def empty(cls) -> "Overlay":
        z = np.zeros(0, dtype=np.int64)
        return cls(z, z.copy(), z.copy(), z.copy(), z.copy())

    def __len__(self) -> int:
        return len(self.starts)

    def shift(self, start: int, old_end: int, new_end: int) -> None:
        """Text [start, old_end) was replaced by text ending at new_end: move or drop spans."""
        keep = (self.ends <= start) | (self.starts >= old_end)
        delta = new_end - old_end
        moved = self.starts >= old_end
        self.starts = np.where(moved, self.starts + delta, self.starts)[keep]
        self.ends = np.where(moved, self.ends + delta, self.ends)[keep]
        self.slots, self.levels, self.features = self.slots[keep], self.levels[keep], self.features[keep]

    def between(self, a: int, b: int) -> list[tuple[int, int, int, int]]:
        """Spans overlapping [a, b), clipped to it: (start, end, slot, level)."""
        lo = int(np.searchsorted(self.ends, a, side="right"))
        hi = int(np.searchsorted(self.starts, b, side="left"))
        if hi <= lo:
            return []
        # one conversion per array, not per element: this runs for every row on screen on every result
        return list(zip(np.maximum(self.starts[lo:hi], a).tolist(), np.minimum(self.ends[lo:hi], b).tolist(),
                        self.slots[lo:hi].tolist(), self.levels[lo:hi].tolist()))

    def with_slots(self, slots: dict[int, int]) -> "Overlay":
        """The same spans, coloured by `slots` (feature -> colour slot; 0 for a feature not in it)."""
        if not len(self.features) or not slots:
            return self
        keys = np.fromiter(slots.keys(), dtype=np.int64, count=len(slots))
        values = np.fromiter(slots.values(), dtype=np.int64, count=len(slots))
        order = np.argsort(keys)
        keys, values = keys[order], values[order]
        at = np.minimum(np.searchsorted(keys, self.features), len(keys) - 1)
        mapped = np.where(keys[at] == self.features, values[at], 0)
        return Overlay(self.starts, self.ends, mapped, self.levels, self.features)


@dataclass
class HighlightPlan:
    """What a result shows in a given view: the features that stand out there and their spans (colour slots
    not yet given: the ColorBook lives on the UI thread). Made in the analysis worker, so that the UI only
    colours it and swaps it in; `key` says which view and choice it was made for."""

    key: tuple  # (view start, view end, pinned feature or None, number of colours)
    features: list[int]
    overlay: Overlay
    scores: list[float] = field(default_factory=list)  # how distinctive each is in view (features.ranking)


def plan_highlights(analysis: Analysis, text: str, base: int, view: tuple[int, int], pinned: int | None, n_colours: int,
                    scales: np.ndarray) -> HighlightPlan:
    """The features in view (the pinned one alone, if any) and the overlay of the lines in view and a
    screenful above and below: the cost of a result must not grow with the document; scrolling plans again.
    `text` is the analysed text, which starts at document offset `base`; `view` is in document offsets."""
    start, end = view
    a, b = analysis.tokens_in(max(0, start - base), max(0, end - base))
    if pinned is not None:
        ranked = analysis.strongest_features(a, b, 1, scales, only=[pinned]) or [(pinned, 0.0)]
    else:
        ranked = analysis.strongest_features(a, b, min(n_colours, MAX_COLOURS), scales,
                                             min_score=MIN_SCORE if analysis.norms is not None else 0.0)
    features = [f for f, _ in ranked]
    margin = end - start
    tokens = analysis.tokens_in(max(0, start - margin - base), max(0, end + margin - base))
    overlay = build_overlay(analysis, text, features, {}, scales, base, tokens)
    return HighlightPlan((start, end, pinned, n_colours), features, overlay, [s for _, s in ranked])


def build_overlay(analysis: Analysis, text: str, features: list[int], slots: dict[int, int], scales: np.ndarray,
                  offset_base: int = 0, tokens: tuple[int, int] | None = None) -> Overlay:
    """Colour each token (of the range `tokens`, default all) by the strongest of `features` on it
    (activation over its scale). A feature missing from `slots` gets slot 0 (see Overlay.with_slots)."""
    a, b = (0, analysis.n_tokens) if tokens is None else tokens
    if not features or b <= a:
        return Overlay.empty()
    matrix = analysis.feature_matrix(features, a, b) / scales[features][:, None]
    best = matrix.argmax(axis=0)
    strength = matrix.max(axis=0)
    starts = analysis.offsets[a:b, 0].copy()
    ends = analysis.offsets[a:b, 1].copy()
    cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    if len(cps):
        first = cps[np.clip(starts, 0, len(cps) - 1)]
        leading_space = ((first == 32) | (first == 9)) & (ends - starts > 1)
        starts = starts + leading_space
        last = cps[np.clip(ends - 1, 0, len(cps) - 1)]
        starts_blank = np.isin(cps[np.clip(starts, 0, len(cps) - 1)], [10, 13, 32, 9]) & np.isin(last, [10, 13, 32, 9])
    else:
        starts_blank = np.zeros(len(starts), dtype=bool)
    keep = (strength >= MIN_INTENSITY) & ~starts_blank & (ends > starts)
    levels = np.minimum(LEVELS - 1, (np.minimum(strength, 1.0) * LEVELS).astype(np.int64))
    feature_ids = np.asarray(features, dtype=np.int64)[best]
    slot_of = np.asarray([slots.get(f, 0) for f in features], dtype=np.int64)[best]
    return Overlay(starts[keep] + offset_base, ends[keep] + offset_base, slot_of[keep], levels[keep], feature_ids[keep])
