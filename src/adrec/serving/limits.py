"""Request limits of the HTTP API: body size (413), request rate per API key (429), and ``Allow`` on every 405.

:class:`RequestLimits` is a pure ASGI middleware that runs before routing, authentication and body parsing:

- **Body size.** A request whose ``Content-Length`` exceeds the limit is answered 413 without reading its body.
  A body without ``Content-Length`` (chunked) is counted as it arrives and refused as soon as it passes the limit,
  so no more than the limit is ever held. ``POST /v1/events`` (up to 50,000 events per batch) has its own, larger
  limit.
- **Rate per key.** One token bucket per API key (``X-API-Key``): ``rate_limit_rps`` tokens a second, holding at
  most ``rate_limit_burst``. A request that finds its bucket empty is answered 429 with ``Retry-After``. Buckets
  are kept in process (:class:`TokenBuckets`), or in Redis (:class:`RedisTokenBuckets`) so that every worker and
  server behind one Redis shares one bucket per key. Keys are kept only as hashes, never logged. Requests without
  a key are not limited here (they are refused with 401 anyway), nor are the health probes (``/health``,
  ``/ready``).

:func:`install` adds the middleware, and a 405 handler whose ``Allow`` header lists every method the path
answers (Starlette's names only the first route that matches the path).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adrec.exceptions import ConfigError

if TYPE_CHECKING:
    from adrec.config import Settings

__all__ = ["Limits", "RedisTokenBuckets", "RequestLimits", "TokenBuckets", "install", "method_not_allowed"]

MIB = 1 << 20
_PROBES = frozenset({"/health", "/ready"})
"""Not rate limited: liveness and readiness answer every probe, key or not."""
EVENTS_PATH = "/v1/events"
REDIS_PREFIX = "adrec:ratelimit:"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """The request limits of one server (see :class:`adrec.config.Settings` for each field's meaning).

    Defaults let one key send a benchmark's ~1,100 requests/s and a full batch of 50,000 events.
    """

    max_body_bytes: int = MIB
    max_events_body_bytes: int = 32 * MIB
    rate_limit_rps: float = 5_000.0
    rate_limit_burst: int = 10_000
    redis_url: str = ""

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1 or self.max_events_body_bytes < 1:
            raise ConfigError("max_body_bytes and max_events_body_bytes must be at least 1")
        if self.rate_limit_rps < 0 or self.rate_limit_burst < 1:
            raise ConfigError("rate_limit_rps must be >= 0 (0: no rate limit) and rate_limit_burst >= 1")

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            max_body_bytes=settings.max_body_bytes,
            max_events_body_bytes=settings.max_events_body_bytes,
            rate_limit_rps=settings.rate_limit_rps,
            rate_limit_burst=settings.rate_limit_burst,
            redis_url=settings.redis_url,
        )


class TokenBuckets:
    """Token buckets in this process, one per key.

    ``take`` is on the path of every request: one dict lookup and a few float operations, no object made for a
    key already seen. Keys are the caller's hash of the API key (``hash()`` of its bytes: salted per process,
    which is all an in-process table needs). At ``max_keys`` buckets (many distinct keys, e.g. guessed ones), the
    full buckets are dropped, which forgets nothing, since a new bucket starts full; if that is not enough, all are.
    """

    def __init__(
        self, rate: float, burst: int, *, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: dict[int, list[float]] = {}  # key → [tokens, time of the last take]

    def take(self, key: int) -> float:
        """Take a token from ``key``'s bucket: 0.0 when there was one, else the seconds until there is."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._prune(now)
            self._buckets[key] = [self.burst - 1.0, now]
            return 0.0
        tokens = bucket[0] + (now - bucket[1]) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        full = [k for k, (tokens, at) in self._buckets.items() if tokens + (now - at) * self.rate >= self.burst]
        for k in full:
            del self._buckets[k]
        if len(self._buckets) >= self.max_keys:
            self._buckets.clear()


