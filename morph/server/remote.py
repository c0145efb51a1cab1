"""RemoteEngine: the engine's front door (morph.features.engine.EngineLike) over HTTP to `morph serve`.

The editor and the CLI use it exactly as they use the local Engine. The server keeps this client's
document (its analyzer, so a keystroke costs the edit there too) under a random document id; each analysis
comes back as a change to the last one this client holds (morph.server.wire), and the labels of the
features it shows are fetched with it, in the analysis's thread, so that the UI thread never waits on the
network for a label. Ranking and intensities use the server's feature statistics, fetched once, with the
same functions as the local engine (morph.features.engine.feature_scales, feature_report): the numbers
are the local engine's.

Failures are MorphErrors of one line: ServerUnavailable (down, restarting, too slow: try again), ServerRefused
(the secret key), ServerError (anything else the server refused). A restarted server has lost the
document: it is sent again whole and analysed from scratch, once.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from collections import OrderedDict
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from morph.errors import (InputError, MorphError, NoFeatureMatches, ServerError, ServerRefused, ServerUnavailable,
                          TextNotHeld)
from morph.features.analysis import (Analysis, AnalysisCancelled, AnalysisEvent, BlockProgress, FinalResult,
                                     PartialResult, drain)
from morph.features.engine import FeatureReport, TextWindow, feature_report, feature_scales
from morph.features.labels import FeatureInfo
from morph.features.ranking import FeatureNorms
from morph.server.address import server_url
from morph.server.wire import (API_VERSION, apply_delta, delta_from_json, from_json, info_from_json, norms_from_json,
                               to_json)

if TYPE_CHECKING:
    import httpx

    from morph.features.concepts import Concept, ConceptMatch
    from morph.features.steering import CancelToken, SteerEvent, SteerRequest, SteerResult
    from morph.server.neuronpedia_client import NeuronpediaEngine

KEY_ENV = "MORPH_SECRET_KEY"
AFFINITY_HEADER = "serve_multiplexed_model_id"  # morph.server.ray_serve
HELD_REVISIONS = 3
LABEL_MISS_TIMEOUT_S = 1.0
# Longest silence on a connection before the server counts as not answering (a stream sends a line after
# every batch of blocks, every candidate token): the editor then says so and asks again.
READ_TIMEOUT_S = 60.0


class RemoteLabels:
    """The server's feature labels, as the commands and the editor read them (morph.features.engine
    LabelsLike); labels are cached, the rest asked for."""

    def __init__(self, engine: "RemoteEngine", d_sae: int, source: str) -> None:
        self._engine = engine
        self.d_sae = d_sae
        self.source = source
        self._labels: dict[int, str] = {}
        self._lock = threading.Lock()

    def label(self, feature: int) -> str:
        if feature in self._labels:
            return self._labels[feature]
        if not 0 <= feature < self.d_sae:
            raise InputError(f"feature {feature} does not exist: this SAE has features 0 to {self.d_sae - 1}")
        if self._engine.unreachable:  # asked on the UI thread: never wait on a server known to be down
            return f"feature {feature}"
        try:
            self.prefetch([feature], timeout=LABEL_MISS_TIMEOUT_S)
        except ServerError:
            return f"feature {feature}"
        return self._labels.get(feature, f"feature {feature}")

    def prefetch(self, features: list[int] | np.ndarray, timeout: float | None = None) -> None:
        """Fetch the labels of `features` not cached yet, in one request."""
        with self._lock:
            missing = sorted({int(f) for f in features} - self._labels.keys())
        if not missing:
            return
        answer = self._engine._post("/v1/morph/labels", {"features": missing}, timeout=timeout)
        with self._lock:
            self._labels.update({int(k): str(v) for k, v in answer["labels"].items()})

    def info(self, feature: int) -> FeatureInfo:
        return info_from_json(self._engine._post("/v1/morph/feature", {"feature": feature}))

    def search(self, query: str, limit: int = 10) -> list[int]:
        return [int(f) for f in self._engine._post("/v1/morph/search", {"query": query, "limit": limit})["features"]]


def connect_engine(url: str, secret_key: str | None = None) -> "RemoteEngine | NeuronpediaEngine":
    """The engine at `url`: a `morph serve` (RemoteEngine), or with neuronpedia+http://... a Neuronpedia
    inference server (morph.server.neuronpedia_client)."""
    from morph.server.neuronpedia_client import SCHEME, NeuronpediaEngine

    if url.strip().startswith(SCHEME):
        return NeuronpediaEngine(url.strip(), secret_key)
    return RemoteEngine(url, secret_key)


def text_edit(base: str, text: str) -> dict:
    """`text` as a change to `base` (morph.server.app.TextEdit): the span between their common prefix and
    suffix, replaced."""
    import zlib

    from morph.features.tokens import common_prefix, common_suffix

    start = common_prefix(base, text)
    tail = common_suffix(base, text, min(len(base), len(text)) - start)
    return {"start": start, "end": len(base) - tail, "insert": text[start:len(text) - tail], "length": len(text),
            "crc": zlib.crc32(text.encode("utf-8", "surrogatepass"))}


class HttpClient:
    """JSON over HTTP to one server: one-line errors (ServerUnavailable, ServerRefused, ServerError,
    InputError for a refused request) and whether the server was reachable at the last request."""

    def __init__(self, url: str, headers: dict[str, str], transport: "httpx.BaseTransport | None" = None,
                 read_timeout_s: float = READ_TIMEOUT_S) -> None:
        import httpx

        self.url = url
        self.client = httpx.Client(base_url=url, headers=headers, transport=transport,
                                   timeout=httpx.Timeout(read_timeout_s, connect=3.0))
        self.unreachable = False

    def close(self) -> None:
        self.client.close()

    def request(self, method: str, path: str, body: dict | None, timeout: float | None) -> dict:
        kwargs = {"timeout": timeout} if timeout is not None else {}
        with self.transport():
            response = self.client.request(method, path, json=body, **kwargs)
        if response.status_code != 200:
            self.raise_for(response)
        try:
            return response.json()
        except ValueError:
            raise ServerError(f"the server at {self.url} sent a bad answer to {path}") from None

    def stream_lines(self, path: str, body: dict) -> Iterator[dict]:
        """The JSON objects of an NDJSON response, one a line."""
        try:
            with self.transport(), self.client.stream("POST", path, json=body) as response:
                if response.status_code != 200:
                    response.read()
                    self.raise_for(response)
                for line in response.iter_lines():
                    if line:
                        yield json.loads(line)
        except json.JSONDecodeError as err:
            raise ServerError(f"the server at {self.url} sent a bad answer: {err}") from None

    @contextmanager
    def transport(self) -> Iterator[None]:
        """httpx's transport failures as ServerUnavailable (one line), and `unreachable` kept up to date."""
        import httpx

        try:
            yield
        except httpx.TimeoutException:
            self.unreachable = True
            raise ServerUnavailable(f"the server at {self.url} is not answering (timed out)") from None
        except httpx.TransportError:
            self.unreachable = True
            raise ServerUnavailable(f"the server at {self.url} is down or unreachable") from None
        self.unreachable = False

    def raise_for(self, response: "httpx.Response") -> None:
        kind = ""
        try:
            answer = response.json()
            detail, kind = str(answer.get("detail", "")), str(answer.get("error", ""))
        except (ValueError, AttributeError):
            detail = response.text[:200]
        detail = (detail.splitlines() or [""])[0] or f"HTTP {response.status_code}"
        if response.status_code == 409:
            raise TextNotHeld(detail)
        if response.status_code in (401, 403):
            raise ServerRefused(f"the server at {self.url} refused the key: {detail}")
        if response.status_code in (502, 503, 504):
            raise ServerUnavailable(f"the server at {self.url} is unavailable: {detail}")
        if response.status_code == 404:
            raise ServerError(f"{self.url} does not answer {response.request.url.path} (not a Morph server?)")
        if response.status_code == 400 and kind == NoFeatureMatches.__name__:
            raise NoFeatureMatches(detail)  # as the local engine says it: the words can still go alone
        if 400 <= response.status_code < 500:
            raise InputError(f"the server refused the request: {detail}")
        raise ServerError(f"the server at {self.url} failed: {detail}")


