"""``switchboard.v1.ChatService`` over the core ``Gateway`` (the gRPC transport edge)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

import grpc.aio
from switchboard.v1 import chat_pb2, chat_pb2_grpc

from server.core.context import CallContext
from server.core.converse import converse, start_request
from server.core.errors import InvalidRequestError
from server.core.service import Gateway
from server.grpc_api.interceptors import (
    current_principal,
    current_request_id,
    current_token,
    current_traceparent,
)


class ChatServicer(chat_pb2_grpc.ChatServiceServicer):
    """Chat, StreamChat, Converse (the tool-call loop), ListModels, Embed and stored responses
    over the core Gateway."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    def _call_context(self, context: grpc.aio.ServicerContext) -> CallContext:
        # The client's gRPC deadline becomes the core's; None means the configured default.
        return self._gateway.new_context(
            current_principal(),
            transport="grpc",
            request_id=current_request_id(),
            timeout=context.time_remaining(),
            traceparent=current_traceparent(),
        )

    async def Chat(
        self, request: chat_pb2.ChatRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.ChatResponse:
        return await self._gateway.chat(request, self._call_context(context))

    async def StreamChat(
        self, request: chat_pb2.StreamChatRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[chat_pb2.StreamChatResponse]:
        ctx = self._call_context(context)
        try:
            frames = self._gateway.stream_chat(request.chat, ctx)
            async for frame in frames:
                yield frame
        except InvalidRequestError as exc:
            raise exc.under("chat") from None

    async def Converse(
        self,
        request_iterator: AsyncIterator[chat_pb2.ConverseRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[chat_pb2.ConverseResponse]:
        # The loop itself is server.core.converse; this is only the stream plumbing.
        events = aiter(request_iterator)
        first = start_request(await anext(events, None))
        remaining = context.time_remaining()
        ctx = CallContext(
            request_id=current_request_id(),
            principal=current_principal(),
            # The client's deadline bounds the whole conversation; None: each turn gets the
            # configured default (server.core.converse).
            deadline=None if remaining is None else time.monotonic() + remaining,
            transport="grpc",
        )
        token = current_token()
        loop = converse(
            self._gateway,
            first,
            ctx,
            events,
            reauthenticate=lambda: self._gateway.authenticate(token),
        )
        async with contextlib.aclosing(loop):
            async for event in loop:
                yield event

    async def ListModels(
        self, request: chat_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.ListModelsResponse:
        return await self._gateway.list_models(self._call_context(context))

    async def Embed(
        self, request: chat_pb2.EmbedRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.EmbedResponse:
        return await self._gateway.embed(request, self._call_context(context))

    async def GetStoredResponse(
        self, request: chat_pb2.GetStoredResponseRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.GetStoredResponseResponse:
        stored = await self._gateway.get_response(self._call_context(context), request.id)
        return chat_pb2.GetStoredResponseResponse(response=stored)

    async def DeleteStoredResponse(
        self, request: chat_pb2.DeleteStoredResponseRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.DeleteStoredResponseResponse:
        await self._gateway.delete_response(self._call_context(context), request.id)
        return chat_pb2.DeleteStoredResponseResponse(id=request.id)
