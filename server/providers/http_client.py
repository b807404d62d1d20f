"""The one pooled upstream HTTP client every adapter sends through: aiohttp, used directly.

A gateway sends the same kind of request all day — a POST of bytes it already encoded, to a
handful of hosts, with headers it sets itself — and needs nothing of a general HTTP client's
per-request machinery (URL merging and re-parsing, cookies, auth and redirect flows, hooks,
request and response model objects). DESIGN.md keeps httpx's API on the aiohttp transport
unless a measured gain justifies a narrower path, and it does: ``bench/upstream_client.py``
(c16 against ``bench/fake_upstream.py``, median of 3 rounds, 2026-12-02) measured one POST and
its body read at 109 us of client CPU through this module, 182 us through ``httpx.Request`` +
``httpx_aiohttp.AiohttpTransport`` (the previous path, which already skipped
``httpx.AsyncClient``) and 329 us through ``httpx.AsyncClient``: 73 us per request saved, about
a tenth of the gateway's whole per-request CPU. So this module is the narrow path: ``post``
(whole body) and ``open`` (a streamed body), on one ``aiohttp.ClientSession`` per event loop.

What httpx gave that is kept here: pooled keep-alive connections (``TCPConnector``), one SSL
context for the process (loading the CA bundle costs ~70 ms), no cookie ever stored and replayed
on another caller's call (``DummyCookieJar``), no proxy variables honoured (``trust_env`` off:
they would silently reroute configured upstreams). Timeouts are the callers' ``within``
deadlines (``calls.py``), so aiohttp arms no timer of its own per request; only the socket
connect is bounded here. Transport exceptions are aiohttp's, mapped in ``upstream_errors``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

# Gateways multiplex many callers onto few upstream hosts: keep plenty of warm connections.
MAX_CONNECTIONS = 1000
KEEPALIVE_SECONDS = 60.0
# A connection that cannot be made in this long is not going to be (the request's own deadline
# usually ends the wait first).
CONNECT_TIMEOUT = 10.0

# The W3C traceparent of the upstream attempt running in this task, set by the executor while
# tracing is on (``observability.tracing``); every upstream request carries it.
upstream_traceparent: ContextVar[str | None] = ContextVar("upstream_traceparent", default=None)

_clients: dict[asyncio.AbstractEventLoop, UpstreamClient] = {}
_MAX_CACHED_URLS = 1024
_ssl_context: ssl.SSLContext | None = None
# No per-request timer: every wait is under the caller's deadlines.within.
_NO_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT)


def _ssl() -> ssl.SSLContext:
    global _ssl_context
    if _ssl_context is None:
        _ssl_context = ssl.create_default_context()
    return _ssl_context


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    """A whole upstream answer: status, headers (case-insensitive) and body."""

    status_code: int
    headers: CIMultiDictProxy[str]
    content: bytes


# A streamed answer: read it with ``.content.iter_any()``; ``.release()`` when done.
StreamResponse = aiohttp.ClientResponse


class UpstreamClient:
    """POSTs over one pooled aiohttp session (module docstring)."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self.is_closed = False
        # Parsed upstream URLs: a process talks to a handful, and parsing one per request
        # showed in profiles.
        self._urls: dict[str, URL] = {}

    def _url(self, url: str) -> URL:
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = URL(url)
            if len(self._urls) < _MAX_CACHED_URLS:
                self._urls[url] = parsed
        return parsed

    def _client(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None:
            # Created on first use, inside the running loop it is bound to.
            connector = aiohttp.TCPConnector(
                limit=MAX_CONNECTIONS, keepalive_timeout=KEEPALIVE_SECONDS, ssl=_ssl()
            )
            session = self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=_NO_TIMEOUT,
                # The adapters send exactly the headers they mean to send.
                skip_auto_headers=("User-Agent",),
                trust_env=False,
            )
        return session

    async def post(
        self, url: str, *, content: bytes, headers: Mapping[str, str]
    ) -> UpstreamResponse:
        """POSTs and reads the whole response body."""
        traceparent = upstream_traceparent.get()
        if traceparent is not None:
            headers = {**headers, "traceparent": traceparent}
        async with self._client().post(
            self._url(url), data=content, headers=headers, allow_redirects=False
        ) as response:
            body = await response.read()
            return UpstreamResponse(response.status, response.headers, body)

    async def open(self, url: str, *, content: bytes, headers: Mapping[str, str]) -> StreamResponse:
        """POSTs and returns the response once its headers are in; the caller reads the body
        and releases it."""
        traceparent = upstream_traceparent.get()
        if traceparent is not None:
            headers = {**headers, "traceparent": traceparent}
        return await self._client().post(
            self._url(url), data=content, headers=headers, allow_redirects=False
        )

    async def aclose(self) -> None:
        """Closes the pooled connections."""
        self.is_closed = True
        if self._session is not None:
            await self._session.close()


def get_http_client() -> UpstreamClient:
    """The shared pooled client for the running event loop (one aiohttp session per loop)."""
    loop = asyncio.get_running_loop()
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
