"""`morph serve`'s HTTP API: Morph's own routes (/v1/morph/...) and Neuronpedia's (morph.server.neuronpedia).

Morph's routes, all JSON (a stream is NDJSON: one JSON object a line):

  GET  /health                  {"status": "ok"} (no key needed)
  GET  /v1/morph/info           model, SAE, sizes, where the labels come from, the server's limits, how
                                analysis and prompt passes were batched
  GET  /v1/morph/norms          the features' corpus statistics that rank them (arrays, morph.server.wire)
  POST /v1/morph/analyze        {document, text | edit, generation, focus, have, keep} -> a stream of
                                {"type": "progress", done, total} and {"type": "partial"|"final", "delta"}
                                (an analysis as a change to the one the client holds, `have`), ending with a
                                final, or {"type": "cancelled"} (a newer request for the document came) or
                                {"type": "error", "message"}; `edit` changes the document's last text
                                (409: not held, send it whole)
  POST /v1/morph/prepare        {document, text, focus} -> {"prepared": bool}
  POST /v1/morph/labels         {features: [ids]} -> {"labels": {id: label}}
  POST /v1/morph/feature        {feature} -> the feature's info (label, statistics, contexts)
  POST /v1/morph/search         {query, limit} -> {"features": [ids]}
  POST /v1/morph/steer/...      steering: concepts, candidates streamed as they come (morph.server.steer_routes)

The analysis of a request runs in a thread of its own that only puts lines in a queue; the response reads
the queue. A client that goes away (or a newer request for the same document) sets the document's cancel
flag, which stops the analysis at its next step: no analysis is ever left holding a document's analyzer.
Requests of different clients take fair turns on the model between their steps (morph.server.turns):
analysis blocks and layers, steering's token steps.
Several clients' analyses share forward passes: the padded batches that analyses submit while a pass runs
go together in the next one, the documents taking turns in it (Engine.shared_passes, morph.features.batching),
so two editors opening documents at once fill one pass. A keystroke's work is not batched: it continues
the document's own key/value cache, a few tokens of one block, which waiting for a pass would only delay.
Neuronpedia's activation requests that arrive while the model is busy run together the same way
(Engine.prompt_batches).
"""

from __future__ import annotations

import json
import os
import queue
import socket
import threading
from contextlib import closing
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, AsyncIterator, Iterator

from pydantic import BaseModel, Field

from morph.features.analysis import AnalysisCancelled, BlockProgress, FinalResult
from morph.features.engine import Engine
from morph.server.documents import Document, DocumentStore
from morph.server.neuronpedia import Names
from morph.server.security import BodyTooLarge, Guard, Limits
from morph.server.turns import FairTurns, one_turn, owns
from morph.server.wire import API_VERSION, delta_to_json, info_to_json, make_delta, norms_to_json

if TYPE_CHECKING:
    from fastapi.responses import StreamingResponse

REPLICA = f"{socket.gethostname()}:{os.getpid()}"  # which process answered (several with --ray)
DOCUMENT_ID = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")


class TextEdit(BaseModel):
    """The text as a change to the last one this document sent: base[:start] + insert + base[end:], which
    must be `length` characters long with CRC-32 `crc` (of its UTF-8)."""

    start: int = Field(ge=0)
    end: int = Field(ge=0)
    insert: str
    length: int = Field(ge=0)
    crc: int = Field(ge=0)


class AnalyzeRequest(BaseModel):
    document: str = DOCUMENT_ID
    text: str | None = None  # the whole text, or
    edit: TextEdit | None = None  # a change to the last text sent for this document (409 if not held)
    generation: int = 0
    focus: int | None = Field(default=None, ge=0)
    have: int | None = None  # the revision of the analysis the client holds
    keep: bool = True  # False: a one-off analysis, not kept as the document's


class PrepareRequest(BaseModel):
    document: str = DOCUMENT_ID
    text: str
    focus: int = Field(ge=0)


class LabelsRequest(BaseModel):
    features: list[int] = Field(max_length=200_000)


class FeatureRequest(BaseModel):
    feature: int


class SearchRequest(BaseModel):
    query: str = Field(max_length=1_000)
    limit: int = Field(default=10, ge=1, le=1_000)


