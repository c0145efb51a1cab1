"""Steering behind `morph serve`: the Steerer's methods as routes, candidates streamed as they come.

  POST /v1/morph/steer/concepts        {text, start, end, k} -> {"concepts": [Concept]}
  POST /v1/morph/steer/search          {query, limit} -> {"concepts": [Concept]}
  POST /v1/morph/steer/more-like-this  {example, text, start, end, k} -> {"concepts": [Concept]}
  POST /v1/morph/steer/concepts-for    {words, text, start, end, k, example} -> {"matches": [ConceptMatch]}
  POST /v1/morph/steer/prepare         {text, start, end, method} -> {"prepared": true}: the selection's text
                                       before and the original read ahead (Steerer.prepare)
  POST /v1/morph/steer/stream          {stream, text, start, end, request: SteerRequest} -> NDJSON lines
                                       {"type": "progress"|"candidate"|"done", "event": ...}, or
                                       {"type": "error", "message"}; a bad request is a 4xx before any line
  POST /v1/morph/steer/cancel          {stream} -> {"cancelled": bool}: the run ends with its "done"
                                       (cancelled, the candidates finished so far), as a local cancel does

Objects are the steering dataclasses as JSON (morph.server.wire.to_json / from_json).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Callable, Iterator

from pydantic import BaseModel, Field

from morph.server.wire import WireError, from_json, to_json

if TYPE_CHECKING:
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse

    from morph.features.engine import Engine
    from morph.server.turns import FairTurns

KIND = {"SteerProgress": "progress", "CandidateReady": "candidate", "SteerDone": "done"}


class Span(BaseModel):
    text: str
    start: int = Field(ge=0)
    end: int = Field(ge=0)


class ConceptsRequest(Span):
    k: int = Field(default=10, ge=1, le=100)


class SearchConceptsRequest(BaseModel):
    query: str = Field(max_length=1_000)
    limit: int = Field(default=10, ge=1, le=100)


class MoreLikeThisRequest(Span):
    example: str
    k: int = Field(default=3, ge=1, le=100)


class ConceptsForRequest(Span):
    words: str = Field(max_length=1_000)
    k: int = Field(default=8, ge=1, le=100)
    example: str | None = None


class PrepareRequest(Span):
    method: str = Field(default="auto", max_length=32)


class SteerStreamRequest(Span):
    stream: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    request: dict


class CancelRequest(BaseModel):
    stream: str = Field(min_length=1, max_length=64)


def add_routes(app: FastAPI, engine: Engine, check_text: Callable[[str], None],
               stream_response: Callable[[Iterator[dict], threading.Event], StreamingResponse],
               turns: FairTurns | None = None) -> None:
    """Steering's routes on `app`; generation and reading ahead take `turns` on the model with the other
    requests (a token step at a time)."""
    from morph.errors import InputError
    from morph.features.steering import SteerRequest
    from morph.server.turns import FairTurns, one_turn, taking_turns

    turns = turns if turns is not None else FairTurns()

    steerer = engine.steerer()
    running: dict[str, threading.Event] = {}
    lock = threading.Lock()

    @app.post("/v1/morph/steer/concepts")
    def concepts(request: ConceptsRequest) -> dict:
        check_text(request.text)
        return {"concepts": to_json(steerer.concepts(request.text, request.start, request.end, request.k))}

    @app.post("/v1/morph/steer/search")
    def search(request: SearchConceptsRequest) -> dict:
        return {"concepts": to_json(steerer.search(request.query, request.limit))}

    @app.post("/v1/morph/steer/more-like-this")
    def more_like_this(request: MoreLikeThisRequest) -> dict:
        check_text(request.text)
        return {"concepts": to_json(steerer.more_like_this(request.example, request.text, request.start,
                                                           request.end, request.k))}

    @app.post("/v1/morph/steer/concepts-for")
    def concepts_for(request: ConceptsForRequest) -> dict:
        check_text(request.text)
        return {"matches": to_json(steerer.concepts_for(request.words, request.text, request.start, request.end,
                                                        request.k, request.example))}

    @app.post("/v1/morph/steer/prepare")
    def prepare(request: PrepareRequest) -> dict:
        check_text(request.text)
        with one_turn(turns):
            steerer.prepare(request.text, request.start, request.end, request.method)
        return {"prepared": True}

    @app.post("/v1/morph/steer/stream")
    def stream(request: SteerStreamRequest):
        check_text(request.text)
        try:
            steer_request = from_json(SteerRequest, request.request)
        except WireError as err:
            raise InputError(f"bad steering request: {err}") from None
        cancel = threading.Event()
        events = steerer.stream(request.text, request.start, request.end, steer_request, cancel)  # validates
        with lock:
            running[request.stream] = cancel

        def lines() -> Iterator[dict]:
            try:
                for event in taking_turns(turns, events):
                    yield {"type": KIND[type(event).__name__], "event": to_json(event)}
            finally:
                with lock:
                    running.pop(request.stream, None)

        return stream_response(lines(), cancel)

    @app.post("/v1/morph/steer/cancel")
    def cancel_stream(request: CancelRequest) -> dict:
        with lock:
            event = running.get(request.stream)
        if event is not None:
            event.set()
        return {"cancelled": event is not None}

