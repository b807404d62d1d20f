"""The OpenAI Chat Completions adapter: one class, configured per upstream instance.

Serves OpenAI itself and every server that speaks its Chat Completions API (Groq, Mistral,
DeepSeek, OpenRouter, vLLM, Ollama, LM Studio...). Mirrors openai-python's
``chat.completions.create``: ``POST {base_url}/chat/completions`` with ``Authorization: Bearer``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Mapping

import httpx
import orjson
from switchboard.v1 import chat_pb2

from server.core.errors import (
    UpstreamError,
    UpstreamServerError,
    UpstreamStreamError,
    UpstreamTimeoutError,
)
from server.providers.base import Capability, UpstreamCall
from server.providers.http import error_for_exception, error_for_status, get_http_client
from server.providers.openai_compat.decode import decode_response, error_fields
from server.providers.openai_compat.encode import encode_request
from server.providers.openai_compat.stream import SSEParser, StreamDecoder

ALL_CAPABILITIES = frozenset(Capability)
# Error bodies are short; a proxy's HTML page or a runaway body is cut here before parsing.
MAX_ERROR_BODY = 64 * 1024


class OpenAICompatProvider:
    """One OpenAI-compatible upstream (implements ``server.providers.base.Provider``).

    ``max_tokens_field``: OpenAI deprecated ``max_tokens`` for ``max_completion_tokens`` and its
    reasoning models (o-series, gpt-5) reject ``max_tokens`` with 400 ``unsupported_parameter``,
    while most compatible servers (older vLLM, Mistral, many proxies) only know ``max_tokens``:
    the registry picks ``max_completion_tokens`` for ``openai`` and ``max_tokens`` elsewhere.
    ``send_reasoning`` sends assistant reasoning back as ``reasoning_content``, which DeepSeek's
    thinking mode requires on tool-call turns and OpenAI rejects.
    """

    kind = "openai_compat"

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
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.capabilities = capabilities
        self.max_tokens_field = max_tokens_field
        self.send_reasoning = send_reasoning
        self._url = self.base_url + "/chat/completions"
        self._headers = {
            "content-type": "application/json",
            "accept": "application/json",
            **{k.lower(): v for k, v in (headers or {}).items()},
        }
        self._default_timeout = default_timeout
        self._idle_timeout = stream_idle_timeout
        self._http_client = http_client

    def __repr__(self) -> str:
        # Configured headers may hold credentials (an `api-key` header): never shown.
        return f"OpenAICompatProvider(name={self.name!r}, base_url={self.base_url!r})"

    def _client(self) -> httpx.AsyncClient:
        return self._http_client or get_http_client()

    def _request_headers(self, api_key: str) -> dict[str, str]:
        if not api_key:
            return self._headers
        return {**self._headers, "authorization": f"Bearer {api_key}"}

    def _encode(self, request: chat_pb2.ChatRequest, call: UpstreamCall, stream: bool) -> bytes:
        body = encode_request(
            request,
            call.model,
            stream=stream,
            max_tokens_field=self.max_tokens_field,
            send_reasoning=self.send_reasoning,
        )
        return orjson.dumps(body)

    async def chat(
        self, request: chat_pb2.ChatRequest, call: UpstreamCall
    ) -> chat_pb2.ChatResponse:
        """One completion (``POST /chat/completions``)."""
        content = self._encode(request, call, stream=False)
        timeout = call.timeout or self._default_timeout
        try:
            async with asyncio.timeout(timeout):
                response = await self._client().post(
                    self._url,
                    content=content,
                    headers=self._request_headers(call.api_key),
                    timeout=httpx.Timeout(timeout),
                )
        except (httpx.HTTPError, TimeoutError) as exc:
            raise error_for_exception(exc, provider=self.name) from exc
        if response.status_code >= 400:
            raise self._status_error(response.status_code, response.content, response, call)
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise UpstreamServerError(
                "upstream sent a malformed response", provider=self.name, status=200
            ) from None
        if not isinstance(body, dict):
            raise UpstreamServerError(
                "upstream sent a malformed response", provider=self.name, status=200
            )
        if body.get("error") and not body.get("choices"):
            raise self._error_in_body(body, call)
        message, finish, usage = decode_response(body)
        return chat_pb2.ChatResponse(message=message, finish_reason=finish, usage=usage)

    async def stream(
        self, request: chat_pb2.ChatRequest, call: UpstreamCall
    ) -> AsyncIterator[chat_pb2.StreamChatResponse]:
        """Streams frames then one ``end`` frame (``stream: true`` with usage requested)."""
        content = self._encode(request, call, stream=True)
        timeout = call.timeout or self._default_timeout
        client = self._client()
        http_request = client.build_request(
            "POST",
            self._url,
            content=content,
            headers=self._request_headers(call.api_key),
            # `timeout` bounds the wait for the first chunk below; after that only a stall
            # longer than the idle timeout ends the stream.
            timeout=httpx.Timeout(self._idle_timeout, connect=timeout, pool=timeout),
        )
        decoder = StreamDecoder(self.name, (call.api_key,))
        response: httpx.Response | None = None
        events: AsyncGenerator[tuple[bytes, bytes], None] | None = None
        try:
            first: list[chat_pb2.StreamChatResponse] = []
            try:
                async with asyncio.timeout(timeout):
                    response = await client.send(http_request, stream=True)
                    if response.status_code >= 400:
                        body = await _read_limited(response)
                        raise self._status_error(response.status_code, body, response, call)
                    if _is_json(response):
                        body = await _read_limited(response)
                        raise self._unexpected_json(body, call)
                    events = _events(response)
                    async for event, data in events:
                        first = decoder.decode(event, data)
                        if first or decoder.done:
                            break
            except (httpx.HTTPError, TimeoutError) as exc:
                raise self._stream_failure(exc, response) from exc
            for frame in first:
                yield frame
            if events is not None and not decoder.done:
                try:
                    async for event, data in events:
                        for frame in decoder.decode(event, data):
                            yield frame
                        if decoder.done:
                            break
                except (httpx.HTTPError, TimeoutError) as exc:
                    raise self._stream_failure(exc, response) from exc
            if not decoder.complete:
                raise UpstreamStreamError(
                    "upstream stream ended before completion", provider=self.name, status=200
                )
            yield decoder.end_frame()
        finally:
            if events is not None:
                await events.aclose()
            if response is not None:
                await response.aclose()

    async def aclose(self) -> None:
        """Nothing to release: the pooled HTTP client is shared (``close_http_client``)."""

    # --- errors ----------------------------------------------------------------------------

    def _status_error(
        self, status: int, body: bytes, response: httpx.Response, call: UpstreamCall
    ) -> UpstreamError:
        try:
            parsed = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            parsed = None  # an HTML error page from a proxy: its text is never forwarded
        message, code = error_fields(parsed)
        return error_for_status(
            status,
            message,
            provider=self.name,
            headers=response.headers,
            secrets=(call.api_key,),
            code=code,
        )

    def _error_in_body(self, body: dict[str, object], call: UpstreamCall) -> UpstreamError:
        # OpenRouter can answer 200 with an error object; its numeric code is an HTTP status.
        error = body.get("error")
        code = error.get("code") if isinstance(error, dict) else None
        status = code if isinstance(code, int) and 400 <= code <= 599 else 502
        message, short = error_fields(body)
        return error_for_status(
            status, message, provider=self.name, secrets=(call.api_key,), code=short
        )

    def _unexpected_json(self, body: bytes, call: UpstreamCall) -> UpstreamError:
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict) and parsed.get("error"):
            return self._error_in_body(parsed, call)
        return UpstreamStreamError(
            "upstream answered a stream request without a stream", provider=self.name, status=200
        )

    def _stream_failure(self, exc: BaseException, response: httpx.Response | None) -> UpstreamError:
        if response is None or response.status_code >= 400:
            return error_for_exception(exc, provider=self.name)
        if isinstance(error_for_exception(exc, provider=self.name), UpstreamTimeoutError):
            return UpstreamTimeoutError("upstream stream stalled", provider=self.name, status=200)
        return UpstreamStreamError("upstream stream broke off", provider=self.name, status=200)


async def _events(response: httpx.Response) -> AsyncGenerator[tuple[bytes, bytes], None]:
    parser = SSEParser()
    async for chunk in response.aiter_bytes():
        for event in parser.feed(chunk):
            yield event
    for event in parser.flush():
        yield event


async def _read_limited(response: httpx.Response) -> bytes:
    body = b""
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > MAX_ERROR_BODY:
            return b""
    return body


def _is_json(response: httpx.Response) -> bool:
    return response.headers.get("content-type", "").startswith("application/json")
