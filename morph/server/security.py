"""The server's guards: the secret key, request size and request rate. Each refusal is a 4xx with a
one-line reason ({"detail": "..."}).

- Key: when the server has one, every request but the health check carries it in the `X-SECRET-KEY`
  header (Neuronpedia's inference server uses that header); compared in constant time. A server bound to
  an address other than loopback must have a key (morph.server.run refuses to start without one).
- Size: a body over `max_body_bytes` is refused (413) from its Content-Length, or as it arrives.
- Rate: a token bucket per client address: `rate_per_s` requests a second on average, bursts of `burst`
  (429).
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

KEY_HEADER = "x-secret-key"
OPEN_PATHS = frozenset({"/health"})  # answered without the key (a liveness probe)


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 16 * 1024 * 1024
    max_text_chars: int = 4_000_000
    rate_per_s: float = 100.0
    burst: int = 400


class RateLimiter:
    """A token bucket per client address."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate, self.burst = rate_per_s, burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, client: str) -> bool:
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[client] = (tokens, now)
                return False
            self._buckets[client] = (tokens - 1.0, now)
            if len(self._buckets) > 10_000:  # forget idle clients
                self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 60}
            return True


Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class Guard:
    """ASGI middleware: key, size and rate, before the app sees a request."""

    def __init__(self, app: Callable, secret_key: str | None, limits: Limits) -> None:
        self.app = app
        self.key = secret_key.encode() if secret_key else None
        self.limits = limits
        self.rate = RateLimiter(limits.rate_per_s, limits.burst)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
        client = (scope.get("client") or ("?", 0))[0]
        if not self.rate.allow(client):
            await refuse(send, 429, f"too many requests from {client}: at most {self.limits.rate_per_s:g} a second")
            return
        if self.key is not None and scope["path"] not in OPEN_PATHS:
            given = headers.get(KEY_HEADER)
            if given is None:
                await refuse(send, 401, "this server needs its secret key (header X-SECRET-KEY)")
                return
            if not hmac.compare_digest(given, self.key):
                await refuse(send, 403, "wrong secret key")
                return
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limits.max_body_bytes):
            await refuse(send, 413, f"request body over {self.limits.max_body_bytes:,} bytes")
            return
        await self.app(scope, _capped(receive, self.limits.max_body_bytes), send)


def _capped(receive: Receive, limit: int) -> Receive:
    """`receive`, raising past `limit` body bytes (a body sent without Content-Length)."""
    seen = 0

    async def wrapped() -> dict:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(f"request body over {limit:,} bytes")
        return message

    return wrapped


class BodyTooLarge(Exception):
    pass


async def refuse(send: Send, status: int, reason: str) -> None:
    body = json.dumps({"detail": reason}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