class RemoteSteerer:
    """The Steerer's interface (concepts, search, concepts_for, more_like_this, prepare, label, run, stream) over
    the server's steering routes; candidates stream back as the server finishes them, and a cancel ends
    the run with its SteerDone (cancelled), as a local cancel does."""

    def __init__(self, engine: "RemoteEngine") -> None:
        self._engine = engine

    def concepts(self, text: str, start: int, end: int, k: int = 10) -> list["Concept"]:
        from morph.features.concepts import Concept

        answer = self._engine._post("/v1/morph/steer/concepts", {"text": text, "start": start, "end": end, "k": k})
        return [from_json(Concept, c) for c in answer["concepts"]]

    def search(self, query: str, limit: int = 10) -> list["Concept"]:
        from morph.features.concepts import Concept

        answer = self._engine._post("/v1/morph/steer/search", {"query": query, "limit": limit})
        return [from_json(Concept, c) for c in answer["concepts"]]

    def more_like_this(self, example: str, text: str, start: int, end: int, k: int = 3) -> list["Concept"]:
        from morph.features.concepts import Concept

        answer = self._engine._post("/v1/morph/steer/more-like-this",
                                    {"example": example, "text": text, "start": start, "end": end, "k": k})
        return [from_json(Concept, c) for c in answer["concepts"]]

    def concepts_for(self, words: str, text: str, start: int, end: int, k: int = 8,
                     example: str | None = None) -> list["ConceptMatch"]:
        from morph.features.concepts import ConceptMatch

        answer = self._engine._post("/v1/morph/steer/concepts-for", {"words": words, "text": text, "start": start,
                                                                     "end": end, "k": k, "example": example})
        return [from_json(ConceptMatch, m) for m in answer["matches"]]

    def prepare(self, text: str, start: int, end: int, method: str = "auto") -> None:
        self._engine._post("/v1/morph/steer/prepare", {"text": text, "start": start, "end": end, "method": method})

    def label(self, feature: int) -> str:
        return self._engine.label(feature)

    def run(self, text: str, start: int, end: int, request: "SteerRequest", cancel: "CancelToken | None" = None,
            on_event: "Callable[[SteerEvent], None] | None" = None) -> "SteerResult":
        from morph.features.steering import run_to_end

        result = run_to_end(self.stream(text, start, end, request, cancel), on_event)
        if result is None:
            raise ServerUnavailable(f"the server at {self._engine.url} ended the rewrite early")
        return result

    def stream(self, text: str, start: int, end: int, request: "SteerRequest",
               cancel: "CancelToken | None" = None) -> Iterator["SteerEvent"]:
        """Validated by the server before the first event (an InputError here, as locally)."""
        from morph.features.steering import CandidateReady, SteerDone, SteerProgress

        kinds = {"progress": SteerProgress, "candidate": CandidateReady, "done": SteerDone}
        stream_id = secrets.token_hex(8)
        body = {"stream": stream_id, "text": text, "start": start, "end": end, "request": to_json(request)}
        lines = self._engine._stream_lines("/v1/morph/steer/stream", body)
        first = next(lines, None)  # the request is checked now, not when the first event is asked for

        def events() -> Iterator["SteerEvent"]:
            cancelled = False
            line = first
            while line is not None:
                if cancel is not None and cancel.is_set() and not cancelled:
                    cancelled = True
                    try:
                        self._engine._post("/v1/morph/steer/cancel", {"stream": stream_id}, timeout=5)
                    except ServerError:
                        pass
                kind = line.get("type")
                if kind == "error":
                    raise ServerError(f"the server: {line.get('message', 'steering failed')}")
                if kind in kinds:
                    yield from_json(kinds[kind], line["event"])  # type: ignore[misc]
                    if kind == "done":
                        return
                line = next(lines, None)
            raise ServerUnavailable(f"the server at {self._engine.url} ended the rewrite early")

        return events()


