"""POST-JSON and SSE-stream plumbing shared by the Anthropic and Gemini adapters.

Both adapters use the shared pooled client (``server.providers.http.get_http_client``) and map
every transport failure inside the adapter (house style 4). Timeouts: ``deadline`` bounds a
non-streamed call as a whole, ``first_byte`` a stream until its first body chunk; after that
each chunk must arrive within ``idle`` seconds or the stream counts as stalled
(``UpstreamTimeoutError``).
A stream that breaks after its 200 raises ``UpstreamStreamError``.

Each wait runs under its own ``asyncio.timeout`` that never spans a ``yield``: a timeout left
armed across a yield would cancel whatever the consumer happens to be awaiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any

import httpx
import orjson

from server.core.errors import UpstreamError, UpstreamStreamError, UpstreamTimeoutError
from server.providers.anthropic.sse import SSEParser
from server.providers.http import error_for_exception, get_http_client

# Maps a non-2xx response (status, headers, body) to the adapter's gateway error.
ErrorMapper = Callable[[int, Mapping[str, str], bytes], UpstreamError]


async def post_json(
    url: str,
    body: dict[str, Any],
    headers: Mapping[str, str],
    *,
    deadline: float,
    provider: str,
    on_error: ErrorMapper,
) -> Any:
    """POSTs ``body`` and returns the decoded JSON answer; raises ``Upstream*`` on failure."""
    client = get_http_client()
    try:
        async with asyncio.timeout(deadline):
            response = await client.post(url, content=orjson.dumps(body), headers=headers)
    except (httpx.HTTPError, OSError, TimeoutError) as exc:
        raise error_for_exception(exc, provider=provider) from None
    if response.status_code >= 300:
        raise on_error(response.status_code, response.headers, response.content)
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise UpstreamError(
            "upstream answered with a body that is not JSON", provider=provider, status=200
        ) from None


async def stream_sse(
    url: str,
    body: dict[str, Any],
    headers: Mapping[str, str],
    *,
    first_byte: float,
    idle: float,
    provider: str,
    on_error: ErrorMapper,
) -> AsyncGenerator[tuple[str, Any], None]:
    """Yields ``(event name, decoded JSON data)`` for each SSE event of a streamed POST.

    Returns normally when the server closes the stream; callers decide whether the events seen
    amount to a complete answer."""
    client = get_http_client()
    request = client.build_request("POST", url, content=orjson.dumps(body), headers=headers)
    try:
        async with asyncio.timeout(first_byte):
            response = await client.send(request, stream=True)
            if response.status_code >= 300:
                try:
                    content = await response.aread()
                finally:
                    await response.aclose()
                raise on_error(response.status_code, response.headers, content)
    except (httpx.HTTPError, OSError, TimeoutError) as exc:
        raise error_for_exception(exc, provider=provider) from None
    parser = SSEParser()
    chunks = response.aiter_bytes()
    wait = first_byte
    try:
        while True:
            try:
                async with asyncio.timeout(wait):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise UpstreamTimeoutError(
                    f"upstream stream stalled for {wait:g}s", provider=provider
                ) from None
            except (httpx.HTTPError, OSError) as exc:
                mapped = error_for_exception(exc, provider=provider)
                if isinstance(mapped, UpstreamTimeoutError):
                    raise mapped from None
                raise UpstreamStreamError(
                    "upstream stream broke off", provider=provider, status=200
                ) from None
            wait = idle
            for event, data in parser.feed(chunk):
                try:
                    decoded = orjson.loads(data)
                except orjson.JSONDecodeError:
                    raise UpstreamStreamError(
                        "upstream sent a stream event that is not JSON",
                        provider=provider,
                        status=200,
                    ) from None
                yield event, decoded
    finally:
        await response.aclose()
