"""The engine API that the editor and the CLI share: a Lens, its analyzer, its labels and its steerer.

The one front door: the editor and the commands reach analysis, labels, feature details, the unit of
intensity and steering through an Engine, never through its Lens.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Callable, ContextManager, Iterator, Protocol

import numpy as np

from morph.features.analysis import Analysis, AnalysisConfig, AnalysisEvent, Analyzer, SharedPasses, shared_passes
from morph.features.batching import Batcher
from morph.features.checks import check_feature
from morph.features.intensity import unit_scales
from morph.features.labels import FeatureInfo, FeatureLabels, load_labels
from morph.features.prompts import prompt_features
from morph.features.ranking import FeatureNorms
from morph.models.lens import LensSpec

if TYPE_CHECKING:
    import torch

    from morph.features.concepts import Concept, ConceptMatch
    from morph.features.neuronpedia_fetch import FetchProgress, FetchResult
    from morph.features.prompts import PromptActivations, Steering
    from morph.features.steering import CancelToken, Steerer, SteerEvent, SteerRequest, SteerResult
    from morph.models.lens import Lens

PROMPT_BATCH = 16
"""At most this many prompts per forward pass (Engine.prompt_batches) ..."""
PROMPT_BATCH_TOKENS = 16_384
"""... and at most this many positions, padding included."""

__all__ = ["Engine", "EngineLike", "FeatureReport", "LabelsLike", "LensSpec", "Occurrence", "SteererLike",
           "TextWindow", "feature_report", "feature_scales", "quiet_hf"]


@dataclass(frozen=True)
class Occurrence:
    start: int
    end: int
    activation: float


@dataclass(frozen=True)
class TextWindow:
    """One window of a long text (morph.features.windows) and its analysis.

    The analysis covers text[base:end]: the window text[start:end] and, before it, its left context, which
    is analysed only so that the window's first tokens see the text before them. Offsets in the analysis
    count from `base`."""

    base: int
    start: int
    end: int
    analysis: Analysis


@dataclass(frozen=True)
class FeatureReport:
    """One feature in one document: its label and statistics, and where it fires."""

    info: FeatureInfo
    active_tokens: int
    total_tokens: int
    max_act: float
    mean_when_active: float
    occurrences: tuple[Occurrence, ...]  # every token where it fires, in document order


def quiet_hf() -> None:
    """Transformers' progress bars and warnings would scribble over the terminal UI. Through the
    environment where transformers is not imported yet (importing it costs ~1 s, and the default model
    loads without it)."""
    import os
    import sys

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


class LabelsLike(Protocol):
    """What the commands read of an engine's labels (FeatureLabels, or a server's through a RemoteEngine)."""

    source: str

    def label(self, feature: int) -> str: ...

    def info(self, feature: int) -> FeatureInfo: ...

    def search(self, query: str, limit: int = 10) -> list[int]: ...


class SteererLike(Protocol):
    """What the editor and the CLI use of a steerer: the local Steerer, or a server's
    (morph.server.remote.RemoteSteerer)."""

    def concepts(self, text: str, start: int, end: int, k: int = 10) -> list["Concept"]: ...

    def search(self, query: str, limit: int = 10) -> list["Concept"]: ...

    def more_like_this(self, example: str, text: str, start: int, end: int, k: int = 3) -> list["Concept"]: ...

    def concepts_for(self, words: str, text: str, start: int, end: int, k: int = 8,
                     example: str | None = None) -> list["ConceptMatch"]: ...

    def prepare(self, text: str, start: int, end: int, method: str = "auto") -> None: ...

    def label(self, feature: int) -> str: ...

    def run(self, text: str, start: int, end: int, request: "SteerRequest", cancel: "CancelToken | None" = None,
            on_event: Callable[["SteerEvent"], None] | None = None) -> "SteerResult": ...

    def stream(self, text: str, start: int, end: int, request: "SteerRequest",
               cancel: "CancelToken | None" = None) -> Iterator["SteerEvent"]: ...


class EngineLike(Protocol):
    """The engine's front door as the editor and the CLI use it: the local Engine and
    morph.server.remote.RemoteEngine both satisfy it."""

    @property
    def model_name(self) -> str: ...

    @property
    def sae_name(self) -> str: ...

    @property
    def labels(self) -> LabelsLike: ...

    def analyze(self, text: str, generation: int = 0, focus: int | None = None,
                should_stop: Callable[[], bool] | None = None,
                on_partial: Callable[[Analysis], None] | None = None,
                on_progress: Callable[[int, int], None] | None = None,
                checkpoint: Callable[[], None] | None = None) -> Analysis: ...

    def stream(self, text: str, generation: int = 0, focus: int | None = None,
               should_stop: Callable[[], bool] | None = None,
               checkpoint: Callable[[], None] | None = None) -> Iterator[AnalysisEvent]: ...

    def prepare(self, text: str, focus: int, should_stop: Callable[[], bool] | None = None,
                checkpoint: Callable[[], None] | None = None) -> bool: ...

    def analyze_windows(self, text: str, window_chars: int | None = None,
                        context_chars: int | None = None) -> Iterator[TextWindow]: ...

    def label(self, feature: int) -> str: ...

    def steerer(self) -> SteererLike: ...

    def feature_scales(self, analysis: Analysis) -> np.ndarray: ...

    def feature_report(self, feature: int, analysis: Analysis) -> FeatureReport: ...

    def when_labels_change(self, callback: Callable[[], None]) -> None: ...


class Engine:
    """One Lens and what the engine keeps about it: its labels (loaded once, morph.features.labels), its
    analyzer, and its steerer (made on first use). Thread-safe where its parts are (the analyzer runs one
    analysis at a time; forward passes hold the lens's lock)."""

    def __init__(self, lens: Lens, config: AnalysisConfig | None = None, fetch_labels: bool = False,
                 neuronpedia_url: str | None = None):
        """`fetch_labels`: the user allows the network for labels: an SAE with a Neuronpedia id and no cached
        explanations gets them in a background thread, and its labels change when they arrive."""
        self.lens = lens
        self.labels: FeatureLabels = load_labels(lens)
        self.analyzer = Analyzer(lens, config, self.labels.norms())
        self._steerer: Steerer | None = None
        self._steerer_lock = threading.Lock()
        self.labels_fetch: threading.Thread | None = None
        self.labels_fetch_error: str | None = None
        self._labels_listeners: list[Callable[[], None]] = []
        self.prompt_batches: Batcher[list[int], "torch.Tensor"] = Batcher(
            partial(prompt_features, lens), max_items=PROMPT_BATCH, max_cost=PROMPT_BATCH_TOKENS,
            cost=lambda rows: len(rows) * max(map(len, rows)))
        """Prompt forward passes (prompt_activations); those that arrive while one runs go together as the next."""
        if fetch_labels:
            self._fetch_labels_in_background(neuronpedia_url)

    @classmethod
    def load(cls, spec: LensSpec, config: AnalysisConfig | None = None,
             progress: Callable[[str, float], None] | None = None, fetch_labels: bool = False,
             neuronpedia_url: str | None = None) -> "Engine":
        """Load the Lens; `progress(what, done)` hears about a first conversion of the default model."""
        from morph.models.lens import load_lens

        quiet_hf()
        return cls(load_lens(spec, progress), config, fetch_labels, neuronpedia_url)

    @staticmethod
    def fetch_labels(spec: "LensSpec", base_url: str | None = None,
                     progress: Callable[["FetchProgress"], None] | None = None) -> "FetchResult":
        """Download the Neuronpedia explanations of the SAE `spec` names into Morph's cache, without loading
        the model or the SAE (morph.features.neuronpedia_fetch). An SAE without a Neuronpedia id, or a
        failed download, is an error with one line; nothing is written then."""
        from morph.features.neuronpedia import ExportError, NeuronpediaSource
        from morph.features.neuronpedia_fetch import fetch_explanations
        from morph.models.lens import sae_identity

        sae = sae_identity(spec)
        if not sae.neuronpedia_id:
            raise ExportError(f"SAE {sae.spec!r} has no Neuronpedia id, so Neuronpedia has no explanations of it "
                              "(its labels come from a labels.json beside it or its promoted tokens)")
        return fetch_explanations(NeuronpediaSource.parse(sae.neuronpedia_id), sae.d_sae, base_url, progress)

    def _fetch_labels_in_background(self, base_url: str | None) -> None:
        from morph.features.labels import neuronpedia_source

        source = neuronpedia_source(self.lens)
        if source is None or self.labels.from_neuronpedia:
            return  # nothing to fetch, or already cached

        def fetch() -> None:
            from morph.errors import MorphError
            from morph.features.neuronpedia import read_cache
            from morph.features.neuronpedia_fetch import fetch_explanations

            try:
                fetch_explanations(source, self.lens.d_sae, base_url)
            except MorphError as err:  # offline, no export: the labels stay as they are
                self.labels_fetch_error = str(err)
                return
            cached = read_cache(source)
            if cached is not None:
                self.labels.adopt(cached)
                for listener in list(self._labels_listeners):
                    listener()

        self.labels_fetch = threading.Thread(target=fetch, daemon=True, name="morph-labels-fetch")
        self.labels_fetch.start()

    def when_labels_change(self, callback: Callable[[], None]) -> None:
        """Call `callback` (from the fetching thread) when the labels change: Neuronpedia's explanations, fetched
        in the background, have arrived."""
        self._labels_listeners.append(callback)

    @property
    def model_name(self) -> str:
        return self.lens.model_name

    @property
    def sae_name(self) -> str:
        return self.lens.sae_name

    def analyze(self, text: str, generation: int = 0, focus: int | None = None,
                should_stop: Callable[[], bool] | None = None,
                on_partial: Callable[[Analysis], None] | None = None,
                on_progress: Callable[[int, int], None] | None = None,
                checkpoint: Callable[[], None] | None = None) -> Analysis:
        return self.analyzer.analyze(text, generation, focus, should_stop, on_partial, on_progress, checkpoint)

    def prepare(self, text: str, focus: int, should_stop: Callable[[], bool] | None = None,
                checkpoint: Callable[[], None] | None = None) -> bool:
        """Make the first edit at `focus` cheap (morph.features.analysis.Analyzer.prepare)."""
        return self.analyzer.prepare(text, focus, should_stop, checkpoint)

    def stream(self, text: str, generation: int = 0, focus: int | None = None,
               should_stop: Callable[[], bool] | None = None,
               checkpoint: Callable[[], None] | None = None) -> Iterator[AnalysisEvent]:
        """The analysis as events (morph.features.analysis.Analyzer.stream)."""
        return self.analyzer.stream(text, generation, focus, should_stop, checkpoint)

    def analyze_windows(self, text: str, window_chars: int | None = None,
                        context_chars: int | None = None) -> Iterator[TextWindow]:
        """`text` analysed a window at a time (morph.features.windows), each window with an analyzer of its
        own, so that memory follows the window, not the text. A text that fits in one window gives one window
        whose analysis is `analyze(text)`."""
        from morph.features.windows import CONTEXT_CHARS, WINDOW_CHARS, context_start, cut_windows

        for start, end in cut_windows(text, window_chars or WINDOW_CHARS):
            base = context_start(text, start, CONTEXT_CHARS if context_chars is None else context_chars)
            analyzer = Analyzer(self.lens, self.analyzer.config, self.labels.norms())
            yield TextWindow(base, start, end, analyzer.analyze(text[base:end]))

    def label(self, feature: int) -> str:
        return self.labels.label(feature)

    def check_feature(self, feature: object) -> int:
        """`feature` as a feature number of this SAE; InputError (one line) otherwise."""
        return check_feature(feature, self.lens.d_sae)

    def steerer(self) -> Steerer:
        """The steering engine for this lens and these labels (made once): concepts, concept words,
        rewrites. It keeps decoder directions and token masks between requests."""
        with self._steerer_lock:
            if self._steerer is None:
                from morph.features.steering import Steerer

                self._steerer = Steerer(self.lens, self.labels)
            return self._steerer

    def feature_scales(self, analysis: Analysis) -> np.ndarray:
        """Per feature [d_sae], the activation that counts as full intensity in `analysis` (feature_scales)."""
        return feature_scales(analysis, self.labels.norms())

    def feature_report(self, feature: int, analysis: Analysis) -> FeatureReport:
        """`feature`'s label and statistics, and every token of `analysis` where it fires."""
        return feature_report(self.labels.info(feature), analysis)

    # --- for a server: the model's sizes, an analyzer per document, prompts run as other servers run them ---
    @property
    def d_sae(self) -> int:
        return self.lens.d_sae

    @property
    def d_model(self) -> int:
        return self.lens.d_model

    @property
    def hook_name(self) -> str:
        """The SAE's hook point (SAE-Lens / TransformerLens name)."""
        return self.lens.hook.name

    @property
    def model_lock(self) -> "threading.RLock":
        """Held by every forward pass of the model (analysis, steering, prompts): whoever schedules turns at it
        (morph.server.turns) waits on it."""
        return self.lens.lock

    def new_analyzer(self, config: AnalysisConfig | None = None, passes: SharedPasses | None = None) -> Analyzer:
        """An analyzer of its own (its own block cache and key/values) for another document, on this model;
        with `passes` (`shared_passes`), its padded batches share forward passes with other documents'."""
        return Analyzer(self.lens, config or self.analyzer.config, self.labels.norms(), passes)

    def shared_passes(self, turn: Callable[[], ContextManager[None]] | None = None,
                      release: Callable[[], None] | None = None) -> SharedPasses:
        """Padded forward passes for the analyzers of several documents at once (a server's clients): batches
        submitted while a pass runs go together in the next (morph.features.analysis.shared_passes)."""
        return shared_passes(self.lens, self.analyzer.config.batch_tokens, turn, release)

    def prompt_activations(self, prompt: str, max_tokens: int, fold: bool = True) -> "PromptActivations":
        """BOS + the prompt, one forward pass, the SAE's activations at every position (morph.features.prompts),
        folded by the decoder norms when `fold` (as Neuronpedia folds them). Safe to call from many threads:
        prompts that arrive while the model is busy run together, as one batch (`prompt_batches`)."""
        from morph.features.prompts import prompt_activations

        return prompt_activations(self.lens, prompt, max_tokens, fold, self.prompt_batches)

    def steering(self, features: list[tuple[int, float]], vectors: list[tuple[list[float], float]] | None = None,
                 normalize: bool = False, method: str = "additive") -> "Steering":
        """What to edit into the activations at the hook while completing (morph.features.prompts.Steering):
        the features' decoder rows and raw `vectors`, each with its coefficient, added ("additive") or as the
        scale of the activations' component along them ("orthogonal")."""
        from morph.features.prompts import steering

        return steering(self.lens, features, vectors or [], normalize, method)

    def complete_stream(self, prompt: str, n_tokens: int, temperature: float = 1.0, freq_penalty: float = 0.0,
                        seed: int = 0, edit: "Steering | None" = None,
                        should_stop: Callable[[], bool] = lambda: False) -> Iterator[str]:
        """A plain sampled completion of BOS + `prompt` with `edit` applied at the hook: the completion so far
        after each token. It holds the model while it runs: consume it in one thread, to its end or close()."""
        from morph.features.prompts import prompt_ids, sample_completion

        return sample_completion(self.lens, prompt_ids(self.lens, prompt), n_tokens, temperature, freq_penalty,
                                 seed, edit, should_stop)


def feature_scales(analysis: Analysis, norms: FeatureNorms | None) -> np.ndarray:
    """Per feature [d_sae], the activation that counts as full intensity in `analysis`: the one rule of
    morph.features.intensity (statistics' typical max, else the max in this document, ...), the unit
    steering strengths are given in too. Shared by the local engine and a server's (morph.server.remote),
    which has the server's statistics."""
    return unit_scales(analysis.d_sae, norms.typical if norms is not None else None, analysis.feature_max())


def feature_report(info: FeatureInfo, analysis: Analysis) -> FeatureReport:
    """One feature (`info`: its label and statistics) in one analysed document: every token where it fires."""
    values = analysis.feature_values(info.id)
    active = np.nonzero(values > 0)[0]
    occurrences = tuple(
        Occurrence(int(analysis.offsets[i, 0]), int(analysis.offsets[i, 1]), float(values[i])) for i in active
    )
    return FeatureReport(
        info=info, active_tokens=len(active), total_tokens=analysis.n_tokens,
        max_act=float(values.max()) if len(values) else 0.0,
        mean_when_active=float(values[active].mean()) if len(active) else 0.0,
        occurrences=occurrences,
    )
