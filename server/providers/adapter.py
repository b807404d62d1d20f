"""``HttpAdapter``: what the OpenAI-compatible, Anthropic and Gemini adapters share.

An adapter subclass adds its ``kind``, ``capabilities``, URLs and ``chat``/``stream``; this
holds the rest of the ``Provider`` scaffolding: the instance name, the headers built once at
construction (configured ones lower-cased, so they override the defaults whatever their case),
the per-call key header, the default timeouts, and calls through ``server.providers.calls``
with the adapter's own error mapping.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import Any, ClassVar, TypedDict

import orjson
from multidict import CIMultiDict

from server.core.errors import UpstreamStreamError
from server.providers.base import Capability, UpstreamCall
from server.providers.calls import ErrorMapper, open_stream, post_json, sse_events
from server.providers.codec import Json
from server.providers.http_client import UpstreamClient

# Per-key header sets kept per adapter (a key pool is a handful; this only bounds a leak).
_MAX_KEYS = 256


class AdapterOptions(TypedDict, total=False):
    """The keyword options every HTTP adapter takes (``HttpAdapter.__init__``)."""

    default_headers: Mapping[str, str] | None
    default_timeout: float
    stream_idle_timeout: float
    http_client: UpstreamClient | None


class HttpAdapter:
    """Base of the HTTP adapters (each implements ``server.providers.base.Provider``)."""

    kind: str
    capabilities: frozenset[Capability]
    # The header each call's key travels in, and what precedes the key there.
    key_header: ClassVar[str]
    key_prefix: ClassVar[str] = ""
    # Headers every call of this wire sends, and how its error answers are mapped.
    wire_headers: ClassVar[Mapping[str, str]]
    error_mapper: ClassVar[ErrorMapper]

    def __init__(
        self,
        name: str,
        *,
        default_headers: Mapping[str, str] | None = None,
        default_timeout: float = 600.0,
        stream_idle_timeout: float = 300.0,
        http_client: UpstreamClient | None = None,
    ) -> None:
        self.name = name
        configured = {k.lower(): v for k, v in (default_headers or {}).items()}
        self._headers = {**self.wire_headers, **configured}
        self._by_key: dict[str, CIMultiDict[str]] = {}
        self._on_error = self.error_mapper
        # Used when UpstreamCall.timeout is None; a stream may then pause this long per chunk.
        self.default_timeout = default_timeout
        self.stream_idle_timeout = stream_idle_timeout
        self._http_client = http_client

    def _headers_for(self, call: UpstreamCall) -> CIMultiDict[str]:
        """The headers of one call: the prebuilt ones plus the key (none for keyless servers),
        built once per key."""
        headers = self._by_key.get(call.api_key)
        if headers is None:
            headers = CIMultiDict(self._headers)
            if call.api_key:
                headers[self.key_header] = self.key_prefix + call.api_key
            if len(self._by_key) >= _MAX_KEYS:
                self._by_key.clear()
            self._by_key[call.api_key] = headers
        return headers

    async def _post(self, url: str, body: Json, call: UpstreamCall) -> Json:
        """``transport.post_json`` with this adapter's headers, timeout and error mapping."""
        return await post_json(
            url,
            orjson.dumps(body),
            self._headers_for(call),
            deadline=call.timeout or self.default_timeout,
            provider=self.name,
            secrets=(call.api_key,),
            on_error=self._on_error,
            client=self._http_client,
        )

    async def _stream_json(
        self, url: str, body: Json, call: UpstreamCall, headers: Mapping[str, str]
    ) -> AsyncGenerator[list[tuple[bytes, Any]], None]:
        """``(event name, JSON data)`` of each server-sent event, one list per network read,
        for wires whose every event is a JSON document (Anthropic, Gemini); an event that is
        not JSON ends its list with an ``UpstreamStreamError`` as its data."""
        first_byte = call.timeout or self.default_timeout
        response = await open_stream(
            url,
            orjson.dumps(body),
            headers,
            deadline=first_byte,
            idle=self.stream_idle_timeout,
            provider=self.name,
            secrets=(call.api_key,),
            on_error=self._on_error,
            client=self._http_client,
        )
        batches = sse_events(
            response, first_byte=first_byte, idle=self.stream_idle_timeout, provider=self.name
        )
        try:
            async for batch in batches:
                decoded: list[tuple[bytes, Any]] = []
                for event, data in batch:
                    try:
                        decoded.append((event, orjson.loads(data)))
                    except orjson.JSONDecodeError:
                        # In the event's place, for frames.decode_batch to raise after the
                        # frames decoded before it.
                        not_json = UpstreamStreamError(
                            "upstream sent a stream event that is not JSON",
                            provider=self.name,
                            status=200,
                        )
                        decoded.append((event, not_json))
                        break
                yield decoded
        finally:
            await batches.aclose()
            response.release()

    async def aclose(self) -> None:
        """Nothing to release: the pooled HTTP client is shared (``close_http_client``)."""
