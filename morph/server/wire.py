"""The wire format between `morph serve` and a RemoteEngine: JSON, never a Python object format.

An array travels as {"dtype", "shape", "b64"}: its bytes, little-endian, base64, with only the numeric
dtypes Morph uses accepted back, so a result through the server equals the local one bit for bit.

An analysis travels as a *delta* against one the client already holds (its `revision`): the tokens at the
start and at the end whose rows are identical (token id, offsets, the end shifted by the change in length,
sparse features, activations, reconstruction error) are kept from the held analysis and only the rows
between travel. After a keystroke that is the edited block's tokens (analysis.py: the other blocks are
reused, so their rows are equal), so what crosses the wire follows the edit, not the document. A client
without that revision gets the whole analysis (a delta with nothing kept).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np

from morph.errors import MorphError
from morph.features.analysis import Analysis, AnalysisStats
from morph.features.labels import Context, FeatureInfo
from morph.features.ranking import FeatureNorms

ALLOWED_DTYPES = frozenset({"<f2", "<f4", "<f8", "<i4", "<i8", "<u4", "|b1"})

API_VERSION = 2
"""The protocol's version (2: activations travel as `hook_acts`); a client refuses a server of another."""


class WireError(MorphError):
    """A message that does not follow the wire format."""


def encode_array(array: np.ndarray) -> dict:
    array = np.ascontiguousarray(array)
    dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
    little = array.astype(dtype, copy=False)
    return {"dtype": dtype.str, "shape": list(array.shape), "b64": base64.b64encode(little.tobytes()).decode("ascii")}


def decode_array(data: dict) -> np.ndarray:
    try:
        dtype, shape, raw = str(data["dtype"]), [int(n) for n in data["shape"]], base64.b64decode(data["b64"])
    except (KeyError, TypeError, ValueError) as err:
        raise WireError(f"bad array on the wire: {err}") from None
    if dtype not in ALLOWED_DTYPES:
        raise WireError(f"bad array on the wire: dtype {dtype!r} is not accepted")
    count = int(np.prod(shape)) if shape else 1
    if any(n < 0 for n in shape) or count * np.dtype(dtype).itemsize != len(raw):
        raise WireError("bad array on the wire: its shape does not match its bytes")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


@dataclass(frozen=True)
class AnalysisDelta:
    """A new analysis as rows kept from a held one (`base`, a revision; None: nothing held) and rows sent.

    The new analysis has the base's first `head` token rows, then the rows in `middle` (an Analysis whose
    indptr counts from 0), then the base's last `tail` rows with their offsets shifted by
    `text_length - base.text_length`."""

    revision: int
    base: int | None
    head: int
    tail: int
    middle: Analysis


def _rows_equal(a: Analysis, ia: np.ndarray, b: Analysis, ib: np.ndarray, shift: int) -> np.ndarray:
    """Per pair of rows (a's ia[k], b's ib[k]): whether everything but the sparse features is equal (the
    offsets of b's rows are compared with a's shifted by `shift`), and the nonzero counts too."""
    nnz_a = np.diff(a.indptr)[ia]
    nnz_b = np.diff(b.indptr)[ib]
    eq = (a.token_ids[ia] == b.token_ids[ib]) & (nnz_a == nnz_b) & (a.sse[ia] == b.sse[ib])
    eq &= ((a.offsets[ia] + shift) == b.offsets[ib]).all(axis=1)
    xa, xb = a.hook_acts, b.hook_acts
    if xa.shape[1:] == xb.shape[1:]:
        eq &= (xa[ia].view(np.uint16) == xb[ib].view(np.uint16)).all(axis=1) if xa.dtype == np.float16 \
            else (xa[ia] == xb[ib]).all(axis=1)
    else:
        eq[:] = False
    return eq


def _first_false(mask: np.ndarray) -> int:
    bad = np.flatnonzero(~mask)
    return int(bad[0]) if len(bad) else len(mask)


def common_rows(old: Analysis, new: Analysis) -> tuple[int, int]:
    """(head, tail): how many token rows at the start and at the end of `new` equal `old`'s (module
    docstring); head + tail <= the smaller token count."""
    m = min(old.n_tokens, new.n_tokens)
    idx = np.arange(m)
    head = _first_false(_rows_equal(old, idx, new, idx, 0))
    if head:  # the features of the equal rows: the same counts, so the flat arrays line up
        end = int(new.indptr[head])
        same = (old.indices[:end] == new.indices[:end]) & (old.values[:end] == new.values[:end])
        first = _first_false(same)
        if first < end:
            head = min(head, int(np.searchsorted(new.indptr, first, side="right")) - 1)
    room = m - head
    shift = new.text_length - old.text_length
    back = np.arange(1, room + 1)  # the last row, the one before, ...
    tail = _first_false(_rows_equal(old, old.n_tokens - back, new, new.n_tokens - back, shift))
    if tail:
        lo_old, lo_new = int(old.indptr[old.n_tokens - tail]), int(new.indptr[new.n_tokens - tail])
        same = (old.indices[lo_old:][::-1] == new.indices[lo_new:][::-1]) & \
               (old.values[lo_old:][::-1] == new.values[lo_new:][::-1])
        first = _first_false(same)  # counted from the end
        if first < len(same):
            row = int(np.searchsorted(new.indptr, len(new.indices) - 1 - first, side="right")) - 1
            tail = min(tail, new.n_tokens - 1 - row)
    return head, tail


