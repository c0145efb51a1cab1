"""Ranking features by what is distinctive for a text, not by how large their activations are.

For a feature f over a span of n tokens with activations a_i (0 where it is off), and its statistics on the
corpus: density p_f (share of tokens it fires on), mean activation when active m_f and typical max t_f (the
0.99 quantile of its active values), in units of t_f:

    observed_f = sum_i a_i / t_f        expected_f = n * p_f * m_f / t_f
    score_f = (observed_f - expected_f) / (expected_f + C)

how many times more activation the feature has here than its density predicts (its lift, minus one), with a
pseudo-count C = 0.2 typical maxima so that one weak firing of a very rare feature does not win on rarity
alone. A feature that fires on nearly every token scores about 0, and so does a feature of a whole register
(prose, dialogue) that fires on most tokens of a paragraph: its expected mass is large, so its lift is small.
A concept that fires a few times at a good strength where it is rarely expected scores high. Measured on the
32 paragraphs of benchmarks/data/topics.json (benchmarks/labels.py): the excess mass alone (the numerator)
named the topic in 41% and listed 42% paragraph-specific features; this score 78% and 88% (C = 0.1: 66% and
98%; C = 0.5: 75% and 74%), 84% and 88% once labels named word families (play · game, not play · played),
and 91% and 91% with the SAE retrained on a corpus balanced by file (2026-12-03). Features whose density is
unknown (an SAE without a labels file) count as never expected, with this document's max as their scale.

A text's first tokens are read with nothing before them but BOS, and there some features fire whatever the
words (the attention sink; in the default SAE "has · any · will" at the first token, "go · government · do"
through the first dozen): every text's first paragraph, and a heading above all, listed them first. Where the
statistics hold each feature's mean activation at a text's first positions (`FeatureNorms.start`, over
held-out runs of tokens read from BOS: morph.models.training.stats.start_means), a token at one of those
positions expects that mean where it is above the average token's (`FeatureNorms.expected_mass`; a feature
that fires less there than on average is not made more distinctive by it). The analysis runs only a text's
first segment from BOS (morph.features.analysis), so a token's place in the text is its place in the model's
window there, and past the first positions every token is an average one. On the topical paragraphs above:
88% and 91% (one paragraph's fifth feature lost, 2026-12-04); on a text's first paragraph it is what removes
those two.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FeatureNorms:
    """Per-feature corpus statistics, [d_sae] each (0 where unknown)."""

    density: np.ndarray
    mean: np.ndarray  # mean activation when active
    typical: np.ndarray  # typical max: the 0.99 quantile of active values (else the max seen)
    start: np.ndarray | None = None  # [positions, d_sae]: mean activation (zeros counted) at a text's first tokens

    @property
    def expected(self) -> np.ndarray:
        """The activation mass each feature has on an average token."""
        return self.density * self.mean

    def expected_mass(self, ids: np.ndarray, first: int | None, n: int) -> np.ndarray:
        """The activation mass the features `ids` are expected to have over n tokens from the text's token
        `first` on: n average tokens, but a token at one of a text's first positions expects what the feature
        does there (module docstring). `first` None: a span at no known place, n average tokens."""
        base = self.expected[ids]
        mass = n * base
        if self.start is not None and first is not None and first < len(self.start):
            mass = mass + np.maximum(self.start[first:first + n][:, ids] - base, 0).sum(axis=0)
        return mass


PSEUDO_COUNT = 0.2  # C above, in typical maxima


def distinctiveness(ids: np.ndarray, mass: np.ndarray, n: int, norms: FeatureNorms | None,
                    fallback_scale: np.ndarray, first: int | None = None) -> np.ndarray:
    """score_f (module docstring) for the features `ids` with summed activation `mass` over `n` tokens from the
    text's token `first` on (None: at no known place); `fallback_scale[j]` is the scale of ids[j] where its
    typical max is unknown."""
    if norms is None:
        return mass / np.where(fallback_scale > 0, fallback_scale, 1.0)
    typical = norms.typical[ids]
    scale = np.where(typical > 0, typical, np.where(fallback_scale > 0, fallback_scale, 1.0))
    observed = mass / scale
    expected = norms.expected_mass(ids, first, n) / scale
    return (observed - expected) / (expected + PSEUDO_COUNT)