class RemoteEngine:
    """An engine served by `morph serve` at `url` (module docstring). Thread-safe."""

    def __init__(self, url: str, secret_key: str | None = None, transport: "httpx.BaseTransport | None" = None,
                 read_timeout_s: float = READ_TIMEOUT_S) -> None:
        self.url = server_url(url)
        key = secret_key if secret_key is not None else os.environ.get(KEY_ENV)
        self.document = secrets.token_hex(12)
        # the document id as Ray Serve's multiplexing key: its requests go back to the replica holding it
        headers = {AFFINITY_HEADER: self.document, **({"X-SECRET-KEY": key} if key else {})}
        self._http = HttpClient(self.url, headers, transport, read_timeout_s)
        self._held: OrderedDict[int, Analysis] = OrderedDict()
        self._sent_text: str | None = None  # the text of the last analysis request
        self._held_lock = threading.Lock()
        info = self._get("/v1/morph/info")
        if info.get("api") != API_VERSION:
            raise ServerError(f"the server at {self.url} speaks Morph's protocol {info.get('api')}, this Morph speaks "
                              f"{API_VERSION}: run the same version of Morph on both sides")
        self.info = info
        self._model_name = str(info["model"])
        self._sae_name = str(info["sae"])
        self._labels = RemoteLabels(self, int(info["d_sae"]), str(info["labels_source"]))
        self.norms: FeatureNorms | None = norms_from_json(self._get("/v1/morph/norms")["norms"])

    @classmethod
    def connect(cls, url: str, secret_key: str | None = None) -> "RemoteEngine":
        return cls(url, secret_key)

    def close(self) -> None:
        self._http.close()

    # --- the engine's interface -------------------------------------------------------------------
    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def sae_name(self) -> str:
        return self._sae_name

    @property
    def labels(self) -> RemoteLabels:
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
        raise ServerUnavailable(f"the server at {self.url} ended the analysis early")

    def stream(self, text: str, generation: int = 0, focus: int | None = None,
               should_stop: Callable[[], bool] | None = None,
               checkpoint: Callable[[], None] | None = None) -> Iterator[AnalysisEvent]:
        """The analysis as the local engine's events; the server keeps this client's document."""
        with self._held_lock:
            have = next(reversed(self._held)) if self._held else None
            base, self._sent_text = self._sent_text, text
        body = {"document": self.document, "generation": generation, "focus": focus, "have": have}
        return self._events_sending(body, text, base, should_stop, checkpoint)

    def _events_sending(self, body: dict, text: str, base: str | None, should_stop: Callable[[], bool] | None,
                        checkpoint: Callable[[], None] | None) -> Iterator[AnalysisEvent]:
        """The text goes as the change from the last one sent (a keystroke: a few bytes), or whole where
        the server does not hold that one (morph.server.app.edited_text)."""
        if base is not None:
            try:
                yield from self._events({**body, "edit": text_edit(base, text)}, should_stop, checkpoint, keep=True)
                return
            except TextNotHeld:
                pass  # refused before any event: send it whole
        yield from self._events({**body, "text": text}, should_stop, checkpoint, keep=True)

    def prepare(self, text: str, focus: int, should_stop: Callable[[], bool] | None = None,
                checkpoint: Callable[[], None] | None = None) -> bool:
        """Ask the server to keep the key/values at `focus` (only a speed-up: False when it cannot)."""
        try:
            return bool(self._post("/v1/morph/prepare", {"document": self.document, "text": text,
                                                         "focus": focus})["prepared"])
        except MorphError:
            return False

    def analyze_windows(self, text: str, window_chars: int | None = None,
                        context_chars: int | None = None) -> Iterator[TextWindow]:
        """As Engine.analyze_windows: each window analysed on its own by the server (a one-off document)."""
        from morph.features.windows import CONTEXT_CHARS, WINDOW_CHARS, context_start, cut_windows

        for start, end in cut_windows(text, window_chars or WINDOW_CHARS):
            base = context_start(text, start, CONTEXT_CHARS if context_chars is None else context_chars)
            body = {"document": "once", "text": text[base:end], "generation": 0, "focus": None, "have": None,
                    "keep": False}
            final = None
            for event in self._events(body, None, None, keep=False):
                if isinstance(event, FinalResult):
                    final = event.analysis
            if final is None:
                raise ServerUnavailable(f"the server at {self.url} ended the analysis early")
            yield TextWindow(base, start, end, final)

    def steerer(self) -> "RemoteSteerer":
        """The server's steering engine (morph.server.steer_routes), as the local Steerer's interface."""
        return RemoteSteerer(self)

    def feature_scales(self, analysis: Analysis) -> np.ndarray:
        return feature_scales(analysis, self.norms)

    def feature_report(self, feature: int, analysis: Analysis) -> FeatureReport:
        try:
            info = self._labels.info(feature)
        except ServerUnavailable:  # the details wait for the server; where it fires is known here
            info = FeatureInfo(feature, self._labels.label(feature))
        return feature_report(info, analysis)

    def when_labels_change(self, callback: Callable[[], None]) -> None:
        """The server's labels are fixed while it runs (it fetches on its own load): nothing to hear."""

    # --- the wire -------------------------------------------------------------------------------
    def _events(self, body: dict, should_stop: Callable[[], bool] | None,
                checkpoint: Callable[[], None] | None, keep: bool) -> Iterator[AnalysisEvent]:
        finished = False
        try:
            with self._http.transport(), self._http.client.stream("POST", "/v1/morph/analyze",
                                                                  json=body) as response:
                if response.status_code != 200:
                    response.read()
                    self._http.raise_for(response)
                for line in response.iter_lines():
                    if should_stop is not None and should_stop():
                        raise AnalysisCancelled("analysis replaced by a newer one")
                    if checkpoint is not None:
                        checkpoint()
                    if not line:
                        continue
                    message = json.loads(line)
                    kind = message.get("type")
                    if kind == "progress":
                        yield BlockProgress(int(message["done"]), int(message["total"]))
                    elif kind in ("partial", "final"):
                        analysis = self._receive(message["delta"], keep)
                        if kind == "final":
                            finished = True
                            yield FinalResult(analysis)
                            return
                        yield PartialResult(analysis)
                    elif kind == "cancelled":
                        raise AnalysisCancelled("analysis replaced by a newer one")
                    elif kind == "error":
                        raise ServerError(f"the server: {message.get('message', 'analysis failed')}")
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise ServerError(f"the server at {self.url} sent a bad answer: {err}") from None
        if not finished:
            raise ServerUnavailable(f"the server at {self.url} ended the analysis early")

    def _receive(self, data: dict, keep: bool) -> Analysis:
        delta = delta_from_json(data)
        with self._held_lock:
            base = self._held.get(delta.base) if delta.base is not None else None
        analysis = apply_delta(delta, base, self.norms)
        if keep:
            with self._held_lock:
                self._held[delta.revision] = analysis
                while len(self._held) > HELD_REVISIONS:
                    self._held.popitem(last=False)
        # the labels the panel will ask for, fetched here rather than on the UI thread
        new = np.unique(delta.middle.indices)
        try:
            self._labels.prefetch(new)
        except ServerError:
            pass
        return analysis

    def _get(self, path: str) -> dict:
        return self._http.request("GET", path, None, None)

    def _post(self, path: str, body: dict, timeout: float | None = None) -> dict:
        return self._http.request("POST", path, body, timeout)

    def _stream_lines(self, path: str, body: dict) -> Iterator[dict]:
        return self._http.stream_lines(path, body)

    @property
    def unreachable(self) -> bool:
        """Whether the last request found the server down (a label then never waits on it)."""
        return self._http.unreachable