@dataclass(frozen=True)
class ServeSettings:
    secret_key: str | None = None
    limits: Limits = Limits()
    max_documents: int = 32
    cache_windows: int = 2  # key/value windows kept per document (morph.features.analysis.AnalysisConfig)
    neuronpedia: Names = Names()  # Neuronpedia's names for the model and SAE (morph.server.neuronpedia)


def create_app(engine: Engine, settings: ServeSettings | None = None) -> Guard:
    """The ASGI app serving `engine` (behind morph.server.security.Guard)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    from morph.errors import MorphError

    settings = settings or ServeSettings()
    limits = settings.limits
    # each document keeps fewer key/value windows than the editor's engine: a server holds many documents,
    # and typing reuses the most recent window (a window of a 9B model is ~100 MB)
    config = replace(engine.analyzer.config, cache_windows=min(engine.analyzer.config.cache_windows,
                                                               settings.cache_windows))
    turns = FairTurns(owns(engine.model_lock))
    passes = engine.shared_passes(partial(one_turn, turns), release=turns.done)
    store = DocumentStore(partial(engine.new_analyzer, config, passes), settings.max_documents)
    app = FastAPI(title="Morph engine server", version=str(API_VERSION), docs_url=None, redoc_url=None)
    app.state.engine = engine
    app.state.store = store
    app.state.turns = turns

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        return JSONResponse({"detail": f"bad request: {where or 'body'}: {first.get('msg', 'invalid')}"},
                            status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"detail": str(exc.detail).splitlines()[0]}, status_code=exc.status_code)

    @app.exception_handler(MorphError)
    async def morph_error(_request: Request, exc: MorphError) -> JSONResponse:
        # "error": the kind, for a client that acts on it (NoFeatureMatches: rewrite by the words alone)
        return JSONResponse({"detail": str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                             "error": type(exc).__name__}, status_code=400)

    @app.exception_handler(BodyTooLarge)
    async def too_large(_request: Request, exc: BodyTooLarge) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=413)

    def check_text(text: str) -> None:
        if len(text) > limits.max_text_chars:
            raise HTTPException(413, f"text over {limits.max_text_chars:,} characters")

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/v1/morph/info")
    def info() -> dict:
        prompts = engine.prompt_batches.stats  # Neuronpedia prompts run together (morph.features.batching)
        blocks = passes.stats  # so do several documents' padded analysis batches
        return {"api": API_VERSION, "model": engine.model_name, "sae": engine.sae_name, "d_sae": engine.d_sae,
                "d_model": engine.d_model, "hook": engine.hook_name,
                "labels_source": engine.labels.source, "max_text_chars": limits.max_text_chars,
                "max_body_bytes": limits.max_body_bytes, "replica": REPLICA,
                "prompt_batches": {"batches": prompts.batches, "prompts": prompts.items, "largest": prompts.largest},
                "analysis_passes": {"passes": blocks.batches, "batches": blocks.items, "largest": blocks.largest,
                                    "documents": blocks.owners, "waiting": passes.queued}}

    @app.get("/v1/morph/norms")
    def norms() -> dict:
        return {"norms": norms_to_json(engine.labels.norms())}

    @app.post("/v1/morph/analyze")
    def analyze(request: AnalyzeRequest):
        document = store.get(request.document) if request.keep else store.fresh()
        if (request.text is None) == (request.edit is None):
            raise HTTPException(422, "bad request: give the text or an edit of it, not both")
        text = request.text if request.edit is None else edited_text(document, request.edit)
        check_text(text)
        if request.focus is not None and request.focus > len(text):
            raise HTTPException(422, f"bad request: focus {request.focus} is past the text's end")
        request.text, request.edit = text, None
        document.text = text if request.keep else None
        cancel = document.supersede()
        return stream_response(analysis_lines(store, document, request, cancel, turns), cancel)

    @app.post("/v1/morph/prepare")
    def prepare(request: PrepareRequest) -> dict:
        check_text(request.text)
        document = store.get(request.document)
        try:
            return {"prepared": document.analyzer.prepare(request.text, min(request.focus, len(request.text)),
                                                          should_stop=document.cancel.is_set)}
        except AnalysisCancelled:
            return {"prepared": False}

    @app.post("/v1/morph/labels")
    def labels(request: LabelsRequest) -> dict:
        return {"labels": {str(f): engine.label(f) for f in request.features}}

    @app.post("/v1/morph/feature")
    def feature(request: FeatureRequest) -> dict:
        return info_to_json(engine.labels.info(request.feature))

    @app.post("/v1/morph/search")
    def search(request: SearchRequest) -> dict:
        return {"features": engine.labels.search(request.query, request.limit)}

    from morph.server import neuronpedia, steer_routes

    neuronpedia.add_routes(app, engine, settings.neuronpedia, stream_response, turns)
    steer_routes.add_routes(app, engine, check_text, stream_response, turns)
    return Guard(app, settings.secret_key, limits)


def analysis_lines(store: DocumentStore, document: Document, request: AnalyzeRequest,
                   cancel: threading.Event, turns: FairTurns) -> Iterator[dict]:
    """The NDJSON objects of one analysis request (module docstring), taking fair turns on the model with
    the other requests (morph.server.turns)."""
    have = request.have
    stream = document.analyzer.stream(request.text, request.generation, request.focus, should_stop=cancel.is_set,
                                      checkpoint=turns.checkpoint)
    try:
        with closing(stream):
            for event in stream:
                if isinstance(event, BlockProgress):
                    yield {"type": "progress", "done": event.done, "total": event.total}
                    continue
                revision = store.next_revision()
                delta = make_delta(revision, event.analysis, document.base(have))
                document.remember(revision, event.analysis)
                have = revision
                yield {"type": "final" if isinstance(event, FinalResult) else "partial", "delta": delta_to_json(delta)}
    except AnalysisCancelled:
        yield {"type": "cancelled"}
    finally:
        turns.done()


def edited_text(document: Document, edit: TextEdit) -> str:
    """The text an edit makes of the document's last text; 409 where the server does not hold that text
    (restarted, the document dropped, or requests crossed): the client then sends the whole text."""
    import zlib

    from starlette.exceptions import HTTPException

    base = document.text
    if base is None or not edit.start <= edit.end <= len(base):
        raise HTTPException(409, "the server does not hold this document's text: send it whole")
    text = base[:edit.start] + edit.insert + base[edit.end:]
    if len(text) != edit.length or zlib.crc32(text.encode("utf-8", "surrogatepass")) != edit.crc:
        raise HTTPException(409, "the server holds another text for this document: send it whole")
    return text


def stream_response(lines: Iterator[dict], cancel: threading.Event, sse: bool = False) -> "StreamingResponse":
    """An NDJSON StreamingResponse of `lines` (server-sent events, `data: <json>`, when `sse`), produced in a
    thread of their own (module docstring); an error ends the stream with {"type": "error", "message"}
    ({"error"} as an event) in one line; a client that leaves sets `cancel`."""
    from fastapi.responses import StreamingResponse

    out: queue.Queue[bytes | None] = queue.Queue()
    frame = _event if sse else _line

    def error(message: str) -> bytes:
        return frame({"error": message} if sse else {"type": "error", "message": message})

    def work() -> None:
        try:
            for obj in lines:
                out.put(frame(obj))
        except MemoryError:
            out.put(error("the server ran out of memory"))
        except Exception as err:  # noqa: BLE001 - the client hears one line; the server goes on
            from morph.errors import one_line

            out.put(error(one_line(err)))
        finally:
            out.put(None)

    threading.Thread(target=work, name="morph stream", daemon=True).start()
    return StreamingResponse(_drain(out, cancel), media_type="text/event-stream" if sse else "application/x-ndjson")


def _line(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def _event(obj: dict) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


async def _drain(lines: "queue.Queue[bytes | None]", cancel: threading.Event) -> AsyncIterator[bytes]:
    """The queue's lines until its end; a client that leaves stops the analysis (module docstring)."""
    import anyio.to_thread

    try:
        while True:
            line = await anyio.to_thread.run_sync(lines.get, abandon_on_cancel=True)
            if line is None:
                return
            yield line
    finally:
        cancel.set()

