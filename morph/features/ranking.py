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

A feature of the grammar ("into · upon · over", "when · during · if") can be as unusual for a paragraph as a
feature of its subject, but a writer asking what a paragraph is about wants the subject. Where the statistics
give a feature's distinctive words, its score is weighed by how many of its first CONTENT_WORDS are content
words, not FUNCTION_WORDS (`content_share`): x (GRAMMAR_FLOOR + (1 - GRAMMAR_FLOOR) x share), so a feature of
function words alone keeps 0.8 of its score, and one without words (punctuation, numbers) too. Topical
paragraphs (benchmarks/labels.py, and two sets of ten on the issue's ten topics written for it in the
twentieth and twenty-first sessions): 88% named and 91% specific on the 32, unchanged; the first ten 7 -> 9
of 10 named (the storm and the love letter; the floor was chosen on them), the second ten, written after,
7 -> 8 (the love letter); floors 0.3-0.7 named no more there and listed fewer specific features on the 32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class FeatureNorms:
    """Per-feature corpus statistics, [d_sae] each (0 where unknown)."""

    density: np.ndarray
    mean: np.ndarray  # mean activation when active
    typical: np.ndarray  # typical max: the 0.99 quantile of active values (else the max seen)
    start: np.ndarray | None = None  # [positions, d_sae]: mean activation (zeros counted) at a text's first tokens
    content: np.ndarray | None = None  # [d_sae]: share of content words among its distinctive words (content_share)

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
GRAMMAR_FLOOR = 0.8  # the weight of a feature whose distinctive words are all function words (docstring)
CONTENT_WORDS = 5  # its first distinctive words that content_share reads

FUNCTION_WORDS = frozenset("""a an the and or but if then than so as of at by for from in into onto on off out
over under up down upon with within without about above below across after before behind beyond during through
throughout to toward towards until till via against among between around near since while when whenever where
wherever whether which who whom whose what whatever why how that this these those there here it its itself he
him his himself she her hers herself they them their theirs themselves we us our ours ourselves you your yours
yourself i me my mine myself one ones some any all each every both either neither no not nor none nothing
something anything everything someone anyone everyone somebody anybody nobody is are was were be been being am
do does did done doing have has had having will would shall should can could may might must ought let lets
just only also too very much many more most less least few fewer own same other another such even still yet
again ever never always often once twice already soon now later well back away way get got gets make made
take took go went gone come came say said tell told know knew see saw thing things time times re ve ll em th
ta de la el al""".split())


def content_share(words: Sequence[str]) -> float:
    """The share of content words (not FUNCTION_WORDS) among a feature's first CONTENT_WORDS distinctive words;
    0 for a feature without words."""
    first = [w.lower() for w in words[:CONTENT_WORDS]]
    return sum(w not in FUNCTION_WORDS for w in first) / len(first) if first else 0.0


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
    score = (observed - expected) / (expected + PSEUDO_COUNT)
    if norms.content is not None:
        score = score * (GRAMMAR_FLOOR + (1 - GRAMMAR_FLOOR) * norms.content[ids])
    return score
