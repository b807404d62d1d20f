"""The one pooled upstream HTTP client every adapter sends through: ``post`` and ``open``.

A gateway sends the same kind of request all day — a POST of bytes it already encoded, to a
handful of hosts, with headers it sets itself — and needs nothing of a general HTTP client's
per-request machinery (URL merging and re-parsing, cookies, auth and redirect flows, hooks,
request and response model objects). DESIGN.md keeps httpx's API unless a measured gain
justifies a narrower path, and it does twice over. ``bench/upstream_client.py`` measured one
POST and its body read, in client CPU: through httpx.AsyncClient on the aiohttp transport
329 us, through ``httpx.Request`` + the transport 182 us, through aiohttp directly 109 us, and
through ``http1`` (keep-alive connections over httptools' parser) the figure in its commit;
in a minimal proxy at c64 the same swap took the process from 0.21-0.27 to 0.073-0.077 ms of
CPU per request. So this module is the narrow path: ``post`` (whole body) and ``open`` (a
streamed body, read with ``iter_chunks()`` and then ``release()``d), one pool per upstream
host per event loop.

Kept from the general clients: pooled keep-alive connections, one SSL context for the process
(loading the CA bundle costs ~70 ms), no cookies, no proxy variables (they would silently
reroute configured upstreams). Timeouts are the callers' ``within`` deadlines (``calls.py``);
only the connect is bounded here. Failures are ``http1.TransportError`` or ``OSError``, mapped
in ``upstream_errors``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass

from multidict import CIMultiDictProxy

from server.core.deadlines import within
from server.core.loops import running_loop
from server.providers.http1 import Pool, Response, Target, encode_headers, parse_target

# A connection that cannot be made in this long is not going to be (the request's own deadline
# usually ends the wait first).
CONNECT_TIMEOUT = 10.0

# The W3C traceparent of the upstream attempt running in this task, set by the executor while
# tracing is on (``observability.tracing``); every upstream request carries it.
upstream_traceparent: ContextVar[str | None] = ContextVar("upstream_traceparent", default=None)

_clients: dict[asyncio.AbstractEventLoop, UpstreamClient] = {}
_MAX_CACHED_URLS = 1024
_ssl_context: ssl.SSLContext | None = None
# Every request's own framing lines: the body's length follows, then the blank line.
_IDENTITY = b"accept-encoding: identity\r\ncontent-length: "


def _ssl() -> ssl.SSLContext:
    global _ssl_context
    if _ssl_context is None:
        _ssl_context = ssl.create_default_context()
    return _ssl_context


# Not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__, about
# 1 us more per object, and one of these is made per upstream response. Nothing assigns to it after.
@dataclass(slots=True)
class UpstreamResponse:
    """A whole upstream answer: status, headers (case-insensitive) and body."""

    status_code: int
    headers: CIMultiDictProxy[str]
    content: bytes


# A streamed answer: read it with ``.iter_chunks()``; ``.release()`` when done.
StreamResponse = Response


class UpstreamClient:
    """POSTs over pooled keep-alive connections (module docstring)."""

    def __init__(self) -> None:
        self.is_closed = False
        # Parsed upstream URLs with their pool: a process talks to a handful.
        self._routes: dict[str, tuple[Target, Pool]] = {}
        self._pools: dict[tuple[str, str, int], Pool] = {}

    def _route(self, url: str) -> tuple[Target, Pool]:
        route = self._routes.get(url)
        if route is None:
            target = parse_target(url)
            pool = self._pools.get(target.key)
            if pool is None:
                pool = self._pools[target.key] = Pool(target, _ssl())
            route = (target, pool)
            if len(self._routes) < _MAX_CACHED_URLS:
                self._routes[url] = route
        return route

    async def open(self, url: str, *, content: bytes, headers: Mapping[str, str]) -> StreamResponse:
        """POSTs and returns the response once its headers are in; the caller reads the body
        and releases it."""
        target, pool = self._route(url)
        traceparent = upstream_traceparent.get()
        if traceparent is not None:
            headers = {**headers, "traceparent": traceparent}
        request = b"".join(
            (target.head, encode_headers(headers), _IDENTITY, b"%d\r\n\r\n" % len(content), content)
        )
        connection = pool.take_idle()
        if connection is None:
            with within(CONNECT_TIMEOUT):
                connection = await pool.connect()
        try:
            return await connection.exchange(request)
        except BaseException:
            connection.close()
            raise

    async def post(
        self, url: str, *, content: bytes, headers: Mapping[str, str]
    ) -> UpstreamResponse:
        """POSTs and reads the whole response body."""
        response = await self.open(url, content=content, headers=headers)
        try:
            body = await response.read()
        finally:
            response.release()
        return UpstreamResponse(response.status, response.headers, body)

    async def aclose(self) -> None:
        """Closes the pooled connections."""
        self.is_closed = True
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        self._routes.clear()


def get_http_client() -> UpstreamClient:
    """The shared pooled client for the running event loop (one per loop)."""
    loop = running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        for old in [old for old in _clients if old.is_closed()]:
            del _clients[old]
        client = _clients[loop] = UpstreamClient()
    return client


async def close_http_client() -> None:
    """Closes the running loop's shared client (on shutdown; tests call it per test)."""
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()
