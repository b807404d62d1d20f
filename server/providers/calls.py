"""The POST-JSON and SSE-stream plumbing every HTTP adapter shares.

All requests go over the shared pooled client (``http_client.get_http_client``, or one an
adapter was given) and every transport failure is mapped here (house style 4), so an
adapter only encodes, decodes and maps its own error bodies (its ``ErrorMapper``).

Timeouts: ``deadline`` bounds a non-streamed call as a whole and a stream until its response
headers; the first body chunk must then arrive within ``first_byte`` seconds and each later one
within ``idle`` seconds, or the stream counts as stalled (``UpstreamTimeoutError``). A stream
that breaks after its 200 raises ``UpstreamStreamError``. Each wait runs under its own
``deadlines.within`` (the loop's watchdog, not a timer per wait) that never spans a ``yield``:
a timeout left armed across a yield would cancel whatever the consumer happens to be awaiting.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any, Protocol

import orjson

from server.core.deadlines import within
from server.core.errors import (
    UpstreamError,
    UpstreamServerError,
    UpstreamStreamError,
    UpstreamTimeoutError,
)
from server.providers.http1 import TransportError
from server.providers.http_client import StreamResponse, UpstreamClient, get_http_client
from server.providers.sse import SSEParser
from server.providers.upstream_errors import error_for_exception, error_for_status

# Error bodies are short; a proxy's HTML page or a runaway body is cut here before parsing.
MAX_ERROR_BODY = 64 * 1024
# What a request may fail with before an answer (a connect's errors are OSErrors).
_SEND_ERRORS = (TransportError, OSError, TimeoutError)


class ErrorMapper(Protocol):
    """An adapter's ``error_for_response``: a non-2xx answer → its gateway error."""

    def __call__(
        self,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        provider: str,
        secrets: tuple[str, ...],
    ) -> UpstreamError: ...


# Where an adapter finds the provider's own (message, short code) in a parsed error body.
ErrorFields = Callable[[object], tuple[str | None, str | None]]


def status_error_mapper(fields: ErrorFields) -> ErrorMapper:
    """An adapter's ``ErrorMapper`` for a provider whose error body only names a message and a
    code: the status picks the error class (``http.error_for_status``)."""

    def error_for_response(
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        provider: str,
        secrets: tuple[str, ...] = (),
    ) -> UpstreamError:
        try:
            parsed = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            parsed = None  # an HTML error page from a proxy: its text is never forwarded
        message, code = fields(parsed)
        return error_for_status(
            status, message, provider=provider, headers=headers, secrets=secrets, code=code
        )

    return error_for_response


async def post_json(
    url: str,
    content: bytes,
    headers: Mapping[str, str],
    *,
    deadline: float,
    provider: str,
    secrets: tuple[str, ...],
    on_error: ErrorMapper,
    client: UpstreamClient | None = None,
) -> dict[str, Any]:
    """POSTs ``content`` and returns the JSON object answered; raises ``Upstream*`` on failure."""
    client = client or get_http_client()
    try:
        with within(deadline):
            response = await client.post(url, content=content, headers=headers)
    except _SEND_ERRORS as exc:
        raise error_for_exception(exc, provider=provider) from None
    if response.status_code >= 300:
        raise on_error(response.status_code, response.headers, response.content, provider, secrets)
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        raise UpstreamServerError(
            "upstream sent a malformed response", provider=provider, status=200
        )
    return body


async def open_stream(
    url: str,
    content: bytes,
    headers: Mapping[str, str],
    *,
    deadline: float,
    idle: float,
    provider: str,
    secrets: tuple[str, ...],
    on_error: ErrorMapper,
    on_json: Callable[[bytes, str, tuple[str, ...]], UpstreamError] | None = None,
    client: UpstreamClient | None = None,
) -> StreamResponse:
    """POSTs a stream request and returns the open 2xx response (the caller closes it, usually
    through ``sse_events``); raises ``Upstream*`` for an error status or a failed request.

    ``on_json(body, provider, secrets)``, when given, maps a 2xx JSON answer (an error object
    where a stream was asked for) to the error raised instead of streaming it."""
    client = client or get_http_client()
    try:
        with within(deadline):
            response = await client.open(url, content=content, headers=headers)
            if response.status >= 300:
                body = await _drain(response)
                raise on_error(response.status, response.headers, body, provider, secrets)
            if on_json is not None and _is_json(response):
                raise on_json(await _drain(response), provider, secrets)
    except _SEND_ERRORS as exc:
        raise error_for_exception(exc, provider=provider) from None
    return response


async def sse_events(
    response: StreamResponse, *, first_byte: float, idle: float, provider: str
) -> AsyncGenerator[list[tuple[bytes, bytes]], None]:
    """Yields the ``(event name, data)`` pairs of ``response``'s server-sent events, as one list
    per network read (never empty), closing it at the end: events that arrived together are
    handled together (``frames.coalesce``). Returns normally when the server ends the body (an
    event left without its blank line still counts); callers decide whether the events seen
    amount to a complete answer."""
    parser = SSEParser()
    chunks = response.iter_chunks()
    wait = first_byte
    timeout = within(wait)
    try:
        while True:
            try:
                with timeout.restart(wait):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise stalled(provider, wait) from None
            except (TransportError, OSError) as exc:
                if isinstance(error_for_exception(exc, provider=provider), UpstreamTimeoutError):
                    raise stalled(provider, wait) from None
                raise UpstreamStreamError(
                    "upstream stream broke off", provider=provider, status=200
                ) from None
            wait = idle
            events = parser.feed(chunk)
            if events:
                yield events
        events = parser.flush()
        if events:
            yield events
    finally:
        response.release()


def stalled(provider: str, seconds: float) -> UpstreamTimeoutError:
    """The error for a stream that sent nothing more for ``seconds``."""
    return UpstreamTimeoutError(
        f"upstream stream stalled for {seconds:g}s", provider=provider, status=200
    )


async def read_limited(response: StreamResponse, limit: int = MAX_ERROR_BODY) -> bytes:
    """A streamed response's body, or ``b""`` when it is longer than ``limit`` bytes."""
    body = b""
    async for chunk in response.iter_chunks():
        body += chunk
        if len(body) > limit:
            return b""
    return body


async def _drain(response: StreamResponse) -> bytes:
    try:
        return await read_limited(response)
    finally:
        response.release()


def _is_json(response: StreamResponse) -> bool:
    return response.headers.get("content-type", "").startswith("application/json")
