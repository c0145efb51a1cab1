"""Feature labels: Neuronpedia's explanations (cached), a labels file beside the SAE, or the decoder's promoted tokens.

The promoted-token source is always available offline: a feature's decoder direction, read through the
model's final norm and unembedding (morph.models.unembed), says which next tokens it pushes up. The files,
when present, win for the label text and add activation statistics: `labels.json` (morph-labels/1 or /2,
written by `morph train stats`) gives density, mean, max, quantiles, the distinctive words a feature fires
on, a few example contexts, the tokens it fires on most, and each feature's mean at a text's first tokens
(`start_means`); those statistics also rank features
(morph.features.ranking) and set each feature's typical max, the one unit of intensity in Morph.

The label text comes from, in order: Neuronpedia's explanations of the SAE cached by `morph labels fetch`
(morph.features.neuronpedia: the best one is the label, all of them are in FeatureInfo.explanations), a
Neuronpedia export file beside the SAE, the labels file, the promoted tokens. `FeatureLabels.source` says
which are in use.
"""

from __future__ import annotations

import dataclasses
import difflib
import gzip
import json
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from morph.features.checks import check_feature
from morph.features.neuronpedia import CachedExplanations, Explanation, ExportError, NeuronpediaSource, read_cache
from morph.features.ranking import FeatureNorms, content_share

if TYPE_CHECKING:
    from morph.models.lens import Lens

LABELS_FILE = "labels.json"
NEURONPEDIA_FILES = ("explanations.json", "explanations.json.gz", "neuronpedia.json", "neuronpedia.jsonl")


@dataclass(frozen=True)
class Context:
    """A short passage where the feature fires strongly: `token` is the firing token."""

    before: str
    token: str
    after: str
    activation: float

    def shown(self) -> tuple[str, str, str]:
        """(before, token, after) as one line shows them: runs of whitespace as one space, the spaces at the
        token's edges kept (" The" + " Red Cross" reads "The Red Cross", not "TheRed Cross"), a line break in
        the token as ⏎."""
        def squeeze(text: str) -> str:
            inner = " ".join(text.split())
            if not inner:
                return " " if text else ""
            return (" " if text[:1].isspace() else "") + inner + (" " if text[-1:].isspace() else "")

        return squeeze(self.before), self.token.replace("\n", "⏎"), squeeze(self.after)


@dataclass(frozen=True)
class FeatureInfo:
    id: int
    label: str
    density: float | None = None  # fraction of tokens on which the feature fires
    mean_act: float | None = None  # mean activation when active
    max_act: float | None = None
    top_tokens: tuple[tuple[str, int], ...] = ()  # tokens that most often activate it, with counts
    promoted: tuple[str, ...] = ()  # tokens its decoder direction promotes (the logit lens)
    says: tuple[str, ...] = ()  # words the model says more of, steered by it (morph.models.unembed; labels file)
    quantiles: tuple[tuple[float, float], ...] = ()  # (q, activation) of its active values
    words: tuple[tuple[str, float, int], ...] = ()  # distinctive words it fires on: (word, score, firings)
    contexts: tuple[Context, ...] = ()
    explanations: tuple[Explanation, ...] = ()  # Neuronpedia's, best first (the first is the label)

    @property
    def typical_max(self) -> float | None:
        """The 0.99 quantile of its active values where known, else its max: a feature's unit of intensity."""
        for q, value in self.quantiles:
            if q == 0.99 and value > 0:
                return value
        return self.max_act or None

    @property
    def output(self) -> tuple[str, ...]:
        """The words that say best what it does to the next token: the steered reading where the labels file
        holds it, else the logit lens's tokens."""
        return self.says or self.promoted

    def output_lines(self) -> list[str]:
        """What it does to the next token, as the details screen and `morph features --id` say it."""
        lines = [f"steered, the model says: {' '.join(self.says[:10])}"] if self.says else []
        return lines + [f"promotes (logit lens): {' '.join(self.promoted[:10]) or '—'}"]


