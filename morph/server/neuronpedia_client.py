"""A self-hosted Neuronpedia inference server as Morph's engine, for what it offers: per-token top features.

`--server 'neuronpedia+http://HOST:PORT?model=MODEL&source=SOURCE'` (optionally `&topk=K`, default 16). The
text is sent a window of about WINDOW_CHARS characters at a time (morph.features.windows: cut between
paragraphs) to POST /v1/activation/topk-by-token, and each window's tokens are placed back on the text by
their strings (a token whose string is not found where the previous one ended, e.g. a byte piece of a
character, gets an empty span there). What such a server does not give, Morph goes without: no labels (a
feature is "feature N"), no corpus statistics (features are ranked by activation), no explained variance,
no incremental analysis (each pause sends the whole text) and no rewrites (its /v1/steer/completion
continues a prompt; Morph's steering rewrites a passage).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable, Iterator
from urllib.parse import parse_qs, urlsplit, urlunsplit

import numpy as np

from morph.errors import InputError, ServerError
from morph.features.analysis import (Analysis, AnalysisCancelled, AnalysisEvent, AnalysisStats, BlockProgress,
                                     FinalResult, drain, find_paragraphs, paragraph_marks)
from morph.features.engine import FeatureReport, TextWindow, feature_report, feature_scales
from morph.features.labels import FeatureInfo

SCHEME = "neuronpedia+"
WINDOW_CHARS = 2_000
DEFAULT_TOPK = 16


@dataclass(frozen=True)
class NeuronpediaTarget:
    url: str  # http(s)://host:port
    model: str
    source: str
    topk: int = DEFAULT_TOPK


def parse_target(url: str) -> NeuronpediaTarget:
    parts = urlsplit(url[len(SCHEME):] if url.startswith(SCHEME) else url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(f"--server {url}: give neuronpedia+http://HOST:PORT?model=MODEL&source=SOURCE")
    if not query.get("model") or not query.get("source"):
        raise InputError(f"--server {url}: a Neuronpedia server needs ?model=...&source=... (the SAE's id)")
    try:
        topk = int(query.get("topk", DEFAULT_TOPK))
    except ValueError:
        raise InputError(f"--server {url}: topk must be a number") from None
    return NeuronpediaTarget(urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", "")),
                             query["model"], query["source"], max(1, topk))


class NeuronpediaLabels:
    """No labels from an inference server: a feature is its number."""

    source = "none (a Neuronpedia inference server has no labels)"

    def label(self, feature: int) -> str:
        return f"feature {feature}"

    def info(self, feature: int) -> FeatureInfo:
        return FeatureInfo(feature, self.label(feature))

    def search(self, query: str, limit: int = 10) -> list[int]:
        return [int(query)] if query.strip().isdigit() else []


class NeuronpediaEngine:
    """The engine's front door (EngineLike) over a Neuronpedia inference server (module docstring)."""

    def __init__(self, url: str, secret_key: str | None = None) -> None:
        from morph.server.remote import KEY_ENV, HttpClient

        self.target = parse_target(url)
        key = secret_key if secret_key is not None else os.environ.get(KEY_ENV)
        self._http = HttpClient(self.target.url, {"X-SECRET-KEY": key} if key else {})
        self._http.request("GET", "/health", None, None)  # reachable now, or a one-line error
        self._labels = NeuronpediaLabels()
        self._d_sae = 1

    @property
    def model_name(self) -> str:
        return self.target.model

    @property
    def sae_name(self) -> str:
        return self.target.source

    @property
    def labels(self) -> NeuronpediaLabels:
        return self._labels

    def label(self, feature: int) -> str:
        return self._labels.label(feature)

    def analyze(self, text: str, generation: int = 0, focus: int | None = None,
                should_stop: Callable[[], bool] | None = None,
                on_partial: Callable[[Analysis], None] | None = None,
                on_progress: Callable[[int, int], None] | None = None,
                checkpoint: Callable[[], None] | None = None) -> Analysis:
        result = drain(self.stream(text, generation, focus, should_stop, checkpoint), on_partial, on_progress)
        if result is not None:
            return result
        raise ServerError("the Neuronpedia server's analysis ended early")

    def stream(self, text: str, generation: int = 0, focus: int | None = None,
               should_stop: Callable[[], bool] | None = None,
               checkpoint: Callable[[], None] | None = None) -> Iterator[AnalysisEvent]:
        """One request per window of the text, then the whole analysis (no partial results)."""
        from morph.features.windows import cut_windows

        started = time.perf_counter()
        windows = list(cut_windows(text, WINDOW_CHARS)) if text else []
        parts = []
        for done, (start, end) in enumerate(windows, 1):
            if should_stop is not None and should_stop():
                raise AnalysisCancelled("analysis replaced by a newer one")
            if checkpoint is not None:
                checkpoint()
            parts.append(self._window(text[start:end], start))
            yield BlockProgress(done, len(windows))
        yield FinalResult(self._assemble(text, generation, parts, time.perf_counter() - started))

    def prepare(self, text: str, focus: int, should_stop: Callable[[], bool] | None = None,
                checkpoint: Callable[[], None] | None = None) -> bool:
        return False  # nothing is kept on such a server

    def analyze_windows(self, text: str, window_chars: int | None = None,
                        context_chars: int | None = None) -> Iterator[TextWindow]:
        from morph.features.windows import WINDOW_CHARS as CLI_WINDOW, cut_windows

        for start, end in cut_windows(text, window_chars or CLI_WINDOW):
            yield TextWindow(start, start, end, self.analyze(text[start:end]))

    def steerer(self):
        raise ServerError("rewrites need Morph's own server: a Neuronpedia inference server's "
                          "/v1/steer/completion continues a prompt, it does not rewrite a passage")

    def feature_scales(self, analysis: Analysis) -> np.ndarray:
        return feature_scales(analysis, None)

    def feature_report(self, feature: int, analysis: Analysis) -> FeatureReport:
        return feature_report(self._labels.info(feature), analysis)

    def when_labels_change(self, callback: Callable[[], None]) -> None:
        """Labels come from the server's answers as they are: nothing changes them later."""

    # --- the server's answers, placed on the text ---------------------------------------------------
    def _window(self, chunk: str, base: int) -> tuple[list[tuple[int, int]], list[list[tuple[int, float]]]]:
        answer = self._http.request("POST", "/v1/activation/topk-by-token", {
            "prompt": chunk, "model": self.target.model, "source": self.target.source, "ignoreBos": False,
            "topK": self.target.topk}, None)
        try:
            results = answer["results"]
            spans, features = [], []
            at = 0
            for result in results:
                if result["isSpecial"]:
                    continue
                token = str(result["token"])
                if token and chunk.startswith(token, at):
                    spans.append((base + at, base + at + len(token)))
                    at += len(token)
                else:
                    found = chunk.find(token, at, at + len(token) + 8) if token.strip() else -1
                    if found >= 0:
                        at = found
                        spans.append((base + at, base + at + len(token)))
                        at += len(token)
                    else:
                        spans.append((base + at, base + at))
                features.append([(int(f["featureIndex"]), float(f["activationValue"])) for f in result["topFeatures"]
                                 if float(f["activationValue"]) > 0])
        except (KeyError, TypeError, ValueError) as err:
            raise ServerError(f"the Neuronpedia server sent a bad answer: {err!r}") from None
        return spans, features

    def _assemble(self, text: str, generation: int, parts: list, elapsed: float) -> Analysis:
        spans = [s for part in parts for s in part[0]]
        rows = [r for part in parts for r in part[1]]
        n = len(spans)
        counts = [len(r) for r in rows]
        indices = np.array([f for r in rows for f, _ in r], dtype=np.int32)
        values = np.array([v for r in rows for _, v in r], dtype=np.float32)
        if len(indices):
            self._d_sae = max(self._d_sae, int(indices.max()) + 1)
        paragraphs = find_paragraphs(text)
        return Analysis(generation, len(text), np.full(n, -1, dtype=np.int64),
                        np.array(spans, dtype=np.int64).reshape(-1, 2),
                        np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), indices, values,
                        np.zeros((n, 1), dtype=np.float16), np.zeros(n, dtype=np.float32), paragraphs,
                        AnalysisStats(elapsed, n, n, len(parts), 0, True), self._d_sae, None,
                        paragraph_marks(text, paragraphs))

