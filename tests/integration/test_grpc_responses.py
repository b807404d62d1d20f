"""Stored conversations and embeddings on gRPC: the same core features the HTTP shim serves.

``ChatRequest.store`` keeps a response (``response_id`` on the response, on the stream's start
and end frames), ``previous_response_id`` continues it, ``GetStoredResponse`` /
``DeleteStoredResponse`` read and delete it, scoped to the key; ``Embed`` embeds.
"""

from __future__ import annotations

import grpc
import pytest
from switchboard.v1 import chat_pb2, chat_pb2_grpc, types_pb2

from tests.support.server import RunningGateway


def user(text: str) -> types_pb2.Message:
    return types_pb2.Message(role=types_pb2.ROLE_USER, content=[types_pb2.ContentPart(text=text)])


def auth(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


async def test_store_continue_read_and_delete(
    demo_gateway: RunningGateway, demo_channel: grpc.aio.Channel
) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(demo_channel)
    key = auth(demo_gateway.create_key("grpc-store"))
    first = await stub.Chat(
        chat_pb2.ChatRequest(
            model="demo/echo", messages=[user("remember me")], store=True, instructions="terse"
        ),
        metadata=key,
    )
    assert first.response_id.startswith("resp_")
    frames = [
        f
        async for f in stub.StreamChat(
            chat_pb2.StreamChatRequest(
                chat=chat_pb2.ChatRequest(
                    model="demo/echo",
                    messages=[user("again")],
                    store=True,
                    previous_response_id=first.response_id,
                )
            ),
            metadata=key,
        )
    ]
    start, end = frames[0].start, frames[-1].end
    assert start.response_id and start.response_id == end.response_id != first.response_id
    got = await stub.GetStoredResponse(
        chat_pb2.GetStoredResponseRequest(id=end.response_id), metadata=key
    )
    stored = got.response
    texts = [m.content[0].text for m in stored.request.messages]
    assert texts == ["remember me", "Echo: remember me", "again"]
    assert stored.response.message.content[0].text == "Echo: again"
    assert stored.request.previous_response_id == first.response_id
    other = auth(demo_gateway.create_key("grpc-other"))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetStoredResponse(
            chat_pb2.GetStoredResponseRequest(id=end.response_id), metadata=other
        )
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    await stub.DeleteStoredResponse(
        chat_pb2.DeleteStoredResponseRequest(id=end.response_id), metadata=key
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Chat(
            chat_pb2.ChatRequest(
                model="demo/echo", messages=[user("x")], previous_response_id=end.response_id
            ),
            metadata=key,
        )
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert end.response_id in (info.value.details() or "")
    # Without `store` nothing is kept (the contract's default).
    plain = await stub.Chat(
        chat_pb2.ChatRequest(model="demo/echo", messages=[user("x")]), metadata=key
    )
    assert plain.response_id == ""


async def test_embed(demo_gateway: RunningGateway, demo_channel: grpc.aio.Channel) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(demo_channel)
    request = chat_pb2.EmbedRequest(model="demo/embed", dimensions=16)
    request.inputs.add(text="cat sat")
    request.inputs.add().tokens.ids.extend([1, 2, 3])
    reply = await stub.Embed(request, metadata=auth(demo_gateway.master_key))
    assert [len(e.values) for e in reply.embeddings] == [16, 16]
    assert reply.usage.input_tokens == 5 and reply.route.provider == "demo"
    bad = chat_pb2.EmbedRequest(model="demo/echo")
    bad.inputs.add(text="x")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Embed(bad, metadata=auth(demo_gateway.master_key))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
