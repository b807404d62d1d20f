"""``SwitchboardClient``: an async client on the generated ``switchboard.v1`` stubs."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

import grpc
import grpc.aio
from switchboard.v1 import chat_pb2, chat_pb2_grpc, types_pb2

from switchboard_client.converse import ConverseResult, ToolFunction, run_tools
from switchboard_client.errors import REQUEST_ID_KEY, SwitchboardError

MessageLike = types_pb2.Message | str


def message(role: str, text: str) -> types_pb2.Message:
    """A text message; ``role`` is system, developer, user, assistant or tool."""
    return types_pb2.Message(
        role=f"ROLE_{role.upper()}",
        content=[types_pb2.ContentPart(text=text)],
    )


def user(text: str) -> types_pb2.Message:
    """A user message (the OpenAI ``{"role": "user", "content": text}``)."""
    return message("user", text)


def system(text: str) -> types_pb2.Message:
    """A system message."""
    return message("system", text)


def tool_result(tool_call_id: str, content: str, *, is_error: bool = False) -> types_pb2.Message:
    """A tool message answering one tool call."""
    result = types_pb2.ToolResult(tool_call_id=tool_call_id, content=content, is_error=is_error)
    return types_pb2.Message(
        role=types_pb2.ROLE_TOOL, content=[types_pb2.ContentPart(tool_result=result)]
    )


class SwitchboardClient:
    """Chat, streaming chat, the Converse tool loop and model listing over one grpc.aio channel.

    Failed calls raise ``SwitchboardError`` (code, reason, retry_after from the status details).
    Use as ``async with SwitchboardClient("127.0.0.1:50051", key) as client: ...``.
    """

    def __init__(
        self,
        target: str,
        api_key: str,
        *,
        secure: bool = False,
        timeout: float | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.target = target
        self.timeout = timeout
        self._auth = ("authorization", f"Bearer {api_key}")
        self._channel = (
            grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(), options=options)
            if secure
            else grpc.aio.insecure_channel(target, options=options)
        )
        self._chat = chat_pb2_grpc.ChatServiceStub(self._channel)

    def __repr__(self) -> str:
        return f"SwitchboardClient({self.target!r})"

    async def __aenter__(self) -> SwitchboardClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes the channel (in-flight calls are cancelled)."""
        await self._channel.close(None)

    def _metadata(self, request_id: str | None) -> tuple[tuple[str, str], ...]:
        if request_id:
            return (self._auth, (REQUEST_ID_KEY, request_id))
        return (self._auth,)

    async def chat(
        self,
        request: chat_pb2.ChatRequest | None = None,
        /,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the call's gRPC deadline
        request_id: str | None = None,
        **fields: Any,
    ) -> chat_pb2.ChatResponse:
        """One completion: pass a ``ChatRequest`` or its fields (``messages`` may be strings)."""
        try:
            response: chat_pb2.ChatResponse = await self._chat.Chat(
                _request(request, fields),
                metadata=self._metadata(request_id),
                timeout=timeout if timeout is not None else self.timeout,
            )
        except grpc.aio.AioRpcError as exc:
            raise SwitchboardError.from_rpc_error(exc) from None
        return response

    async def stream_chat(
        self,
        request: chat_pb2.ChatRequest | None = None,
        /,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the call's gRPC deadline
        request_id: str | None = None,
        **fields: Any,
    ) -> AsyncGenerator[chat_pb2.StreamChatResponse, None]:
        """Frames of one completion: start, deltas, end. Leaving the loop cancels the call."""
        call = self._chat.StreamChat(
            chat_pb2.StreamChatRequest(chat=_request(request, fields)),
            metadata=self._metadata(request_id),
            timeout=timeout if timeout is not None else self.timeout,
        )
        try:
            async for frame in call:
                yield frame
        except grpc.aio.AioRpcError as exc:
            raise SwitchboardError.from_rpc_error(exc) from None
        finally:
            call.cancel()

    def converse(
        self,
        request: chat_pb2.ChatRequest | None = None,
        /,
        *,
        tools: Mapping[str, ToolFunction],
        timeout: float | None = None,
        request_id: str | None = None,
        **fields: Any,
    ) -> AsyncGenerator[chat_pb2.ConverseResponse, None]:
        """The tool-call loop over one Converse stream: yields every server event (each turn's
        frames, then ``tool_calls_required`` when the model asks for tools) and, when the
        caller asks for the next event, runs the requested ``tools`` locally (concurrently;
        a failure becomes an ``is_error`` result) and sends their results back. Ends after
        the first turn that does not ask for tools; leaving the loop cancels the call.
        ``timeout`` bounds the whole conversation, tool execution included."""
        return self._converse(request, fields, tools, timeout, request_id, None)

    async def converse_result(
        self,
        request: chat_pb2.ChatRequest | None = None,
        /,
        *,
        tools: Mapping[str, ToolFunction],
        timeout: float | None = None,  # noqa: ASYNC109 - the call's gRPC deadline
        request_id: str | None = None,
        **fields: Any,
    ) -> ConverseResult:
        """``converse`` run to the end: the final text, every turn's usage and cost (and their
        sums), and each tool call with the result sent back."""
        result = ConverseResult()
        events = self._converse(request, fields, tools, timeout, request_id, result)
        async for event in events:
            result.add(event)
        return result

    async def _converse(
        self,
        request: chat_pb2.ChatRequest | None,
        fields: dict[str, Any],
        tools: Mapping[str, ToolFunction],
        timeout: float | None,  # noqa: ASYNC109 - the call's gRPC deadline
        request_id: str | None,
        record: ConverseResult | None,
    ) -> AsyncGenerator[chat_pb2.ConverseResponse, None]:
        start = chat_pb2.ConverseRequest(start=_request(request, fields))
        call = self._chat.Converse(
            metadata=self._metadata(request_id),
            timeout=timeout if timeout is not None else self.timeout,
        )
        try:
            await call.write(start)
            async for event in call:
                yield event
                if event.WhichOneof("event") == "tool_calls_required":
                    calls = event.tool_calls_required.tool_calls
                    results = await run_tools(tools, calls)
                    if record is not None:
                        record.tool_calls.extend(zip(calls, results, strict=True))
                    answer = chat_pb2.ConverseRequest()
                    answer.tool_results.results.extend(results)
                    await call.write(answer)
        except grpc.aio.AioRpcError as exc:
            raise SwitchboardError.from_rpc_error(exc) from None
        finally:
            call.cancel()

    async def list_models(
        self,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the call's gRPC deadline
    ) -> list[chat_pb2.Model]:
        """Every model and route the gateway serves."""
        try:
            response = await self._chat.ListModels(
                chat_pb2.ListModelsRequest(),
                metadata=self._metadata(None),
                timeout=timeout if timeout is not None else self.timeout,
            )
        except grpc.aio.AioRpcError as exc:
            raise SwitchboardError.from_rpc_error(exc) from None
        return list(response.models)


def _request(request: chat_pb2.ChatRequest | None, fields: dict[str, Any]) -> chat_pb2.ChatRequest:
    if request is not None:
        if fields:
            raise TypeError("pass either a ChatRequest or its fields, not both")
        return request
    messages = [user(m) if isinstance(m, str) else m for m in fields.pop("messages", ())]
    return chat_pb2.ChatRequest(messages=messages, **fields)
