"""Clients that try to tie the gateway up: oversized requests are refused before they are
decoded, and connections that send nothing, send headers a byte at a time or never finish a
body are closed; the gateway keeps answering everyone else meanwhile."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import grpc
import httpx
import orjson
import pytest
from switchboard.v1 import chat_pb2, chat_pb2_grpc, types_pb2

from tests.support.server import RunningGateway, start_gateway

CONFIG = {
    "server": {
        "header_timeout": 0.5,
        "body_timeout": 0.5,
        "idle_timeout": 1,
        "max_connections": 50,
    },
    "limits": {"max_messages": 100, "max_parts": 200, "max_tools": 8},
    "logging": {"requests": False},
}


@pytest.fixture(scope="module")
def gw() -> Iterator[RunningGateway]:
    gateway = start_gateway(config=CONFIG)
    try:
        yield gateway
    finally:
        gateway.terminate()
        gateway.close()


@pytest.fixture(scope="module")
def default_gw() -> Iterator[RunningGateway]:
    """A gateway with the default edge timeouts: the metrics test below sends thousands of
    well-behaved requests, which a loaded CI box must not fail on the 0.5 s header timeout
    that ``gw`` uses to test slow clients."""
    gateway = start_gateway()
    try:
        yield gateway
    finally:
        gateway.terminate()
        gateway.close()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _healthy(gw: RunningGateway) -> None:
    assert httpx.get(f"{gw.http_url}/healthz", timeout=5).status_code == 200


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes the connection within ``within`` seconds (whatever it sends
    first: a gRPC server opens with its HTTP/2 SETTINGS frame)."""
    sock.settimeout(within)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


@pytest.mark.parametrize(
    ("path", "extra"),
    [("/v1/chat/completions", {}), ("/v1/messages", {"max_tokens": 5})],
)
def test_too_many_messages_or_parts_are_413_before_decoding(
    gw: RunningGateway, path: str, extra: dict[str, object]
) -> None:
    headers = {"authorization": f"Bearer {gw.master_key}", "content-type": "application/json"}
    many = {"model": "demo/echo", "messages": [{}] * 200_000, **extra}
    r = httpx.post(gw.http_url + path, content=orjson.dumps(many), headers=headers, timeout=30)
    assert r.status_code == 413, r.text
    assert "200000 messages" in r.text
    parts = [{"role": "user", "content": [{"type": "text", "text": ""}] * 150}] * 2
    r = httpx.post(
        gw.http_url + path,
        content=orjson.dumps({"model": "demo/echo", "messages": parts, **extra}),
        headers=headers,
        timeout=30,
    )
    assert r.status_code == 413 and "300 content parts" in r.text
    _healthy(gw)


def test_grpc_requests_past_the_bounds_are_invalid_argument(gw: RunningGateway) -> None:
    message = types_pb2.Message(role=types_pb2.ROLE_USER, content=[types_pb2.ContentPart(text="x")])
    request = chat_pb2.ChatRequest(model="demo/echo", messages=[message] * 101)
    with grpc.insecure_channel(gw.grpc_target) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.Chat(request, metadata=(("authorization", f"Bearer {gw.master_key}"),), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "101 messages" in (info.value.details() or "")


def test_a_connection_that_sends_nothing_is_closed(gw: RunningGateway) -> None:
    with socket.create_connection(("127.0.0.1", _port(gw.http_url))) as sock:
        assert _closed_by_server(sock, within=5.0)
    _healthy(gw)


def test_headers_sent_a_byte_at_a_time_are_cut_off(gw: RunningGateway) -> None:
    with socket.create_connection(("127.0.0.1", _port(gw.http_url))) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        for _ in range(20):  # 2 s of trickling, far past the 0.5 s header deadline
            try:
                sock.sendall(b"X-Slow: a\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            if _closed_by_server(sock, within=0.1):
                break
        else:
            pytest.fail("the server kept a slowloris connection open")
    _healthy(gw)


def test_a_body_that_never_finishes_is_408(gw: RunningGateway) -> None:
    with socket.create_connection(("127.0.0.1", _port(gw.http_url))) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {gw.master_key}\r\n".encode()
            + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b'5\r\n{"mod\r\n'
        )
        sock.settimeout(5.0)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    _healthy(gw)


def test_a_grpc_connection_that_never_handshakes_is_closed(gw: RunningGateway) -> None:
    with socket.create_connection(("127.0.0.1", _port(gw.grpc_target))) as sock:
        assert _closed_by_server(sock, within=5.0)


async def test_the_connection_cap_answers_503_past_it(gw: RunningGateway) -> None:
    # Idle connections past the cap: the next request is refused with 503, not queued.
    socks = [socket.create_connection(("127.0.0.1", _port(gw.http_url))) for _ in range(60)]
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            statuses = [(await client.get(f"{gw.http_url}/healthz")).status_code for _ in range(3)]
        assert 503 in statuses
    finally:
        for s in socks:
            s.close()
    await asyncio.sleep(0.2)
    _healthy(gw)


def test_grpc_connections_past_the_cap_are_closed(gw: RunningGateway) -> None:
    # grpcio enforces the cap on whichever listener it runs (the gateway picks iomgr's).
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    socks = []
    try:
        for _ in range(60):
            sock = socket.create_connection(("127.0.0.1", _port(gw.grpc_target)))
            sock.sendall(preface)
            socks.append(sock)
        time.sleep(0.3)  # well inside idle_timeout (1 s), after which every idle one goes
        open_ = 0
        for sock in socks:
            sock.setblocking(False)
            try:
                open_ += 1 if sock.recv(65536) else 0  # the server's SETTINGS, or EOF
            except BlockingIOError:
                open_ += 1
            except OSError:
                pass
        assert 0 < open_ <= 50
    finally:
        for sock in socks:
            sock.close()
    _healthy(gw)


async def test_metrics_stay_small_whatever_model_names_callers_send(
    default_gw: RunningGateway,
) -> None:
    gw = default_gw
    headers = {"authorization": f"Bearer {gw.master_key}"}
    async with httpx.AsyncClient(base_url=gw.http_url, timeout=30) as client:
        sem = asyncio.Semaphore(32)

        async def one(i: int) -> int:
            body = {"model": f"demo/made-up-{i}", "messages": [{"role": "user", "content": "x"}]}
            async with sem:
                return (
                    await client.post("/v1/chat/completions", json=body, headers=headers)
                ).status_code

        statuses = await asyncio.gather(*(one(i) for i in range(5000)))
        assert set(statuses) == {404}
        scrape = await client.get("/metrics")
    assert scrape.status_code == 200
    assert "made-up" not in scrape.text
    assert len(scrape.content) < 64 * 1024, len(scrape.content)
