"""The upstream HTTP/1.1 client (``server.providers.http1`` under ``http_client``) against a
real loopback server that writes whatever bytes each test scripts."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import itertools
import ssl
import subprocess
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.providers import http1, http_client
from server.providers.http1 import (
    ConnectionClosed,
    MalformedResponse,
    TransportError,
    UnusableURL,
    encode_headers,
    parse_target,
)
from server.providers.http_client import UpstreamClient

HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-test"}

# What the scripted server does with one request: the raw bytes of the answer (sent in the
# given pieces), and whether to close the connection afterwards.
Answer = Callable[[bytes], "Reply"]


@dataclass
class Reply:
    pieces: list[bytes]
    close: bool = False
    pause: float = 0.0


@dataclass
class Server:
    answer: Answer
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    port: int = 0
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/chat/completions"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                reply = self.answer(request)
                for piece in reply.pieces:
                    writer.write(piece)
                    await writer.drain()
                    if reply.pause:
                        await asyncio.sleep(reply.pause)
                if reply.close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def serving(answer: Answer) -> AsyncIterator[Server]:
    server = Server(answer)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()
        for writer in server.writers:
            writer.close()


@pytest.fixture
async def client() -> AsyncIterator[UpstreamClient]:
    c = UpstreamClient()
    yield c
    await c.aclose()


def ok(body: bytes, *extra: bytes) -> Reply:
    head = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n" % len(body) + b"".join(extra) + b"\r\n"
    return Reply([head + body])


async def test_posts_the_request_and_reuses_the_connection(client: UpstreamClient) -> None:
    async with serving(lambda _: ok(b'{"a":1}', b"x-thing: 1\r\n")) as server:
        for _ in range(3):
            response = await client.post(server.url, content=b'{"q":1}', headers=HEADERS)
            assert response.status_code == 200 and response.content == b'{"a":1}'
            assert response.headers["X-Thing"] == "1"
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert f"host: 127.0.0.1:{server.port}\r\n".encode() in first
    assert b"authorization: Bearer sk-test\r\n" in first
    assert b"content-length: 7\r\n" in first and first.endswith(b'\r\n\r\n{"q":1}')


async def test_chunked_body_split_anywhere(client: UpstreamClient) -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n"
    )
    async with serving(lambda _: Reply([raw[i : i + 3] for i in range(0, len(raw), 3)])) as s:
        response = await client.post(s.url, content=b"{}", headers=HEADERS)
        assert response.content == b"hello, world"
        again = await client.post(s.url, content=b"{}", headers=HEADERS)
        assert again.content == b"hello, world"
    assert s.connections == 1


async def test_body_delimited_by_close_is_complete_and_not_reused(client: UpstreamClient) -> None:
    raw = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{"done":true}'
    async with serving(lambda _: Reply([raw], close=True)) as server:
        for _ in range(2):
            response = await client.post(server.url, content=b"{}", headers=HEADERS)
            assert response.content == b'{"done":true}'
    assert server.connections == 2


async def test_connection_close_header_is_honoured(client: UpstreamClient) -> None:
    async with serving(lambda _: ok(b"{}", b"connection: close\r\n")) as server:
        for _ in range(2):
            assert (await client.post(server.url, content=b"{}", headers=HEADERS)).content == b"{}"
    assert server.connections == 2


async def test_keep_alive_timeout_retires_idle_connections(client: UpstreamClient) -> None:
    # timeout=1 minus the 1 s margin: the connection is never reused.
    async with serving(lambda _: ok(b"{}", b"keep-alive: timeout=1, max=100\r\n")) as server:
        for _ in range(2):
            await client.post(server.url, content=b"{}", headers=HEADERS)
    assert server.connections == 2


async def test_an_idle_connection_the_server_closed_is_not_reused(client: UpstreamClient) -> None:
    async with serving(lambda _: ok(b"{}")) as server:
        await client.post(server.url, content=b"{}", headers=HEADERS)
        for writer in server.writers:
            writer.close()
        await asyncio.sleep(0.05)  # the close reaches the client's protocol
        assert (await client.post(server.url, content=b"{}", headers=HEADERS)).content == b"{}"
    assert server.connections == 2


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_compressed_bodies_are_decoded(client: UpstreamClient, encoding: str) -> None:
    body = b'{"text":"' + b"x" * 5000 + b'"}'
    packed = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
    header = f"content-encoding: {encoding}\r\n".encode()
    async with serving(lambda _: ok(packed, header)) as server:
        response = await client.post(server.url, content=b"{}", headers=HEADERS)
    assert response.content == body
    assert b"accept-encoding: identity\r\n" in server.requests[0]


async def test_cut_mid_body_is_connection_closed(client: UpstreamClient) -> None:
    raw = b'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"partial'
    async with serving(lambda _: Reply([raw], close=True)) as server:
        with pytest.raises(ConnectionClosed):
            await client.post(server.url, content=b"{}", headers=HEADERS)


async def test_closed_before_any_answer_is_connection_closed(client: UpstreamClient) -> None:
    async with serving(lambda _: Reply([], close=True)) as server:
        with pytest.raises(ConnectionClosed):
            await client.post(server.url, content=b"{}", headers=HEADERS)


async def test_garbage_is_a_malformed_response(client: UpstreamClient) -> None:
    async with serving(lambda _: Reply([b"SSH-2.0-OpenSSH_9.6\r\n\r\n"])) as server:
        with pytest.raises(MalformedResponse):
            await client.post(server.url, content=b"{}", headers=HEADERS)


async def test_interim_100_continue_is_skipped(client: UpstreamClient) -> None:
    async with serving(
        lambda _: Reply([b"HTTP/1.1 100 Continue\r\n\r\n", ok(b"{}").pieces[0]])
    ) as server:
        response = await client.post(server.url, content=b"{}", headers=HEADERS)
    assert response.status_code == 200 and response.content == b"{}"


async def test_stream_released_early_closes_the_connection(client: UpstreamClient) -> None:
    head = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    chunks = [b"%x\r\n%s\r\n" % (len(p), p) for p in (b"data: 1\n\n", b"data: 2\n\n")]
    async with serving(lambda _: Reply([head, *chunks], pause=0.05)) as server:
        response = await client.open(server.url, content=b"{}", headers=HEADERS)
        assert response.status == 200 and response.headers["content-type"] == "text/event-stream"
        reader = response.iter_chunks()
        assert await anext(reader) == b"data: 1\n\n"
        response.release()
        # The unfinished stream's connection is not handed to the next request.
        await client.open(server.url, content=b"{}", headers=HEADERS)
    assert server.connections == 2


async def test_a_slow_consumer_pauses_reading_and_gets_everything(
    client: UpstreamClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http1, "MAX_BUFFERED", 4096)
    body = bytes(range(256)) * 512  # 128 KiB
    async with serving(lambda _: Reply([ok(body).pieces[0]])) as server:
        response = await client.open(server.url, content=b"{}", headers=HEADERS)
        got = bytearray()
        async for chunk in response.iter_chunks():
            got += chunk
            await asyncio.sleep(0)
        response.release()
        assert bytes(got) == body
        # Read to its end: the connection goes back to the pool.
        await client.post(server.url, content=b"{}", headers=HEADERS)
    assert server.connections == 1


async def test_cancelled_request_does_not_poison_the_pool(client: UpstreamClient) -> None:
    async with serving(lambda _: Reply([ok(b"{}").pieces[0]], pause=0.0)) as server:
        slow = Reply([b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n", b"{}"], pause=0.3)
        server.answer = lambda _: slow
        task = asyncio.create_task(client.post(server.url, content=b"{}", headers=HEADERS))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        server.answer = lambda _: ok(b'{"fresh":1}')
        response = await client.post(server.url, content=b"{}", headers=HEADERS)
        assert response.content == b'{"fresh":1}'
    assert server.connections == 2


async def test_refused_port_is_an_oserror(client: UpstreamClient) -> None:
    async with serving(lambda _: ok(b"{}")) as server:
        url = server.url
    with pytest.raises(OSError):
        await client.post(url, content=b"{}", headers=HEADERS)


def test_targets() -> None:
    target = parse_target("https://api.example.com/v1/chat/completions?x=1")
    assert (target.scheme, target.host, target.port) == ("https", "api.example.com", 443)
    assert target.head == b"POST /v1/chat/completions?x=1 HTTP/1.1\r\nhost: api.example.com\r\n"
    assert parse_target("http://[::1]:8080/p").head.endswith(b"host: [::1]:8080\r\n")
    for bad in ("ftp://h/p", "http:///p", "http://u:pw@h/p", "http://h:99999/p", "http://h/a b"):
        with pytest.raises(UnusableURL):
            parse_target(bad)


def test_headers_cannot_be_split_and_framing_is_ours() -> None:
    assert encode_headers({"a": "1", "Content-Length": "5", "host": "x"}) == b"a: 1\r\n"
    for bad in ({"a": "1\r\nx-injected: 1"}, {"a\nb": "1"}):
        with pytest.raises(TransportError):
            encode_headers(bad)


_RESPONSE = (
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-a: b\r\n\r\n"
    b"4\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n"
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.integers(min_value=1, max_value=len(_RESPONSE) - 1), max_size=8))
def test_any_split_of_a_response_reads_the_same(cuts: list[int]) -> None:
    points = [0, *sorted(set(cuts)), len(_RESPONSE)]
    pieces = [_RESPONSE[a:b] for a, b in itertools.pairwise(points)]

    async def run() -> bytes:
        async with serving(lambda _: Reply(pieces)) as server:
            c = UpstreamClient()
            try:
                return (await c.post(server.url, content=b"{}", headers=HEADERS)).content
            finally:
                await c.aclose()

    assert asyncio.run(run()) == b"abcdefg"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(garbage=st.binary(max_size=200))
def test_arbitrary_bytes_end_in_a_response_or_a_transport_error(garbage: bytes) -> None:
    async def run() -> None:
        async with serving(lambda _: Reply([garbage], close=True)) as server:
            c = UpstreamClient()
            try:
                async with asyncio.timeout(5):
                    await c.post(server.url, content=b"{}", headers=HEADERS)
            except TransportError:
                pass
            finally:
                await c.aclose()

    asyncio.run(run())


@pytest.fixture
def tls_pair(tmp_path: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for ``localhost`` (Debian's openssl; .ci/run installs it)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"  # type: ignore[operator]
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


async def test_https_verifies_the_server_and_reuses_the_connection(
    tls_pair: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = tls_pair
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    server = Server(lambda _: ok(b'{"tls":true}'))
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=server_side)
    port = listener.sockets[0].getsockname()[1]
    url = f"https://localhost:{port}/v1/chat/completions"
    try:
        # The process's default context does not trust this certificate: refused.
        untrusting = UpstreamClient()
        with pytest.raises(ssl.SSLError):
            await untrusting.post(url, content=b"{}", headers=HEADERS)
        await untrusting.aclose()
        trusting = ssl.create_default_context(cafile=cert)
        monkeypatch.setattr(http_client, "_ssl_context", trusting)
        c = UpstreamClient()
        for _ in range(2):
            assert (await c.post(url, content=b"{}", headers=HEADERS)).content == b'{"tls":true}'
        await c.aclose()
    finally:
        listener.close()
        for writer in server.writers:
            writer.close()
    # The refused handshake never reached the handler; the two requests shared one connection.
    assert server.connections == 1
    assert f"host: localhost:{port}\r\n".encode() in server.requests[0]


async def test_connections_per_host_are_bounded_and_waiters_get_freed_ones(
    client: UpstreamClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http1, "MAX_CONNECTIONS_PER_HOST", 2)
    async with serving(lambda _: Reply([ok(b"{}").pieces[0]], pause=0.05)) as server:
        results = await asyncio.gather(
            *(client.post(server.url, content=b"{}", headers=HEADERS) for _ in range(8))
        )
        assert [r.content for r in results] == [b"{}"] * 8
        assert server.connections == 2
        # Connections that go away free their slots: new ones can be opened.
        for writer in server.writers:
            writer.close()
        await asyncio.sleep(0.05)
        results = await asyncio.gather(
            *(client.post(server.url, content=b"{}", headers=HEADERS) for _ in range(4))
        )
        assert [r.content for r in results] == [b"{}"] * 4
    assert server.connections == 4


async def test_failed_connects_free_their_slots(
    client: UpstreamClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http1, "MAX_CONNECTIONS_PER_HOST", 1)
    async with serving(lambda _: ok(b"{}")) as server:
        url = server.url
    for _ in range(3):  # each refused connect gives its slot back, or the third would hang
        with pytest.raises(OSError):
            async with asyncio.timeout(5):
                await client.post(url, content=b"{}", headers=HEADERS)


async def test_an_unsolicited_second_response_retires_the_connection(
    client: UpstreamClient,
) -> None:
    two = ok(b"{}").pieces[0] + ok(b'{"extra":1}').pieces[0]
    async with serving(lambda _: Reply([two])) as server:
        assert (await client.post(server.url, content=b"{}", headers=HEADERS)).content == b"{}"
        await asyncio.sleep(0.05)
        server.answer = lambda _: ok(b'{"next":1}')
        response = await client.post(server.url, content=b"{}", headers=HEADERS)
        assert response.content == b'{"next":1}'
    assert server.connections == 2
