"""Keep-alive HTTP/1.1 connections to upstreams: an asyncio protocol over httptools' parser.

The gateway's upstream traffic is one shape: a POST of bytes it already encoded, with headers
it already built, to a handful of hosts, answered by a JSON body or a server-sent-event stream.
A general client's per-request machinery (aiohttp's request and response objects, header
normalisation, auto headers, cookie and redirect handling, its payload writer) cost about 0.15
ms of CPU per request on this box, a fifth of the gateway's whole per-request CPU
(``bench/upstream_client.py``). Here a request is one ``transport.write`` of a prebuilt head
plus the body, and the response is parsed by httptools (llhttp, the parser Node.js and
uvicorn use), so the only Python work is the callbacks below.

What it does: pooled keep-alive connections per (scheme, host, port), LIFO so the warmest is
reused, at most ``MAX_CONNECTIONS_PER_HOST`` open, never reused after ``Connection: close``,
an unfinished body, or an idle time past the server's ``Keep-Alive: timeout`` (else
``KEEPALIVE_SECONDS``); TLS through ``ssl`` with the
caller's context; chunked and content-length bodies, and bodies delimited by the connection's
close; gzip and deflate bodies decoded (none is asked for: ``accept-encoding: identity``);
reading paused while a stream's consumer is ``MAX_BUFFERED`` bytes behind. No proxies (the
gateway ignores proxy variables: they would silently reroute configured upstreams), no
redirects, no cookies, no HTTP/2.

Failures are ``TransportError`` (or the ``OSError`` a connect raised): callers
(``calls.py``) map them with ``upstream_errors.error_for_exception``.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from server.core.loops import running_loop

KEEPALIVE_SECONDS = 60.0
# Open connections per host; a request beyond them waits for one to come free (upstreams and
# this process's file descriptors are finite).
MAX_CONNECTIONS_PER_HOST = 1000
# Idle connections kept per host; more are closed when they come back.
MAX_IDLE_PER_HOST = 256
# A stream's unread bytes at which the socket stops being read until the consumer catches up.
MAX_BUFFERED = 1 << 20
# Seconds of margin under a server's advertised keep-alive timeout (its close and our reuse
# must not cross on the wire).
_KEEPALIVE_MARGIN = 1.0


class TransportError(Exception):
    """The exchange with the upstream failed after or without a connection (no status)."""


class ConnectionClosed(TransportError):
    """The upstream closed the connection before its response was complete."""


class MalformedResponse(TransportError):
    """The upstream's bytes are not an HTTP/1.x response."""


class UnusableURL(TransportError):
    """The upstream URL is not an http(s) URL this client can send to."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where one upstream URL sends: the pool it draws from and the request line's parts."""

    scheme: str
    host: str
    port: int
    # ``POST <path> HTTP/1.1`` plus ``Host``, as bytes, ready to prefix the headers.
    head: bytes

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)