def readable_token(token: str) -> str:
    token = token.replace("\n", "\\n").replace("\t", "\\t")
    return token.strip() or repr(token)[1:-1] or "␣"


@dataclass
class FeatureLabels:
    """Labels for every feature of one SAE. Thread-safe; promoted tokens are computed on demand."""

    d_sae: int
    source: str
    _file: dict[int, FeatureInfo] = field(default_factory=dict)
    _start: np.ndarray | None = None  # the labels file's start_means: [positions, d_sae] (FeatureNorms.start)
    _explanations: dict[int, str] = field(default_factory=dict)
    _neuronpedia: dict[int, tuple[Explanation, ...]] = field(default_factory=dict)
    _sources: tuple[str, ...] = ()  # the files in use, for `source`
    _promoted: dict[int, tuple[str, ...]] = field(default_factory=dict)
    _lens: Lens | None = None  # for the promoted tokens (None: no model to read them from)
    _norms: FeatureNorms | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def promoted(self, feature: int, k: int = 8) -> tuple[str, ...]:
        if feature in self._file and self._file[feature].promoted:
            return self._file[feature].promoted
        with self._lock:
            if feature not in self._promoted:
                self._promoted.update(_promoted_tokens(self._lens, [feature], k))
            return self._promoted[feature]

    def label(self, feature: int) -> str:
        self._check(feature)
        if feature in self._neuronpedia:
            return self._neuronpedia[feature][0].description
        if feature in self._explanations:
            return self._explanations[feature]
        if feature in self._file:
            return self._file[feature].label
        return " · ".join(self.promoted(feature)[:4]) or f"feature {feature}"

    def info(self, feature: int) -> FeatureInfo:
        self._check(feature)
        base = self._file.get(feature) or FeatureInfo(feature, "")
        return dataclasses.replace(base, id=feature, label=self.label(feature), promoted=self.promoted(feature),
                                   explanations=self._neuronpedia.get(feature, ()))

    @property
    def from_neuronpedia(self) -> bool:
        """Whether Neuronpedia's cached explanations are in use."""
        return bool(self._neuronpedia)

    def adopt(self, cached: CachedExplanations) -> None:
        """Use Neuronpedia's explanations `cached` from now on (a fetch that finished after the first load).
        Explanations of features this SAE does not have are left out."""
        features = {i: e for i, e in cached.features.items() if 0 <= i < self.d_sae and e}
        with self._lock:
            self._neuronpedia = features
            self._sources = (f"Neuronpedia explanations of {cached.source.id} (cached)",
                             *[s for s in self._sources if not s.startswith("Neuronpedia explanations")])
            self.source = ", ".join(self._sources) + " + promoted tokens"

    def typical_max(self, feature: int) -> float | None:
        """The statistics file's typical max of `feature` (finite and > 0), or None where it says nothing.
        The unit Morph measures intensity and strength in is morph.features.intensity.unit_scales."""
        self._check(feature)
        info = self._file.get(feature)
        value = info.typical_max if info else None
        return float(value) if value is not None and math.isfinite(value) and value > 0 else None

    def norms(self) -> FeatureNorms | None:
        """Density, mean and typical max of every feature from the statistics file, or None without one."""
        if not self._file:
            return None
        if self._norms is None:
            density = np.zeros(self.d_sae, dtype=np.float32)
            mean = np.zeros(self.d_sae, dtype=np.float32)
            typical = np.zeros(self.d_sae, dtype=np.float32)
            content = np.zeros(self.d_sae, dtype=np.float32)
            for i, info in self._file.items():
                if 0 <= i < self.d_sae:
                    density[i] = info.density or 0.0
                    mean[i] = info.mean_act or 0.0
                    typical[i] = info.typical_max or 0.0
                    content[i] = content_share([w for w, _, _ in info.words])
            start = self._start if self._start is not None and self._start.shape[1:] == (self.d_sae,) else None
            words = any(info.words for info in self._file.values())  # a labels file without words: no weighing
            self._norms = FeatureNorms(density, mean, typical, start, content if words else None)
        return self._norms

    def all_labels(self) -> list[str]:
        """Every label; the promoted-token ones are computed in batches (a few seconds for a large SAE)."""
        missing = [i for i in range(self.d_sae) if i not in self._neuronpedia
                   and i not in self._explanations and i not in self._file and i not in self._promoted]
        if missing and self._lens is not None:
            with self._lock:
                for start in range(0, len(missing), 2048):
                    self._promoted.update(_promoted_tokens(self._lens, missing[start:start + 2048], 8))
        return [self.label(i) for i in range(self.d_sae)]

    def search(self, query: str, limit: int = 10, whole_words: bool = False, forms: Sequence[str] = ()) -> list[int]:
        """Features for a concept, best first: those whose label or statistics hold `query` (or one of its
        other `forms`: angry finds "angrily") as a whole word (the tokens a feature fires on count most, then
        the label, then the tokens it promotes, then Neuronpedia's other explanations of it), then labels
        that contain it, then close fuzzy matches. Live features before dead ones. With `whole_words`, only
        the first kind ("sea" never finds "research" nor "see")."""
        query = query.strip().lower()
        if not query:
            return []
        if query.isdigit() and int(query) < self.d_sae:
            return [int(query)]
        family = {query, *(f.strip().lower() for f in forms if f.strip())}

        def place(words: list[str]) -> int | None:
            return next((k for k, w in enumerate(words) if w in family), None)

        labels = [text.lower() for text in self.all_labels()]
        ranked: dict[int, tuple] = {}
        for i, text in enumerate(labels):
            info = self._file.get(i)
            words = [w.lower() for w, _, _ in info.words] if info else []
            fires_on = [t.lower() for t, _ in info.top_tokens] if info else []
            promoted = [t.lower() for t in info.promoted] if info else []
            if (k := place(words)) is not None:
                ranked[i] = (0, k)
            elif (k := place(fires_on)) is not None:
                ranked[i] = (0, 10 + k)
            elif (k := place(_words(text))) is not None:
                ranked[i] = (1, k)
            elif (k := place(promoted)) is not None:
                ranked[i] = (2, k)
            elif any(place(_words(e.description.lower())) is not None for e in self._neuronpedia.get(i, ())[1:]):
                ranked[i] = (2, 100)
            elif query in text and not whole_words:
                ranked[i] = (3, text.find(query))
        found = sorted(ranked, key=lambda i: (self._dead(i), ranked[i]))
        if len(found) >= limit or whole_words:
            return found[:limit]
        scored = []
        for i, text in enumerate(labels):
            if i in ranked:
                continue
            best = max((difflib.SequenceMatcher(None, query, w).ratio() for w in _words(text)), default=0.0)
            if best >= 0.75:
                scored.append((best, i))
        scored.sort(key=lambda pair: (self._dead(pair[1]), -pair[0]))
        return (found + [i for _, i in scored])[:limit]

    def _dead(self, feature: int) -> bool:
        info = self._file.get(feature)
        return info is not None and info.density is not None and info.density <= 0

    def _check(self, feature: int) -> None:
        check_feature(feature, self.d_sae)