# KEYS[1]: the bucket; ARGV: rate (tokens/s), burst, time to live (ms). Returns the wait in microseconds (0: taken).
# Redis' clock, not the callers': every process and host sees the same time. Integers out: Redis truncates Lua
# numbers to integers on return.
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) / rate * 1000000)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return wait
"""


class RedisTokenBuckets:
    """Token buckets in Redis, shared by every process that uses the same Redis: one atomic script per take.

    A bucket is the hash ``adrec:ratelimit:<SHA-256 of the key>``; it expires once it would have refilled, so idle
    keys leave nothing behind. When Redis does not answer, requests are let through (and a warning is logged at
    most once a minute): the limiter protects the service, it must not take it down.
    """

    def __init__(
        self, url: str, rate: float, burst: int, *, prefix: str = REDIS_PREFIX, timeout_s: float = 0.5
    ) -> None:
        from redis.asyncio import Redis

        self.rate = rate
        self.burst = burst
        self.prefix = prefix
        self._client = Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._take = self._client.register_script(_TAKE)
        self._ttl_ms = math.ceil(burst / rate * 1000) + 1000
        self._warned = -math.inf

    async def take(self, key: bytes) -> float:
        """Take a token from ``key``'s bucket: 0.0 when there was one, else the seconds until there is."""
        from redis.exceptions import RedisError

        name = self.prefix + hashlib.sha256(key).hexdigest()
        try:
            wait_us = await self._take(keys=[name], args=[self.rate, self.burst, self._ttl_ms])
        except (RedisError, OSError) as err:
            now = time.monotonic()
            if now - self._warned > 60:
                self._warned = now
                log.warning("rate limit not enforced: Redis does not answer (%s)", type(err).__name__)
            return 0.0
        return int(wait_us) / 1e6

    async def aclose(self) -> None:
        await self._client.aclose()


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes its limit; FastAPI answers it as a 413."""

    def __init__(self, detail: str) -> None:
        super().__init__(413, detail, headers={"Connection": "close"})


def _json(detail: str) -> bytes:
    return json.dumps({"detail": detail}).encode()


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    start = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": body})


class RequestLimits:
    """The ASGI middleware (see the module docstring)."""

    def __init__(self, app: ASGIApp, limits: Limits) -> None:
        self.app = app
        self.limits = limits
        self.memory: TokenBuckets | None = None
        self.redis: RedisTokenBuckets | None = None
        if limits.rate_limit_rps > 0:
            if limits.redis_url:
                self.redis = RedisTokenBuckets(limits.redis_url, limits.rate_limit_rps, limits.rate_limit_burst)
            else:
                self.memory = TokenBuckets(limits.rate_limit_rps, limits.rate_limit_burst)
        self._too_many = _json(
            f"too many requests with this API key (limit {limits.rate_limit_rps:g} per second, bursts of "
            f"{limits.rate_limit_burst}); retry after the seconds in Retry-After"
        )
        self._too_large = {
            limit: f"request body larger than {limit:,} bytes, the most this endpoint accepts"
            for limit in (limits.max_body_bytes, limits.max_events_body_bytes)
        }
        self._too_large_json = {limit: _json(detail) for limit, detail in self._too_large.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan" and self.redis is not None:
                await self.app(scope, receive, self._closing_redis(send))
            else:
                await self.app(scope, receive, send)
            return
        key: bytes | None = None
        length: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                if key is None:
                    key = value
            elif name == b"content-length":
                length = value
        if key and scope["path"] not in _PROBES:
            if self.memory is not None:
                wait = self.memory.take(hash(key))
            elif self.redis is not None:
                wait = await self.redis.take(key)
            else:
                wait = 0.0
            if wait > 0.0:
                retry = str(max(1, math.ceil(wait))).encode()
                await _answer(send, 429, self._too_many, [(b"retry-after", retry)])
                return
        events = scope["method"] == "POST" and scope["path"] == EVENTS_PATH
        limit = self.limits.max_events_body_bytes if events else self.limits.max_body_bytes
        if length is not None and length.isdigit():
            # The server reads no more than Content-Length, so the header alone decides.
            if int(length) > limit:
                await _answer(send, 413, self._too_large_json[limit], [(b"connection", b"close")])
                return
            await self.app(scope, receive, send)
            return
        await self.app(scope, self._counting(receive, limit), send)

    def _counting(self, receive: Receive, limit: int) -> Receive:
        """``receive`` that counts the body's bytes as they arrive and raises :class:`BodyTooLarge` past ``limit``."""
        seen = 0
        detail = self._too_large[limit]

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(detail)
            return message

        return counted

    def _closing_redis(self, send: Send) -> Send:
        """``send`` of the lifespan scope that closes the Redis connections once the application has shut down."""
        redis = self.redis
        assert redis is not None

        async def closing(message: Message) -> None:
            if message["type"].startswith("lifespan.shutdown"):
                await redis.aclose()
            await send(message)

        return closing


async def method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
    """405 with ``Allow`` listing the methods of every route of the path (RFC 9110, section 15.5.6)."""
    path = request.url.path
    methods = ", ".join(sorted({m for pattern, ms in _operations(request.app) if pattern.match(path) for m in ms}))
    detail = f"{request.method} is not allowed on {request.url.path}" + (f"; use {methods}" if methods else "")
    headers = {"Allow": methods} if methods else {}
    return JSONResponse({"detail": detail}, status_code=405, headers=headers)


def _operations(app: FastAPI) -> list[tuple[re.Pattern[str], set[str]]]:
    """Per path of the app's OpenAPI document, its pattern and methods (read from the document rather than the
    router, whose structure for included routers is FastAPI's internal business); built once per app."""
    cached: list[tuple[re.Pattern[str], set[str]]] | None = getattr(app.state, "_adrec_operations", None)
    if cached is None:
        cached = [
            (compile_path(path)[0], {m.upper() for m in operations if m.upper() in _HTTP_METHODS})
            for path, operations in app.openapi().get("paths", {}).items()
        ]
        app.state._adrec_operations = cached
    return cached


_HTTP_METHODS = frozenset({"GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE"})


def install(app: FastAPI, limits: Limits) -> None:
    """Add :class:`RequestLimits` and the 405 handler to ``app`` (before it serves its first request)."""
    app.add_middleware(RequestLimits, limits=limits)
    app.add_exception_handler(405, method_not_allowed)