def parse_target(url: str) -> Target:
    """The ``Target`` of ``url`` (``UnusableURL`` when it is not http(s) with a host)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnusableURL("the upstream URL does not parse") from None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in ("http", "https") or not host or parts.username or parts.password:
        raise UnusableURL("the upstream URL must be http(s)://host[:port]/path")
    if port is None:
        port = 443 if scheme == "https" else 80
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    default_port = port == (443 if scheme == "https" else 80)
    host_header = host if default_port else f"{host}:{port}"
    if ":" in host:  # an IPv6 literal: brackets in the Host header
        host_header = f"[{host}]" if default_port else f"[{host}]:{port}"
    if not (path + host_header).isascii() or any(c in path + host_header for c in "\r\n \t"):
        raise UnusableURL("the upstream URL has characters a request line cannot carry")
    head = f"POST {path} HTTP/1.1\r\nhost: {host_header}\r\n"
    return Target(scheme, host, port, head.encode("ascii"))


# Headers this client writes itself: a caller's copy would contradict the framing.
_OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})


def encode_headers(headers: Mapping[str, str]) -> bytes:
    """``headers`` as header lines; TransportError for a name or value that would split them."""
    lines = [f"{k}: {v}\r\n" for k, v in headers.items() if k.lower() not in _OWN_HEADERS]
    text = "".join(lines)
    if text.count("\n") != len(lines) or text.count("\r") != len(lines):
        raise TransportError("a request header contains a line break")
    return text.encode("latin-1")


class Response:
    """One response as it arrives: status and headers once in, then the body in chunks."""

    __slots__ = (
        "_buffered",
        "_chunks",
        "_connection",
        "_decoder",
        "_done",
        "_error",
        "_wake",
        "headers",
        "status",
    )

    def __init__(self, connection: Connection, status: int, headers: CIMultiDict[str]) -> None:
        self._connection: Connection | None = connection
        self.status = status
        self.headers = CIMultiDictProxy(headers)
        encoding = headers.get("content-encoding", "").strip().lower()
        self._decoder = (
            zlib.decompressobj(wbits=47)  # 32 + 15: gzip or zlib, detected from the header
            if encoding in ("gzip", "x-gzip", "deflate")
            else None
        )
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._done = False
        self._error: BaseException | None = None
        self._wake: asyncio.Future[None] | None = None

    # --- fed by the connection -----------------------------------------------------------

    def _feed(self, chunk: bytes) -> None:
        if self._decoder is not None:
            try:
                chunk = self._decoder.decompress(chunk)
            except zlib.error:
                self._fail(MalformedResponse("the upstream's compressed body does not decode"))
                return
            if not chunk:
                return
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered > MAX_BUFFERED and self._connection is not None:
            self._connection.pause()
        self._notify()

    def _finish(self) -> None:
        if self._decoder is not None:
            tail = self._decoder.flush()
            if tail:
                self._chunks.append(tail)
        self._done = True
        self._notify()

    def _fail(self, error: BaseException) -> None:
        if not self._done:
            self._error = error
            self._done = True
            self._notify()

    def _notify(self) -> None:
        wake = self._wake
        if wake is not None:
            self._wake = None
            if not wake.done():
                wake.set_result(None)

    # --- read by the caller --------------------------------------------------------------

    async def _next(self) -> bytes | None:
        while not self._chunks:
            if self._done:
                if self._error is not None:
                    raise self._error
                return None
            self._wake = running_loop().create_future()
            await self._wake
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._buffered <= MAX_BUFFERED // 2 and self._connection is not None:
            self._connection.resume()
        return chunk

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive (each read's worth joined); ends with the body."""
        while True:
            if len(self._chunks) > 1:
                chunk = b"".join(self._chunks)
                self._chunks.clear()
                self._buffered = 0
                if self._connection is not None:
                    self._connection.resume()
            else:
                got = await self._next()
                if got is None:
                    return
                chunk = got
            yield chunk

    async def read(self) -> bytes:
        """The whole (rest of the) body."""
        parts = [chunk async for chunk in self.iter_chunks()]
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def release(self) -> None:
        """Gives the connection back to its pool when the body was read to its end, else
        closes it (an unread rest would be read as the next response). Idempotent."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.done_with(self, complete=self._done and self._error is None)


class Connection(asyncio.Protocol):
    """One keep-alive connection carrying one exchange at a time."""

    def __init__(self, pool: Pool, loop: asyncio.AbstractEventLoop) -> None:
        self._pool = pool
        # The loop the connection lives on; kept, because on Python 3.11 every
        # ``get_running_loop`` is a ``getpid`` system call and exchange runs once per request.
        self._loop = loop
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self._names: list[tuple[str, str]] = []
        self._response: Response | None = None
        self._headers_waiter: asyncio.Future[Response] | None = None
        self._keep_alive = True
        self._until_close = False
        self._paused = False
        self.closed = False
        # Holds one of the pool's open slots from connection_made until closed or lost.
        self._counted = False
        self.idle_since = 0.0
        self.idle_limit = KEEPALIVE_SECONDS

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._counted = True

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._broken(MalformedResponse("the upstream switched protocols"))
        except httptools.HttpParserError:
            self._broken(MalformedResponse("the upstream's response is not valid HTTP/1.1"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._uncount()
        response = self._response
        if response is not None and self._until_close and not response._done:
            response._finish()  # a body delimited by the connection's close is complete
        else:
            self._broken(ConnectionClosed("the upstream closed the connection"))

    # --- httptools callbacks -------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._names.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        if self.closed:
            return
        status = self._parser.get_status_code()
        headers: CIMultiDict[str] = CIMultiDict(self._names)
        self._names = []
        if 100 <= status < 200:
            return  # an interim answer (100 Continue, 103 Early Hints): the real one follows
        if self._headers_waiter is None:
            # Bytes nobody asked for (a second response, or one to an exchange given up on):
            # the connection can no longer be trusted to frame the next answer.
            self._broken(MalformedResponse("the upstream sent a response nobody asked for"))
            return
        self._keep_alive = self._parser.should_keep_alive()
        self._until_close = (
            "content-length" not in headers and "transfer-encoding" not in headers
        ) and status not in (204, 304)
        alive = headers.get("keep-alive")
        if alive:
            self.idle_limit = _keepalive_timeout(alive, self.idle_limit)
        response = self._response = Response(self, status, headers)
        waiter, self._headers_waiter = self._headers_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    def on_body(self, body: bytes) -> None:
        if self._response is not None and not self.closed:
            self._response._feed(body)

    def on_message_complete(self) -> None:
        response, self._response = self._response, None
        if response is not None and not response._done and not self.closed:
            response._finish()

    # --- the exchange --------------------------------------------------------------------

    async def exchange(self, request: bytes) -> Response:
        """Writes ``request`` and returns the response once its headers are in."""
        assert self.transport is not None
        waiter = self._headers_waiter = self._loop.create_future()
        self._response = None
        self._until_close = False
        self.transport.write(request)
        return await waiter

    def _broken(self, error: TransportError) -> None:
        waiter, self._headers_waiter = self._headers_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        if self._response is not None:
            self._response._fail(error)
        self.close()

    def pause(self) -> None:
        if not self._paused and self.transport is not None and not self.closed:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()

    def done_with(self, response: Response, *, complete: bool) -> None:
        if self._response is response:
            self._response = None
        if complete and self._keep_alive and not self._until_close and not self.closed:
            self.resume()
            self._pool.put_back(self)
        else:
            self.close()

    def close(self) -> None:
        self.closed = True
        self._uncount()
        if self.transport is not None:
            self.transport.close()

    def _uncount(self) -> None:
        if self._counted:
            self._counted = False
            self._pool.gone()


def _keepalive_timeout(value: str, default: float) -> float:
    for part in value.split(","):
        name, _, number = part.strip().partition("=")
        if name.strip().lower() == "timeout":
            try:
                return max(0.0, min(default, float(number) - _KEEPALIVE_MARGIN))
            except ValueError:
                return default
    return default


class Pool:
    """The connections to one (scheme, host, port): how many are open, which are idle."""

    def __init__(self, target: Target, ssl_context: ssl.SSLContext | None) -> None:
        self._target = target
        self._ssl = ssl_context if target.scheme == "https" else None
        self._idle: list[Connection] = []
        self._open = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.closed = False

    def take_idle(self) -> Connection | None:
        """The most recently used idle connection that is still fit for reuse, if any."""
        idle = self._idle
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if not connection.closed and now - connection.idle_since < connection.idle_limit:
                return connection
            connection.close()
        return None

    async def connect(self) -> Connection:
        """A new connection, once fewer than ``MAX_CONNECTIONS_PER_HOST`` are open (or an idle
        one that came back meanwhile)."""
        loop = asyncio.get_running_loop()
        while self._open >= MAX_CONNECTIONS_PER_HOST:
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
            idle = self.take_idle()
            if idle is not None:
                return idle
        # The slot is the pool's until the connection is made, then the connection's.
        self._open += 1
        made: list[Connection] = []

        def protocol() -> Connection:
            made.append(Connection(self, loop))
            return made[-1]

        target = self._target
        try:
            _, connection = await loop.create_connection(
                protocol,
                target.host,
                target.port,
                ssl=self._ssl,
                server_hostname=target.host if self._ssl is not None else None,
            )
        except BaseException:
            if made and made[-1]._counted:
                made[-1].close()
            else:
                self.gone()
            raise
        return connection

    def put_back(self, connection: Connection) -> None:
        if self.closed or len(self._idle) >= MAX_IDLE_PER_HOST:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        self._idle.append(connection)
        self._wake()

    def gone(self) -> None:
        """One open connection fewer (closed, lost, or never made)."""
        self._open -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        self.closed = True
        for connection in self._idle:
            connection.close()
        self._idle.clear()
