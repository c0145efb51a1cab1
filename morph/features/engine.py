"""The engine API that the editor and the CLI share: a Lens, its analyzer and its labels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol

import numpy as np

from morph.features.analysis import Analysis, AnalysisConfig, AnalysisEvent, Analyzer
from morph.features.labels import FeatureInfo, FeatureLabels, labels_for
from morph.features.ranking import FeatureNorms

if TYPE_CHECKING:
    from morph.features.concepts import Concept, ConceptMatch
    from morph.features.steering import CancelToken, Steerer, SteerEvent, SteerRequest, SteerResult


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
    """Transformers' progress bars and warnings would scribble over the terminal UI."""
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
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


class Engine:
    """The local engine: a Lens in this process, its analyzer and its labels."""

    def __init__(self, lens: Any, config: AnalysisConfig | None = None):
        self.lens = lens
        self.labels: FeatureLabels = labels_for(lens)
        self.analyzer = Analyzer(lens, config, self.labels.norms())

    @classmethod
    def load(cls, spec: Any, config: AnalysisConfig | None = None,
             progress: Callable[[str, float], None] | None = None) -> "Engine":
        """Load the Lens; `progress(what, done)` hears about a first conversion of the default model."""
        from morph.models.lens import load_lens

        quiet_hf()
        return cls(load_lens(spec, progress), config)

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

    def steerer(self) -> "Steerer":
        """The steering engine for this lens (made once): concepts, concept words, rewrites."""
        from morph.features.steering import steerer_for

        return steerer_for(self.lens)

    def feature_scales(self, analysis: Analysis) -> np.ndarray:
        return feature_scales(analysis, self.labels.norms())

    def feature_report(self, feature: int, analysis: Analysis) -> FeatureReport:
        return feature_report(self.labels.info(feature), analysis)


def feature_scales(analysis: Analysis, norms: FeatureNorms | None) -> np.ndarray:
    """Per feature, the activation that counts as full intensity: its typical max from the statistics
    file where known, else its max in this document."""
    fallback = analysis.feature_max()
    if norms is None:
        return np.where(fallback > 0, fallback, 1.0).astype(np.float32)
    return norms.scales(fallback)


def feature_report(info: FeatureInfo, analysis: Analysis) -> FeatureReport:
    """One feature (`info`) in one analysed document: where it fires and how strongly."""
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
