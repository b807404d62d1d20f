"""The shim's HTTP protocol on a real uvicorn server and a raw loopback socket: a response with a
content-length leaves in one write, a streamed response's head with its first events or by the
end of its loop iteration, a head no body follows at once."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import uvicorn

from server.http_shim.protocol import _OneWriteResponse, guarded_protocol

BODY = b'{"ok": true}'
REQUEST = b"GET / HTTP/1.1\r\nhost: t\r\n\r\n"


def make_app(release: asyncio.Event) -> Any:
    """``/stream`` sends a chunked head, then its body once ``release`` is set; any other path
    a JSON body with a content-length, a pause after its head."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/stream":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await release.wait()
            await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": False})
            return
        headers = [(b"content-length", str(len(BODY)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        # A pause between head and body: a head written on its own would reach the client first.
        await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": BODY})

    return app


@pytest.fixture
def release() -> asyncio.Event:
    return asyncio.Event()


@pytest.fixture
async def port(release: asyncio.Event) -> AsyncIterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        make_app(release), http=guarded_protocol(10.0), log_level="error", lifespan="off"
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    async with asyncio.timeout(5):
        while not server.started:  # noqa: ASYNC110 - uvicorn signals readiness by this flag only
            await asyncio.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 5)


class _Server(uvicorn.Server):
    # pytest keeps its own SIGINT handling.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def test_a_response_with_a_content_length_arrives_in_one_piece(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(3):  # on one keep-alive connection: every request's response
            writer.write(REQUEST)
            first = await asyncio.wait_for(reader.read(65536), 5)
            assert first.startswith(b"HTTP/1.1 200 OK\r\n")
            assert first.endswith(b"\r\n\r\n" + BODY)
    finally:
        writer.close()


async def test_a_streamed_response_sends_its_head_before_its_body(
    port: int, release: asyncio.Event
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /stream HTTP/1.1\r\nhost: t\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert b"transfer-encoding: chunked" in head
        release.set()
        rest = await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 5)
        assert b"data: 1" in rest
    finally:
        writer.close()


async def test_a_head_request_gets_its_head(port: int) -> None:
    # uvicorn writes no body for HEAD: a head held for its body would never leave.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"HEAD / HTTP/1.1\r\nhost: t\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert f"content-length: {len(BODY)}".encode() in head
    finally:
        writer.close()


class _RecordingTransport:
    """What ``_OneWriteResponse`` hands to the socket, call by call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[bytes, ...]]] = []

    def write(self, data: bytes) -> None:
        self.calls.append(("write", (data,)))

    def writelines(self, data: Any) -> None:
        self.calls.append(("writelines", tuple(data)))

    def is_closing(self) -> bool:
        return False


def _cycle(chunked: bool | None, method: str = "GET") -> Any:
    return SimpleNamespace(
        response_started=True, chunked_encoding=chunked, scope={"method": method}
    )


async def test_a_streams_head_and_first_events_leave_in_one_write() -> None:
    transport = _RecordingTransport()
    out = _OneWriteResponse(transport, _cycle(chunked=True), asyncio.get_running_loop())  # type: ignore[arg-type]
    out.write(b"HEAD")
    out.write(b"EVENTS")
    await asyncio.sleep(0)
    out.write(b"MORE")
    assert transport.calls == [
        ("writelines", (b"HEAD", b"EVENTS")),
        ("write", (b"MORE",)),
    ]


async def test_a_streams_head_alone_leaves_by_the_end_of_its_loop_iteration() -> None:
    transport = _RecordingTransport()
    out = _OneWriteResponse(transport, _cycle(chunked=True), asyncio.get_running_loop())  # type: ignore[arg-type]
    out.write(b"HEAD")
    assert transport.calls == []
    await asyncio.sleep(0)
    assert transport.calls == [("write", (b"HEAD",))]
    out.write(b"EVENTS")
    assert transport.calls[-1] == ("write", (b"EVENTS",))


@pytest.mark.parametrize(("chunked", "method"), [(None, "GET"), (False, "HEAD"), (True, "HEAD")])
async def test_a_head_no_body_follows_leaves_at_once(chunked: bool | None, method: str) -> None:
    transport = _RecordingTransport()
    out = _OneWriteResponse(transport, _cycle(chunked, method), asyncio.get_running_loop())  # type: ignore[arg-type]
    out.write(b"HEAD")
    assert transport.calls == [("write", (b"HEAD",))]