def _words(text: str) -> list[str]:
    return [w.strip(",;") for w in text.replace("·", " ").replace("/", " ").replace("→", " ").split() if w.strip(",;")]


def _promoted_tokens(lens: Lens | None, features: list[int], k: int) -> dict[int, tuple[str, ...]]:
    """The tokens each feature's decoder direction promotes most (morph.models.unembed)."""
    from morph.models.unembed import promoted_token_ids

    if lens is None:
        return {i: () for i in features}
    top = promoted_token_ids(lens.model, lens.sae.W_dec[features], 3 * k).tolist()
    out = {}
    for feature, ids in zip(features, top):
        words = [readable_token(lens.tokenizer.decode([t])) for t in ids]
        # byte pieces of multi-byte characters decode to U+FFFD: no use as a label
        out[feature] = tuple([w for w in words if "\ufffd" not in w][:k] or words[:k])
    return out


def _read_labels_file(path: Path) -> tuple[dict[int, FeatureInfo], np.ndarray | None]:
    """morph-labels/1 or /2 (the later adds quantiles, words and contexts, and may hold start_means): the
    features' records, and the mean activations at a text's first positions if the file has them."""
    data = json.loads(path.read_text(encoding="utf-8"))
    start = (data.get("start_means") or {}).get("values")
    out = {}
    for entry in data.get("features", []):
        out[int(entry["id"])] = FeatureInfo(
            id=int(entry["id"]), label=str(entry.get("label") or ""),
            density=entry.get("density"), mean_act=entry.get("mean_act"), max_act=entry.get("max_act"),
            top_tokens=tuple((str(t), int(c)) for t, c in entry.get("top_tokens", [])),
            promoted=tuple(str(t) for t in entry.get("promoted", [])),
            says=tuple(str(t) for t in entry.get("says", [])),
            quantiles=tuple(sorted((float(q), float(v)) for q, v in (entry.get("quantiles") or {}).items())),
            words=tuple((str(w), float(score), int(n)) for w, score, n in entry.get("words", [])),
            contexts=tuple(Context(str(c["before"]), str(c["token"]), str(c["after"]), float(c["act"]))
                           for c in entry.get("contexts", [])),
        )
    return out, np.asarray(start, dtype=np.float32) if start else None


