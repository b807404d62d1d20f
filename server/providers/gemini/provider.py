"""``GeminiProvider``: the Gemini API (``generateContent``, ``streamGenerateContent?alt=sse``).

The key travels in the ``x-goog-api-key`` header (never in the URL, where it would end up in
access logs). ``GEMINI_BASE_URL`` style base URLs are accepted with or without ``/v1beta``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from switchboard.v1 import chat_pb2
from typing_extensions import Unpack

from server.providers.adapter import AdapterOptions, HttpAdapter
from server.providers.base import NATIVE_CAPABILITIES, Capability, UpstreamCall
from server.providers.frames import decode_batch
from server.providers.gemini.decode import decode_response
from server.providers.gemini.embed import decode_embed_response, encode_embed_request
from server.providers.gemini.encode import encode_request
from server.providers.gemini.errors import error_for_response
from server.providers.gemini.stream import StreamDecoder

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"


class GeminiProvider(HttpAdapter):
    """A Gemini API upstream (generativelanguage.googleapis.com or a compatible endpoint)."""

    kind = "gemini"
    key_header = "x-goog-api-key"
    capabilities = NATIVE_CAPABILITIES | {Capability.EMBEDDINGS}
    wire_headers = {"content-type": "application/json"}
    error_mapper = staticmethod(error_for_response)

    def __init__(
        self,
        name: str = "gemini",
        base_url: str = DEFAULT_BASE_URL,
        **options: Unpack[AdapterOptions],
    ) -> None:
        super().__init__(name, **options)
        root = base_url.rstrip("/")
        if not root.endswith(("/v1beta", "/v1")):
            root += "/v1beta"
        self._models_url = root + "/models/"
        self._urls: dict[tuple[str, bool], str] = {}

    def __repr__(self) -> str:
        return f"GeminiProvider(name={self.name!r}, url={self._models_url!r})"

    def url(self, model: str, *, stream: bool) -> str:
        """The endpoint for ``model`` (``models/`` prefix optional)."""
        key = (model, stream)
        found = self._urls.get(key)
        if found is None:
            name = quote(model.removeprefix("models/"), safe="-._~")
            method = ":streamGenerateContent?alt=sse" if stream else ":generateContent"
            found = self._models_url + name + method
            if len(self._urls) < 1024:
                self._urls[key] = found
        return found

    async def chat(
        self, request: chat_pb2.ChatRequest, call: UpstreamCall
    ) -> chat_pb2.ChatResponse:
        """One ``generateContent`` call, decoded into message, finish_reason and usage."""
        url = self.url(call.model, stream=False)
        return decode_response(await self._post(url, encode_request(request), call))

    async def embed(
        self, request: chat_pb2.EmbedRequest, call: UpstreamCall
    ) -> chat_pb2.EmbedResponse:
        """``batchEmbedContents``: one embedContent request per input."""
        body = encode_embed_request(request, call.model)
        name = quote(call.model.removeprefix("models/"), safe="-._~")
        answer = await self._post(self._models_url + name + ":batchEmbedContents", body, call)
        return decode_embed_response(answer, len(request.inputs), self.name)

    async def stream(
        self, request: chat_pb2.ChatRequest, call: UpstreamCall
    ) -> AsyncIterator[chat_pb2.StreamChatResponse]:
        """The ``streamGenerateContent`` SSE stream as contract frames, then one ``end``."""
        decoder = StreamDecoder(self.name, call.meter)
        url = self.url(call.model, stream=True)
        batches = self._stream_json(url, encode_request(request), call, self._headers_for(call))

        def feed(event: bytes, data: Any) -> list[chat_pb2.StreamChatResponse]:
            if isinstance(data, list):
                # A Google front end may wrap an error object in a list.
                data = data[0] if data else {}
            return decoder.feed(data) if isinstance(data, dict) else []

        try:
            async for batch in batches:
                frames, error = decode_batch(batch, feed, lambda: decoder.done)
                for frame in frames:
                    yield frame
                if error is not None:
                    raise error
                if decoder.done:
                    # The chunk with the finish reason carries the final usage: the answer is
                    # complete even if the connection is held open after it.
                    break
        finally:
            await batches.aclose()
        yield decoder.end()
