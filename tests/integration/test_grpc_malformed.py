"""Bytes that are not a valid protobuf message, on every ChatService RPC of a real gateway:
INVALID_ARGUMENT with a plain message (UNAUTHENTICATED without a key), never UNKNOWN/INTERNAL,
and no traceback in the server's log."""

from __future__ import annotations

import asyncio
import contextlib
from typing import NamedTuple

import grpc
import grpc.aio
import pytest
from switchboard.v1 import chat_pb2

from tests.support.server import RunningGateway
from tests.support.wire import length_delimited, varint

METHODS = {
    "Chat": "unary_unary",
    "StreamChat": "unary_stream",
    "Converse": "stream_stream",
}


def deep_struct_request(depth: int) -> bytes:
    """A ChatRequest whose passthrough Struct nests ``depth`` levels (past protobuf's limit)."""
    struct = b""
    for _ in range(depth):
        value = length_delimited(5, struct)  # Value.struct_value
        struct = length_delimited(
            1, length_delimited(1, b"a") + length_delimited(2, value)
        )  # Struct.fields entry
    return length_delimited(1, b"demo/echo") + length_delimited(16, struct)


def bad_utf8_request() -> bytes:
    return length_delimited(1, b"demo/\xff\xfe echo")


def truncated_request() -> bytes:
    valid = chat_pb2.ChatRequest(model="demo/echo").SerializeToString()
    return valid + varint(2 << 3 | 2) + varint(50) + b"short"


BODIES = {
    "random": bytes(range(7, 250, 3)),
    "truncated": truncated_request(),
    "bad-utf8": bad_utf8_request(),
    "deep-struct": deep_struct_request(300),
}


def _wrap(method: str, body: bytes) -> bytes:
    # StreamChat takes the ChatRequest under field 1 (`chat`), Converse under `start`.
    return body if method == "Chat" else length_delimited(1, body)


class _Status(NamedTuple):
    code: grpc.StatusCode
    text: str


async def _call(channel: grpc.aio.Channel, method: str, body: bytes, key: str | None) -> _Status:
    kind = METHODS[method]
    path = f"/switchboard.v1.ChatService/{method}"
    metadata = (("authorization", f"Bearer {key}"),) if key else ()
    identity = (lambda b: b), (lambda b: b)
    if kind == "stream_stream":
        call = channel.stream_stream(path, *identity)(metadata=metadata, timeout=10)
        # Without a key the server refuses the call before reading anything: writing would
        # only race its refusal (the client may then report its own failed write).
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
            if key:
                await call.write(body)
            await call.done_writing()
        with contextlib.suppress(grpc.aio.AioRpcError):
            async for _ in call:
                pass
        return _Status(await call.code(), await call.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        if kind == "unary_unary":
            await channel.unary_unary(path, *identity)(body, metadata=metadata, timeout=10)
        else:
            async for _ in channel.unary_stream(path, *identity)(
                body, metadata=metadata, timeout=10
            ):
                pass
    return _Status(info.value.code(), info.value.details() or "")


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("shape", sorted(BODIES))
async def test_malformed_requests_are_invalid_argument(
    demo_gateway: RunningGateway, demo_channel: grpc.aio.Channel, method: str, shape: str
) -> None:
    key = demo_gateway.master_key
    err = await _call(demo_channel, method, _wrap(method, BODIES[shape]), key)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT, err
    assert "not a valid protobuf message" in err.text
    assert "Error" not in err.text and "Exception" not in err.text
    # Without a key the answer is about the key, whatever the body.
    unauthenticated = await _call(demo_channel, method, _wrap(method, BODIES[shape]), None)
    assert unauthenticated.code == grpc.StatusCode.UNAUTHENTICATED


async def test_no_traceback_is_logged_for_malformed_requests(
    demo_gateway: RunningGateway, demo_channel: grpc.aio.Channel
) -> None:
    for method in METHODS:
        await _call(demo_channel, method, _wrap(method, BODIES["random"]), demo_gateway.master_key)
    log = demo_gateway.output()
    assert "Traceback" not in log and "Exception deserializing" not in log
