"""Ranking features by what is distinctive for a text, not by how large their activations are.

For a feature f over a span of n tokens with activations a_i (0 where it is off), and its statistics on the
corpus: density p_f (share of tokens it fires on), mean activation when active m_f and typical max t_f (the
0.99 quantile of its active values):

    score_f = (sum_i a_i - n * p_f * m_f) / t_f

the activation mass beyond what the feature's density predicts for n tokens, in units of its typical max.
A feature that fires on nearly every token has an expected mass close to its mass and scores about 0, so it
never fills a list or a screen; a topical feature firing a few times at half its typical max scores a few
points. For one token this is (a - p_f m_f) / t_f. Features whose density is unknown (an SAE without a labels
file) count as never expected (p_f = 0), with this document's max as their scale.
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

    @property
    def expected(self) -> np.ndarray:
        """The activation mass each feature has on an average token."""
        return self.density * self.mean

    def scales(self, fallback: np.ndarray) -> np.ndarray:
        """Typical max where known, else `fallback` (e.g. this document's max); never 0."""
        scales = np.where(self.typical > 0, self.typical, fallback)
        return np.where(scales > 0, scales, 1.0).astype(np.float32)


def distinctiveness(ids: np.ndarray, mass: np.ndarray, n: int, norms: FeatureNorms | None,
                    fallback_scale: np.ndarray) -> np.ndarray:
    """score_f (module docstring) for the features `ids` with summed activation `mass` over `n` tokens;
    `fallback_scale[j]` is the scale of ids[j] where its typical max is unknown."""
    if norms is None:
        return mass / np.where(fallback_scale > 0, fallback_scale, 1.0)
    typical = norms.typical[ids]
    scale = np.where(typical > 0, typical, np.where(fallback_scale > 0, fallback_scale, 1.0))
    return (mass - n * norms.expected[ids]) / scale
