"""``AnthropicProvider``: the Messages API (``POST /v1/messages``) behind the Provider protocol.

Auth is the ``x-api-key`` header (the key arrives per call in ``UpstreamCall.api_key``) plus
``anthropic-version: 2023-06-01``. ``ANTHROPIC_BASE_URL`` style base URLs are accepted with or
without a trailing ``/v1``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from switchboard.v1 import chat_pb2
from typing_extensions import Unpack

from server.core.errors import UpstreamServerError
from server.providers.adapter import AdapterOptions, HttpAdapter
from server.providers.anthropic.decode import decode_response
from server.providers.anthropic.encode import encode_request
from server.providers.anthropic.errors import error_for_response
from server.providers.anthropic.models import model_info
from server.providers.anthropic.stream import StreamDecoder
from server.providers.base import NATIVE_CAPABILITIES, UpstreamCall
from server.providers.frames import decode_batch

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_BASE_URL = "https://api.anthropic.com"


class AnthropicProvider(HttpAdapter):
    """An Anthropic Messages API upstream (api.anthropic.com or a compatible endpoint)."""

    kind = "anthropic"
    key_header = "x-api-key"
    capabilities = NATIVE_CAPABILITIES
    wire_headers = {
        "anthropic-version": ANTHROPIC_VERSION,
        "content-type": "application/json",
        "accept": "application/json",
    }
    error_mapper = staticmethod(error_for_response)

    def __init__(
        self,
        name: str = "anthropic",
        base_url: str = DEFAULT_BASE_URL,
        **options: Unpack[AdapterOptions],
    ) -> None:
        super().__init__(name, **options)
        root = base_url.rstrip("/")
        self.url = root + ("/messages" if root.endswith("/v1") else "/v1/messages")
        self.count_url = self.url + "/count_tokens"

    def __repr__(self) -> str:
        return f"AnthropicProvider(name={self.name!r}, url={self.url!r})"

    def max_output_tokens(self, model: str) -> int:
        """The max_tokens this adapter sends for ``model`` when the caller set none."""
        return model_info(model).max_output_tokens

    async def chat(
        self, request: chat_pb2.ChatRequest, call: UpstreamCall
    ) -> chat_pb2.ChatResponse:
        """One Messages API call, decoded into message, finish_reason and usage."""
        encoded = encode_request(request, call.model)
        data = await self._post(self.url, encoded.body, call)
        return decode_response(data, encoded.json_tool)

    async def count_tokens(self, request: chat_pb2.ChatRequest, call: UpstreamCall) -> int:
        """Anthropic's exact input token count for ``request`` (``/v1/messages/count_tokens``,
        which takes the same body without ``max_tokens``)."""
        body = encode_request(request, call.model).body
        body.pop("max_tokens", None)
        body.pop("metadata", None)
        data = await self._post(self.count_url, body, call)
        tokens = data.get("input_tokens")
        if not isinstance(tokens, int) or isinstance(tokens, bool):
            raise UpstreamServerError(
                "upstream sent a malformed token count", provider=self.name, status=200
            )
        return tokens

    async def stream(
        self, request: chat_pb2.ChatRequest, call: UpstreamCall
    ) -> AsyncIterator[chat_pb2.StreamChatResponse]:
        """The Messages API stream as contract frames, ending with one ``end`` frame."""
        encoded = encode_request(request, call.model, stream=True)
        decoder = StreamDecoder(self.name, encoded.json_tool, call.meter)
        headers = self._headers_for(call).copy()  # the cached set is shared by every call
        headers["accept"] = "text/event-stream"
        batches = self._stream_json(self.url, encoded.body, call, headers)

        def feed(event: bytes, data: Any) -> list[chat_pb2.StreamChatResponse]:
            return decoder.feed(event.decode(), data) if isinstance(data, dict) else []

        try:
            async for batch in batches:
                frames, error = decode_batch(batch, feed, lambda: decoder.done)
                for frame in frames:
                    yield frame
                if error is not None:
                    raise error
                if decoder.done:
                    break
        finally:
            await batches.aclose()
        yield decoder.end()