def rows(analysis: Analysis, a: int, b: int) -> Analysis:
    """Token rows [a, b) of `analysis` as an Analysis of their own (indptr from 0, no paragraphs)."""
    lo, hi = int(analysis.indptr[a]), int(analysis.indptr[b])
    return Analysis(analysis.generation, analysis.text_length, analysis.token_ids[a:b], analysis.offsets[a:b],
                    analysis.indptr[a:b + 1] - lo, analysis.indices[lo:hi], analysis.values[lo:hi],
                    analysis.hook_acts[a:b], analysis.sse[a:b], analysis.paragraphs, analysis.stats, analysis.d_sae,
                    markup=analysis.markup)


def make_delta(revision: int, new: Analysis, base: tuple[int, Analysis] | None) -> AnalysisDelta:
    head = tail = 0
    if base is not None:
        head, tail = common_rows(base[1], new)
    return AnalysisDelta(revision, base[0] if base else None, head, tail, rows(new, head, new.n_tokens - tail))


def apply_delta(delta: AnalysisDelta, base: Analysis | None, norms: FeatureNorms | None) -> Analysis:
    """The analysis `delta` describes, built on `base` (the held analysis of revision delta.base)."""
    mid = delta.middle
    if delta.head == delta.tail == 0:
        parts = [mid]
    else:
        if base is None or delta.head + delta.tail > base.n_tokens:
            raise WireError("the server sent a change to an analysis this client does not hold")
        shift = mid.text_length - base.text_length
        tail = rows(base, base.n_tokens - delta.tail, base.n_tokens)
        tail = Analysis(0, 0, tail.token_ids, tail.offsets + shift, tail.indptr, tail.indices, tail.values,
                        tail.hook_acts, tail.sse, [], tail.stats, tail.d_sae)
        parts = [rows(base, 0, delta.head), mid, tail]
    counts = np.concatenate([np.diff(p.indptr) for p in parts])
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(mid.indptr.dtype)
    return Analysis(mid.generation, mid.text_length,
                    np.concatenate([p.token_ids for p in parts]), np.concatenate([p.offsets for p in parts]),
                    indptr, np.concatenate([p.indices for p in parts]), np.concatenate([p.values for p in parts]),
                    np.concatenate([p.hook_acts for p in parts]), np.concatenate([p.sse for p in parts]),
                    list(mid.paragraphs), mid.stats, mid.d_sae, norms, list(mid.markup))


def analysis_to_json(analysis: Analysis) -> dict:
    return {
        "generation": analysis.generation, "text_length": analysis.text_length,
        "token_ids": encode_array(analysis.token_ids), "offsets": encode_array(analysis.offsets),
        "indptr": encode_array(analysis.indptr), "indices": encode_array(analysis.indices),
        "values": encode_array(analysis.values), "hook_acts": encode_array(analysis.hook_acts),
        "sse": encode_array(analysis.sse),
        "paragraphs": [list(p) for p in analysis.paragraphs], "markup": list(analysis.markup),
        "d_sae": analysis.d_sae,
        "stats": {"elapsed_s": analysis.stats.elapsed_s, "total_tokens": analysis.stats.total_tokens,
                  "computed_tokens": analysis.stats.computed_tokens,
                  "computed_blocks": analysis.stats.computed_blocks,
                  "reused_blocks": analysis.stats.reused_blocks, "complete": analysis.stats.complete},
    }


def analysis_from_json(data: dict, norms: FeatureNorms | None = None) -> Analysis:
    try:
        stats = data["stats"]
        return Analysis(
            int(data["generation"]), int(data["text_length"]), decode_array(data["token_ids"]),
            decode_array(data["offsets"]), decode_array(data["indptr"]), decode_array(data["indices"]),
            decode_array(data["values"]), decode_array(data["hook_acts"]), decode_array(data["sse"]),
            [(int(a), int(b)) for a, b in data["paragraphs"]],
            AnalysisStats(float(stats["elapsed_s"]), int(stats["total_tokens"]), int(stats["computed_tokens"]),
                          int(stats["computed_blocks"]), int(stats["reused_blocks"]), bool(stats["complete"])),
            int(data["d_sae"]), norms, [int(n) for n in data.get("markup", [])])
    except (KeyError, TypeError, ValueError) as err:
        raise WireError(f"bad analysis on the wire: {err!r}") from None


def delta_to_json(delta: AnalysisDelta) -> dict:
    return {"revision": delta.revision, "base": delta.base, "head": delta.head, "tail": delta.tail,
            "middle": analysis_to_json(delta.middle)}


