"""The OpenAI Chat Completions adapter: one class, configured per upstream instance.

Serves OpenAI itself and every server that speaks its Chat Completions API (Groq, Mistral,
DeepSeek, OpenRouter, vLLM, Ollama, LM Studio...). Mirrors openai-python's
``chat.completions.create``: ``POST {base_url}/chat/completions`` with ``Authorization: Bearer``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping

import orjson
from switchboard.v1 import chat_pb2

from server.core.deadlines import within
from server.core.errors import UpstreamError, UpstreamStreamError
from server.providers.adapter import HttpAdapter
from server.providers.base import Capability, UpstreamCall
from server.providers.calls import open_stream, sse_events, stalled
from server.providers.codec import Json
from server.providers.frames import Decoded, decode_batch
from server.providers.http_client import StreamResponse, UpstreamClient
from server.providers.openai_compat.decode import decode_response
from server.providers.openai_compat.embed import decode_embed_response, encode_embed_request
from server.providers.openai_compat.encode import encode_request
from server.providers.openai_compat.errors import (
    error_for_json_stream,
    error_for_response,
    error_in_body,
)
from server.providers.openai_compat.stream import StreamDecoder
from server.providers.upstream_errors import error_for_exception

ALL_CAPABILITIES = frozenset(Capability)


class OpenAICompatProvider(HttpAdapter):
    """One OpenAI-compatible upstream (implements ``server.providers.base.Provider``).

    ``max_tokens_field``: OpenAI deprecated ``max_tokens`` for ``max_completion_tokens`` and its
    reasoning models (o-series, gpt-5) reject ``max_tokens`` with 400 ``unsupported_parameter``,
    while most compatible servers (older vLLM, Mistral, many proxies) only know ``max_tokens``:
    the registry picks ``max_completion_tokens`` for ``openai`` and ``max_tokens`` elsewhere.
    ``send_reasoning`` sends assistant reasoning back as ``reasoning_content``, which DeepSeek's
    thinking mode requires on tool-call turns and OpenAI rejects.
    """

    kind = "openai_compat"
    key_header = "authorization"
    key_prefix = "Bearer "
    wire_headers = {"content-type": "application/json", "accept": "application/json"}
    error_mapper = staticmethod(error_for_response)

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        max_tokens_field: str = "max_tokens",
        send_reasoning: bool = False,
        capabilities: frozenset[Capability] = ALL_CAPABILITIES,
        default_timeout: float = 600.0,
        stream_idle_timeout: float = 300.0,
        http_client: UpstreamClient | None = None,
    ) -> None:
        super().__init__(
            name,
            default_headers=headers,
            default_timeout=default_timeout,
            stream_idle_timeout=stream_idle_timeout,
            http_client=http_client,
        )
        self.base_url = base_url.rstrip("/")
        self.capabilities = capabilities
        self.max_tokens_field = max_tokens_field
        self.send_reasoning = send_reasoning
        self._url = self.base_url + "/chat/completions"
        self._embeddings_url = self.base_url + "/embeddings"

    def __repr__(self) -> str:
        # Configured headers may hold credentials (an `api-key` header): never shown.
        return f"OpenAICompatProvider(name={self.name!r}, base_url={self.base_url!r})"

    def _encode(self, request: chat_pb2.ChatRequest, call: UpstreamCall, stream: bool) -> Json:
        return encode_request(
            request,
            call.model,
            stream=stream,
            max_tokens_field=self.max_tokens_field,
            send_reasoning=self.send_reasoning,
        )

    async def chat(
        self, request: chat_pb2.ChatRequest, call: UpstreamCall
    ) -> chat_pb2.ChatResponse:
        """One completion (``POST /chat/completions``)."""
        body = await self._post(self._url, self._encode(request, call, stream=False), call)
        if body.get("error") and not body.get("choices"):
            raise error_in_body(body, self.name, (call.api_key,))
        message, finish, usage = decode_response(body)
        return chat_pb2.ChatResponse(message=message, finish_reason=finish, usage=usage)

    async def embed(
        self, request: chat_pb2.EmbedRequest, call: UpstreamCall
    ) -> chat_pb2.EmbedResponse:
        """Embedding vectors (``POST /embeddings``)."""
        body = await self._post(
            self._embeddings_url, encode_embed_request(request, call.model), call
        )
        if body.get("error") and not body.get("data"):
            raise error_in_body(body, self.name, (call.api_key,))
        return decode_embed_response(body, len(request.inputs), self.name)

    async def stream(
        self, request: chat_pb2.ChatRequest, call: UpstreamCall
    ) -> AsyncIterator[chat_pb2.StreamChatResponse]:
        """Streams frames then one ``end`` frame (``stream: true`` with usage requested)."""
        content = orjson.dumps(self._encode(request, call, stream=True))
        timeout = call.timeout or self.default_timeout
        secrets = (call.api_key,)
        decoder = StreamDecoder(self.name, secrets, call.meter)
        response: StreamResponse | None = None
        batches: AsyncGenerator[list[tuple[bytes, bytes]], None] | None = None

        def decode(batch: list[tuple[bytes, bytes]]) -> Decoded:
            return decode_batch(batch, decoder.decode, lambda: decoder.finished)

        try:
            first: list[chat_pb2.StreamChatResponse] = []
            error: UpstreamError | None = None
            try:
                # `timeout` bounds the wait for the first frame, not just the first byte:
                # keep-alive comments and the role chunk arrive long before any content, and
                # until a frame has gone out the executor can still fall back.
                with within(timeout):
                    response = await open_stream(
                        self._url,
                        content,
                        self._headers_for(call),
                        deadline=timeout,
                        idle=self.stream_idle_timeout,
                        provider=self.name,
                        secrets=secrets,
                        on_error=error_for_response,
                        on_json=error_for_json_stream,
                        client=self._http_client,
                    )
                    batches = sse_events(
                        response,
                        first_byte=timeout,
                        idle=self.stream_idle_timeout,
                        provider=self.name,
                    )
                    async for batch in batches:
                        first, error = decode(batch)
                        if error is not None and not first:
                            raise error
                        if first or decoder.finished:
                            break
            except TimeoutError as exc:
                if response is None:
                    raise error_for_exception(exc, provider=self.name) from None
                raise stalled(self.name, timeout) from None
            for frame in first:
                yield frame
            if error is not None:
                raise error
            if batches is not None and not decoder.finished:
                async for batch in batches:
                    frames, error = decode(batch)
                    for frame in frames:
                        yield frame
                    if error is not None:
                        raise error
                    if decoder.finished:
                        break
            if not decoder.complete:
                raise UpstreamStreamError(
                    "upstream stream ended before completion", provider=self.name, status=200
                )
            yield decoder.end_frame()
        finally:
            if batches is not None:
                await batches.aclose()
            if response is not None:
                response.release()
