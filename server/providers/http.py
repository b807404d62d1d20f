"""The one pooled upstream HTTP client and the helpers every adapter shares.

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

The error helpers turn HTTP statuses and httpx exceptions into ``server.core.errors.Upstream*``
(house style 4, after httpx ``map_exceptions`` and openai-python ``_base_client.py``). Callers
pass the message they already extracted from the provider's error body; the helpers redact any
secret they are given, well-known key shapes and bearer tokens, and cap the length, so neither a
key nor a raw upstream body reaches a caller or a log line.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import re
import ssl
import time
from collections.abc import Callable, Iterable, Mapping

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from server.core.errors import (
    UpstreamAuthError,
    UpstreamBadRequestError,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamNotFoundError,
    UpstreamRateLimitedError,
    UpstreamServerError,
    UpstreamTimeoutError,
)

# Gateways multiplex many callers onto few upstream hosts: keep plenty of warm connections.
POOL_LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=200, keepalive_expiry=60)
# Per-request timeouts come from UpstreamCall; these only bound what nobody configured.
DEFAULT_TIMEOUT = httpx.Timeout(600.0, connect=10.0, pool=30.0)
# Upstream error messages are short sentences; anything longer is a body we must not forward.
MAX_MESSAGE_CHARS = 500

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


# --- retry delays --------------------------------------------------------------------------


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms``, then ``retry-after`` as seconds or an HTTP date
    (openai-python ``_base_client._parse_retry_after_header``). None when absent or unusable."""
    get = headers.get if isinstance(headers, httpx.Headers) else _ci_getter(headers)
    delay = _seconds(get("retry-after-ms"), scale=1000.0)
    if delay is not None:
        return delay
    raw = get("retry-after")
    if raw is None:
        return None
    delay = _seconds(raw, scale=1.0)
    if delay is not None:
        return delay
    parsed = email.utils.parsedate_tz(raw)
    if parsed is None:
        return None
    return max(0.0, float(email.utils.mktime_tz(parsed) - time.time()))


def _ci_getter(headers: Mapping[str, str]) -> Callable[[str], str | None]:
    lowered = {k.lower(): v for k, v in headers.items()}
    return lowered.get


def _seconds(raw: str | None, *, scale: float) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw.strip()) / scale
    except ValueError:
        return None
    if math.isnan(value) or math.isinf(value) or value < 0:
        return None
    return value


# --- redaction -----------------------------------------------------------------------------

# Shapes of provider keys and bearer tokens an upstream might echo back in an error message.
_KEY_SHAPES = re.compile(
    r"(?i)\bbearer\s+\S+"
    r"|\b(?:sk|pk|rk|gsk|xai|csk|sb|fw|nvapi|hf|or|r8)[-_][A-Za-z0-9_\-\.\*]{8,}"
    r"|\bAIza[0-9A-Za-z_\-]{20,}"
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with the given secrets and anything shaped like a key replaced by ``[redacted]``."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return _KEY_SHAPES.sub("[redacted]", text)


def safe_message(message: str | None, secrets: Iterable[str] = ()) -> str:
    """A caller-safe, single-line, length-capped version of an upstream's error message."""
    if not message:
        return ""
    text = " ".join(redact(message, secrets).split())
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 1] + "…"
    return text


# --- error mapping -------------------------------------------------------------------------


def error_for_status(
    status: int,
    message: str | None,
    *,
    provider: str,
    headers: Mapping[str, str] | None = None,
    secrets: Iterable[str] = (),
    code: str | None = None,
) -> UpstreamError:
    """The gateway error for an upstream HTTP error status (openai-python ``_make_status_error``).

    ``message`` is the provider's own error message field, never a raw body. ``code`` is the
    provider's short error code (e.g. ``unsupported_parameter``), passed on as metadata.
    """
    text = safe_message(message, secrets)
    cls: type[UpstreamError]
    retry_after = None
    if status in (401, 403):
        # The upstream's words are about the operator's key (OpenAI echoes a masked one): the
        # caller learns only that the gateway's credentials were refused.
        cls, text = UpstreamAuthError, ""
        default = f"upstream rejected the gateway's credentials (HTTP {status})"
    elif status == 429:
        cls, default = UpstreamRateLimitedError, "upstream rate limit exceeded"
        retry_after = parse_retry_after(headers) if headers is not None else None
    elif status in (400, 413, 422):
        cls, default = UpstreamBadRequestError, f"upstream rejected the request (HTTP {status})"
    elif status == 404:
        cls, default = UpstreamNotFoundError, "upstream does not know this model or path"
    elif status in (408, 409) or status >= 500:
        cls, default = UpstreamServerError, f"upstream server error (HTTP {status})"
        retry_after = parse_retry_after(headers) if headers is not None else None
    else:
        # Other 4xx (402 payment required, 405, 415...): the upstream refuses this request.
        cls, default = UpstreamBadRequestError, f"upstream refused the request (HTTP {status})"
    return cls(
        text or default,
        provider=provider,
        status=status,
        retry_after=retry_after,
        metadata={"upstream_code": code} if code and _is_code(code) else None,
    )


def _is_code(code: str) -> bool:
    return len(code) <= 64 and all(c.isalnum() or c in "_-." for c in code)


def error_for_exception(exc: BaseException, *, provider: str) -> UpstreamError:
    """The gateway error for a transport failure (httpx ``map_exceptions``); never uses the
    exception's text, which can carry URLs and headers."""
    if isinstance(exc, UpstreamError):
        return exc
    # aiohttp's own timeouts subclass TimeoutError. httpx_aiohttp maps every other
    # aiohttp.ClientConnectionError (refused, reset) to httpx.ConnectTimeout, so only the cause
    # tells a refused connection from a slow one.
    if isinstance(exc, TimeoutError) or _caused_by(exc, TimeoutError):
        return UpstreamTimeoutError("upstream did not answer in time", provider=provider)
    if isinstance(exc, httpx.TimeoutException) and not _caused_by(
        exc, aiohttp.ClientConnectionError
    ):
        return UpstreamTimeoutError("upstream did not answer in time", provider=provider)
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return UpstreamConnectionError("upstream URL is not usable", provider=provider)
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        return UpstreamConnectionError("upstream closed the connection", provider=provider)
    return UpstreamConnectionError(
        f"could not reach upstream ({type(exc).__name__})", provider=provider
    )


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    current: BaseException | None = exc.__cause__ or exc.__context__
    for _ in range(8):
        if current is None:
            return False
        if isinstance(current, kind):
            return True
        current = current.__cause__ or current.__context__
    return False
