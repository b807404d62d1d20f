"""The gRPC edge in process: an unexpected exception becomes a generic INTERNAL, logged with
the request id, and never leaks its text to the caller."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
import pytest_asyncio
from switchboard.v1 import chat_pb2, chat_pb2_grpc, types_pb2
from switchboard_client import SwitchboardError

from server.app import Components, build_components
from server.config import Config
from server.grpc_api.chat import ChatServicer
from server.grpc_api.interceptors import AuthInterceptor
from server.grpc_api.status import INTERNAL_MESSAGE

MASTER = "sb-edge-master-key-0123456789"


class _Broken(ChatServicer):
    async def Chat(
        self, request: chat_pb2.ChatRequest, context: grpc.aio.ServicerContext
    ) -> chat_pb2.ChatResponse:
        raise RuntimeError("database password is hunter2")

    async def StreamChat(
        self, request: chat_pb2.StreamChatRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[chat_pb2.StreamChatResponse]:
        yield chat_pb2.StreamChatResponse(text=chat_pb2.TextDelta(text="partial"))
        raise KeyError("hunter2")


@pytest_asyncio.fixture
async def target(tmp_path: Path) -> AsyncIterator[str]:
    components: Components = build_components(
        Config(), {"SWITCHBOARD_MASTER_KEY": MASTER}, tmp_path
    )
    server = grpc.aio.server(interceptors=[AuthInterceptor(components.gateway)])
    chat_pb2_grpc.add_ChatServiceServicer_to_server(_Broken(components.gateway), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)
        await components.stores.aclose()


def _request() -> chat_pb2.ChatRequest:
    return chat_pb2.ChatRequest(
        model="demo/echo",
        messages=[
            types_pb2.Message(role=types_pb2.ROLE_USER, content=[types_pb2.ContentPart(text="x")])
        ],
    )


async def test_unexpected_exception_is_generic_internal(
    target: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="server.grpc_api.interceptors")
    async with grpc.aio.insecure_channel(target) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        metadata = (("authorization", f"Bearer {MASTER}"), ("x-request-id", "edge-1"))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Chat(_request(), metadata=metadata)
        err = SwitchboardError.from_rpc_error(info.value)
        assert err.code == grpc.StatusCode.INTERNAL and err.message == INTERNAL_MESSAGE
        assert err.reason == "INTERNAL" and err.request_id == "edge-1"
        assert "hunter2" not in repr(info.value)

        stream = stub.StreamChat(chat_pb2.StreamChatRequest(chat=_request()), metadata=metadata)
        frames = []
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for frame in stream:
                frames.append(frame)
        assert [f.text.text for f in frames] == ["partial"]
        assert info.value.code() == grpc.StatusCode.INTERNAL
        assert "hunter2" not in repr(info.value)

    logged = [r for r in caplog.records if "request_id=edge-1" in r.getMessage()]
    assert len(logged) == 2 and all(r.exc_info for r in logged)
