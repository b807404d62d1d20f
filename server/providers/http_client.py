"""The one pooled upstream HTTP client every adapter sends through.

Adapters keep httpx's API (``httpx.Request`` / ``httpx.Response``, its exceptions and timeouts)
on ``httpx_aiohttp.AiohttpTransport``, as openai-python's ``DefaultAioHttpClient`` does:
DESIGN.md's speed table shows httpx's default transport collapsing under concurrency (433 req/s
at c64) where the aiohttp transport holds (4,938 req/s). ``UpstreamClient`` hands requests to
the transport directly instead of going through ``httpx.AsyncClient``: the client's per-request
bookkeeping (URL merging and re-parsing, cookie extraction, auth and redirect flows, event hooks)
measured ~0.4 ms of CPU per request on this machine (httpx client 764 µs vs. transport 377 µs
vs. bare aiohttp 327 µs per request in one run), and a gateway needs none of it: it never
follows redirects, keeps no cookies and sets its own auth header. The aiohttp session uses a
``DummyCookieJar`` so no upstream cookie is ever stored and replayed on another caller's call.
One client per event loop, created lazily and reused for every request, so connections stay
alive between calls; an aiohttp session is bound to the loop it was created on, hence the key.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

# Gateways multiplex many callers onto few upstream hosts: keep plenty of warm connections.
POOL_LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=200, keepalive_expiry=60)
# Per-request timeouts come from UpstreamCall; these only bound what nobody configured.
DEFAULT_TIMEOUT = httpx.Timeout(600.0, connect=10.0, pool=30.0)

_clients: dict[asyncio.AbstractEventLoop, UpstreamClient] = {}
_MAX_CACHED_URLS = 1024
# Loading the CA bundle costs ~70 ms: done once per process, shared by every loop's client.
_ssl_context: ssl.SSLContext | None = None


def _ssl() -> ssl.SSLContext:
    global _ssl_context
    if _ssl_context is None:
        _ssl_context = httpx.create_ssl_context()
    return _ssl_context


class UpstreamClient:
    """httpx requests sent straight to the pooled aiohttp transport (module docstring)."""

    def __init__(self) -> None:
        self._transport = AiohttpTransport(client=_new_session)
        self.is_closed = False
        # Parsed upstream URLs: a process talks to a handful, and parsing one per request
        # showed in profiles.
        self._urls: dict[str, httpx.URL] = {}

    def build_request(
        self,
        method: str,
        url: httpx.URL | str,
        *,
        content: bytes,
        headers: Mapping[str, str],
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    ) -> httpx.Request:
        """An ``httpx.Request`` carrying its timeouts the way transports read them."""
        if isinstance(url, str):
            parsed = self._urls.get(url)
            if parsed is None:
                parsed = httpx.URL(url)
                if len(self._urls) < _MAX_CACHED_URLS:
                    self._urls[url] = parsed
            url = parsed
        return httpx.Request(
            method, url, content=content, headers=headers, extensions={"timeout": timeout.as_dict()}
        )

    async def send(self, request: httpx.Request) -> httpx.Response:
        """Sends ``request``; the response body is not read yet (stream it or ``aread`` it)."""
        return await self._transport.handle_async_request(request)

    async def post(
        self,
        url: httpx.URL | str,
        *,
        content: bytes,
        headers: Mapping[str, str],
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - per-phase httpx timeouts
    ) -> httpx.Response:
        """POSTs and reads the whole response body."""
        request = self.build_request("POST", url, content=content, headers=headers, timeout=timeout)
        response = await self.send(request)
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

    async def aclose(self) -> None:
        """Closes the pooled connections."""
        self.is_closed = True
        await self._transport.aclose()


def _new_session() -> aiohttp.ClientSession:
    # Called by the transport on first use, inside the running loop.
    connector = aiohttp.TCPConnector(
        limit=POOL_LIMITS.max_connections or 0,
        keepalive_timeout=POOL_LIMITS.keepalive_expiry,
        ssl=_ssl(),
    )
    # trust_env stays off: proxy variables would silently reroute configured upstreams.
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())


def get_http_client() -> UpstreamClient:
    """The shared pooled client for the running event loop (openai ``DefaultAioHttpClient``)."""
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
