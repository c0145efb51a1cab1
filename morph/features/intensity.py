"""A feature's unit of intensity, its "typical max": the one rule for what counts as full strength.

Highlight intensity (activation / unit, morph.features.engine.Engine.feature_scales) and steering strength
(strength x unit x decoder direction, morph.features.steering) both use `unit_scales`, so "strength 4" and
"a fully lit token" are measured in the same unit for every SAE, with statistics or without.

Per feature f, the first of these that is known and positive:
1. the statistics' typical max (morph.features.labels: the 0.99 quantile of f's active values on the
   corpus, else the largest value seen), where the SAE has a statistics file;
2. f's largest activation over the text being analysed (the document for highlights; the selection and
   the text before it for steering);
3. the median (the lower middle value for an even count), over the features that do fire in that text,
   of their largest activation there: a feature silent in the text (one found by a label search, say) is
   given the size of an ordinary activation of this SAE on this text;
4. FALLBACK_UNIT (no text analysed, or nothing fires in it).
"""

from __future__ import annotations

import numpy as np

FALLBACK_UNIT = 1.0


def unit_scales(d_sae: int, known: np.ndarray | None, observed: np.ndarray | None) -> np.ndarray:
    """[d_sae] float32, every value finite and > 0, by the rule in the module docstring.

    `known` [d_sae]: the statistics' typical max per feature (0, negative or non-finite = unknown), or None
    without statistics; `observed` [d_sae]: each feature's largest activation over the analysed text
    (0 where silent), or None when no text was analysed."""
    out = np.zeros(d_sae, dtype=np.float32)
    if observed is not None:
        seen = np.nan_to_num(np.asarray(observed, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        active = seen[seen > 0]
        out[:] = float(np.sort(active)[(len(active) - 1) // 2]) if len(active) else 0.0
        out = np.where(seen > 0, seen, out)
    if known is not None:
        stats = np.nan_to_num(np.asarray(known, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        out = np.where(stats > 0, stats, out)
    return np.where(out > 0, out, FALLBACK_UNIT).astype(np.float32)
