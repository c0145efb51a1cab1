"""Typed messages that background work posts to the UI."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    import numpy as np

    from morph.features.analysis import Analysis
    from morph.features.engine import EngineLike
    from morph.features.highlights import HighlightPlan


class EngineReady(Message):
    def __init__(self, engine: EngineLike, seconds: float) -> None:
        super().__init__()
        self.engine = engine
        self.seconds = seconds


class EngineProgress(Message):
    """Loading the model takes a while (a first conversion of the default): what is happening, 0..1 done."""

    def __init__(self, what: str, done: float) -> None:
        super().__init__()
        self.what = what
        self.done = done


class EngineFailed(Message):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class AnalysisReady(Message):
    def __init__(self, analysis: Analysis, partial: bool, offset_base: int = 0,
                 scales: np.ndarray | None = None, plan: HighlightPlan | None = None) -> None:
        super().__init__()
        self.analysis = analysis
        self.partial = partial
        self.offset_base = offset_base  # where the analysed window starts in the document
        self.scales = scales  # Engine.feature_scales(analysis), computed in the worker (None: not yet)
        self.plan = plan  # the HighlightPlan for the view the analysis started in (None: none)
        self.drawn = threading.Event()  # set once the screen shows it (or it was dropped as stale)


class AnalysisProgress(Message):
    """How many of the blocks an analysis must compute are done."""

    def __init__(self, generation: int, done: int, total: int) -> None:
        super().__init__()
        self.generation = generation
        self.done = done
        self.total = total


class AnalysisFailed(Message):
    """`server`: "down" (a remote engine's server cannot be reached: retried) or "refused" (the key)."""

    def __init__(self, generation: int, error: str, server: str = "") -> None:
        super().__init__()
        self.generation = generation
        self.error = error
        self.server = server


class FeatureChosen(Message):
    """The writer picked a feature in the panel (to pin it, or to see its details)."""

    def __init__(self, feature: int, detail: bool = False) -> None:
        super().__init__()
        self.feature = feature
        self.detail = detail