def delta_from_json(data: dict) -> AnalysisDelta:
    try:
        base = data["base"]
        return AnalysisDelta(int(data["revision"]), None if base is None else int(base), int(data["head"]),
                             int(data["tail"]), analysis_from_json(data["middle"]))
    except (KeyError, TypeError, ValueError) as err:
        raise WireError(f"bad analysis change on the wire: {err!r}") from None


def norms_to_json(norms: FeatureNorms | None) -> dict | None:
    if norms is None:
        return None
    return {"density": encode_array(norms.density), "mean": encode_array(norms.mean),
            "typical": encode_array(norms.typical),
            "start": encode_array(norms.start) if norms.start is not None else None,
            "content": encode_array(norms.content) if norms.content is not None else None}


def norms_from_json(data: dict | None) -> FeatureNorms | None:
    if data is None:
        return None
    start, content = data.get("start"), data.get("content")
    return FeatureNorms(decode_array(data["density"]), decode_array(data["mean"]), decode_array(data["typical"]),
                        decode_array(start) if start is not None else None,
                        decode_array(content) if content is not None else None)


def info_to_json(info: FeatureInfo) -> dict:
    return {"id": info.id, "label": info.label, "density": info.density, "mean_act": info.mean_act,
            "max_act": info.max_act, "top_tokens": [list(t) for t in info.top_tokens],
            "promoted": list(info.promoted), "says": list(info.says), "quantiles": [list(q) for q in info.quantiles],
            "words": [list(w) for w in info.words],
            "contexts": [{"before": c.before, "token": c.token, "after": c.after, "activation": c.activation}
                         for c in info.contexts]}


def info_from_json(data: dict) -> FeatureInfo:
    def opt(value: object) -> float | None:
        return None if value is None else float(value)  # type: ignore[arg-type]

    try:
        return FeatureInfo(
            id=int(data["id"]), label=str(data["label"]), density=opt(data.get("density")),
            mean_act=opt(data.get("mean_act")), max_act=opt(data.get("max_act")),
            top_tokens=tuple((str(t), int(n)) for t, n in data.get("top_tokens", [])),
            promoted=tuple(str(t) for t in data.get("promoted", [])),
            says=tuple(str(t) for t in data.get("says", [])),
            quantiles=tuple((float(q), float(v)) for q, v in data.get("quantiles", [])),
            words=tuple((str(w), float(s), int(n)) for w, s, n in data.get("words", [])),
            contexts=tuple(Context(str(c["before"]), str(c["token"]), str(c["after"]), float(c["activation"]))
                           for c in data.get("contexts", [])))
    except (KeyError, TypeError, ValueError) as err:
        raise WireError(f"bad feature on the wire: {err!r}") from None


def to_json(obj: object) -> object:
    """A dataclass of numbers, strings, tuples and dataclasses (steering's requests, concepts, candidates,
    events) as JSON: objects for dataclasses, arrays for tuples."""
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj) if not f.name.startswith("_")}
    if isinstance(obj, (tuple, list)):
        return [to_json(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def from_json(cls: type, data: object) -> object:
    """The inverse of to_json for dataclass `cls`, led by its type hints; a value of the wrong kind is a
    WireError."""
    import dataclasses
    import types
    import typing

    def convert(tp: object, value: object) -> object:
        origin = typing.get_origin(tp)
        if dataclasses.is_dataclass(tp):
            return from_json(tp, value)  # type: ignore[arg-type]
        if origin in (typing.Union, types.UnionType):
            if value is None:
                return None
            options = [a for a in typing.get_args(tp) if a is not type(None)]
            for option in options:  # the first that fits the value's kind
                if option in (int, float, str, bool) and isinstance(value, option) and \
                        not (option in (int, float) and isinstance(value, bool)):
                    return value
            return convert(options[0], value)
        if origin is tuple:
            args = typing.get_args(tp)
            if not isinstance(value, list):
                raise WireError(f"expected an array, not {value!r}")
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(convert(args[0], v) for v in value)
            if len(args) != len(value):
                raise WireError(f"expected {len(args)} items, not {len(value)}")
            return tuple(convert(a, v) for a, v in zip(args, value))
        if tp is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise WireError(f"expected a number, not {value!r}")
            return float(value)
        if tp is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise WireError(f"expected an integer, not {value!r}")
            return value
        if tp in (str, bool):
            if not isinstance(value, tp):  # type: ignore[arg-type]
                raise WireError(f"expected {tp.__name__}, not {value!r}")  # type: ignore[union-attr]
            return value
        return value

    if not isinstance(data, dict):
        raise WireError(f"expected an object for {cls.__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = set(data) - known
    if unknown:
        raise WireError(f"{cls.__name__} has no field {sorted(unknown)[0]!r}")
    try:
        return cls(**{name: convert(hints[name], value) for name, value in data.items()})
    except TypeError as err:
        raise WireError(f"bad {cls.__name__}: {err}") from None