def read_neuronpedia_export(path: Path) -> dict[int, str]:
    """Neuronpedia explanation exports: a JSON list (or JSON lines) of {index, description}."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        raw = handle.read()
    try:
        entries = json.loads(raw)
    except json.JSONDecodeError:
        entries = [json.loads(line) for line in raw.splitlines() if line.strip()]
    if isinstance(entries, dict):
        entries = entries.get("explanations", [])
    out: dict[int, str] = {}
    for entry in entries:
        index = entry.get("index", entry.get("feature"))
        text = entry.get("description") or entry.get("explanation")
        if index is not None and text:
            out.setdefault(int(index), str(text).strip())
    return out


def neuronpedia_source(lens: Lens) -> NeuronpediaSource | None:
    """The SAE's name on Neuronpedia, from its `neuronpedia_id` metadata (SAE-Lens sets it for registry
    SAEs; a local SAE's cfg.json may carry it), or None."""
    neuronpedia_id = lens.sae.cfg.metadata.get("neuronpedia_id")
    if not neuronpedia_id or not isinstance(neuronpedia_id, str):
        return None
    try:
        return NeuronpediaSource.parse(neuronpedia_id)
    except ExportError:
        return None


def load_labels(lens: Lens, extra: Path | None = None) -> FeatureLabels:
    """Labels for `lens`'s SAE from the best sources found (plus an explicit export file `extra`)."""
    labels = FeatureLabels(d_sae=lens.d_sae, source="decoder: promoted tokens", _lens=lens)
    folder = lens.sae_dir
    sources = []
    source = neuronpedia_source(lens)
    cached = read_cache(source) if source is not None else None
    if folder is not None and (folder / LABELS_FILE).is_file():
        labels._file, labels._start = _read_labels_file(folder / LABELS_FILE)
        sources.append("labels.json")
    for candidate in ([extra] if extra else []) + ([folder / n for n in NEURONPEDIA_FILES] if folder else []):
        if candidate is not None and candidate.is_file():
            labels._explanations = read_neuronpedia_export(candidate)
            sources.append(f"Neuronpedia export {candidate.name}")
            break
    labels._sources = tuple(sources)
    if sources:
        labels.source = ", ".join(sources) + " + promoted tokens"
    if cached is not None:
        labels.adopt(cached)
    return labels
