"""Choosing what to steer toward: features active in a selection, a label search, "more like this".

All of it reads the SAE's features at the hook point; nothing here generates text. The selection is
read with its left context (the tokens before it, up to the model's context size), so its features are
the ones the editor shows for it.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

from morph.errors import InputError


@dataclass(frozen=True)
class Concept:
    """A feature offered as a steering target."""

    id: int
    label: str
    activation: float  # mean over the selection's tokens (more-like-this: example minus selection; search: 0)
    max_act: float | None = None  # typical max activation from the labels file, if known


@dataclass
class SpanFeatures:
    """SAE features of the tokens around a selection (torch tensors, float32, on the lens's device)."""

    window: Any  # [n_window, d_sae]: every token of the window read (BOS excluded)
    span: Any  # [n_span, d_sae]: the tokens overlapping the selection
    n_span: int


def forward_lock(lens: Any) -> threading.RLock:
    """A re-entrant lock per lens that the steerer holds around each forward pass of the model.

    Forward hooks are registered on the model's modules, so two threads running the same model with hooks
    (analysis and steering) must not interleave their passes; other engine code may take this lock too.
    """
    lock = getattr(lens, "_morph_forward_lock", None)
    if lock is None:
        lock = threading.RLock()
        try:
            object.__setattr__(lens, "_morph_forward_lock", lock)
        except AttributeError:  # a Lens with __slots__: fall back to one process-wide lock
            lock = _GLOBAL_LOCK
    return lock


_GLOBAL_LOCK = threading.RLock()


def check_span(text: str, start: int, end: int) -> None:
    """InputError (one line) unless [start, end) is a non-empty range of `text` with words in it."""
    if not isinstance(text, str):
        raise InputError("the document is not text")
    if not isinstance(start, int) or not isinstance(end, int):
        raise InputError("the selection offsets must be whole numbers")
    if start < 0 or end > len(text) or start > end:
        raise InputError(f"the selection [{start}, {end}) is outside the text (0 to {len(text)} characters)")
    if start == end:
        raise InputError("the selection is empty: select the text to rewrite")
    if not text[start:end].strip():
        raise InputError("the selection is only whitespace: select words to rewrite")


def check_feature(lens: Any, feature: Any) -> int:
    if isinstance(feature, bool) or not isinstance(feature, int):
        try:
            feature = int(feature)
        except (TypeError, ValueError):
            raise InputError(f"feature {feature!r} is not a feature number") from None
    if not 0 <= feature < lens.d_sae:
        raise InputError(f"feature {feature} does not exist: this SAE has features 0 to {lens.d_sae - 1}")
    return feature


def _labels(lens: Any) -> Any:
    try:
        from morph.features.labels import labels_for
    except ImportError:  # pragma: no cover - labels are part of the package
        return None
    return labels_for(lens)


def feature_label(lens: Any, feature: int) -> str:
    labels = _labels(lens)
    return labels.label(feature) if labels is not None else f"feature {feature}"


def labelled_max_act(lens: Any, feature: int) -> float | None:
    labels = _labels(lens)
    value = labels.typical_max(feature) if labels is not None else None
    return float(value) if value is not None and math.isfinite(value) and value > 0 else None


def token_ids(lens: Any, text: str) -> list[int]:
    return list(lens.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def encode_tokens(lens: Any, ids: list[int]) -> Any:
    """SAE features [len(ids), d_sae] of `ids` read as one sequence (BOS prepended when the SAE wants it)."""
    import torch

    from morph.models.hooks import capture

    bos = [lens.bos_token_id] if (lens.prepend_bos and lens.bos_token_id is not None) else []
    ids = list(ids)[-(lens.context_size - len(bos)):]
    if not ids:
        return torch.zeros((0, lens.d_sae), device=lens.device)
    input_ids = torch.tensor([bos + ids], device=lens.device)
    with forward_lock(lens):
        acts = capture(lens.model, lens.hook, input_ids)
    with torch.inference_mode():
        feats = lens.sae.encode(acts[0, len(bos):].to(lens.sae.W_dec.dtype))
    return feats.float()


def span_features(lens: Any, text: str, start: int, end: int) -> SpanFeatures:
    """The features of the tokens overlapping [start, end), read with the text before as context."""
    check_span(text, start, end)
    enc = lens.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    inside = [k for k, (a, b) in enumerate(offsets) if b > start and a < end and b > a]
    if not inside:
        raise InputError("the selection has no tokens")
    first, last = inside[0], inside[-1]
    room = lens.context_size - 1
    lo = max(0, last + 1 - room)
    if first < lo:
        raise InputError(f"the selection is too long to read at once ({last + 1 - first} tokens; at most {room})")
    feats = encode_tokens(lens, ids[lo:last + 1])
    return SpanFeatures(window=feats, span=feats[first - lo:], n_span=last + 1 - first)


def typical_max(lens: Any, feature: int, window: Any = None) -> float:
    """The feature's typical max activation: the labels file's, else its max on `window`, else a guess.

    The guess (a feature silent on the document) is the median of the max activations of the features
    that do fire on the window, or 1.0 with no window.
    """
    known = labelled_max_act(lens, feature)
    if known is not None:
        return known
    if window is not None and len(window):
        col = float(window[:, feature].max())
        if col > 0:
            return col
        per_feature = window.max(dim=0).values
        active = per_feature[per_feature > 0]
        if len(active):
            return float(active.median())
    return 1.0


def concepts_in_span(lens: Any, text: str, start: int, end: int, k: int = 10,
                     features: SpanFeatures | None = None) -> list[Concept]:
    """The `k` features with the highest mean activation over the selection's tokens, strongest first."""
    feats = features or span_features(lens, text, start, end)
    mean = feats.span.mean(dim=0)
    k = max(0, min(k, int((mean > 0).sum())))
    if k == 0:
        return []
    values, ids = mean.topk(k)
    return [Concept(int(i), feature_label(lens, int(i)), float(v), labelled_max_act(lens, int(i)))
            for v, i in zip(values.tolist(), ids.tolist())]


def search_concepts(lens: Any, query: str, limit: int = 10) -> list[Concept]:
    """Features whose label matches `query` (FeatureLabels.search's order, dead features last); InputError
    when none does."""
    labels = _labels(lens)
    query = (query or "").strip()
    if not query:
        raise InputError("the concept text is empty")
    found = labels.search(query, limit=limit) if labels is not None else []
    if not found:
        raise InputError(f"no feature label matches {query!r}: try another word, or give a feature number")
    concepts = [Concept(int(i), feature_label(lens, int(i)), 0.0, labelled_max_act(lens, int(i))) for i in found]
    if any(c.max_act is not None for c in concepts):  # statistics known: features that never fire go last
        concepts.sort(key=lambda c: c.max_act is None)
    return concepts


def more_like_this(lens: Any, example: str, text: str, start: int, end: int, k: int = 3) -> list[Concept]:
    """The features whose mean activation on `example` most exceeds their mean on the selection.

    `activation` is that difference; steer toward all of them at once for "make it more like this".
    """
    if not (example or "").strip():
        raise InputError("the example is empty: give a passage to imitate")
    sel = span_features(lens, text, start, end).span.mean(dim=0)
    ex_ids = token_ids(lens, example)
    ex = encode_tokens(lens, ex_ids).mean(dim=0)
    diff = ex - sel
    k = max(0, min(k, int((diff > 0).sum())))
    if k == 0:
        raise InputError("no feature is stronger in the example than in the selection")
    values, ids = diff.topk(k)
    return [Concept(int(i), feature_label(lens, int(i)), float(v), labelled_max_act(lens, int(i)))
            for v, i in zip(values.tolist(), ids.tolist())]
