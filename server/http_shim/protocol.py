"""uvicorn's httptools protocol with a deadline on request headers (slowloris).

uvicorn times out idle keep-alive connections between requests (``timeout_keep_alive``) but
neither a new connection that never sends anything nor one that sends its headers a byte at a
time: each holds a socket and a parser forever. ``guarded_protocol`` closes a connection whose
request headers are not complete ``header_timeout`` seconds after it opened or after the request
began; the body's own deadline is ``HttpRequest.body``'s, the connection cap uvicorn's
``limit_concurrency``. The timer is one ``call_later`` per request.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _GuardedProtocol(HttpToolsProtocol):
    header_timeout = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None:
            cycle.transport = _OneWriteResponse(self.transport, cycle, self.loop)  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def guarded_protocol(header_timeout: float) -> Any:
    """The protocol class for ``uvicorn.Config(http=...)`` with this header deadline."""
    return type("GuardedHttpToolsProtocol", (_GuardedProtocol,), {"header_timeout": header_timeout})


class _OneWriteResponse:
    """The transport as one request's ``RequestResponseCycle`` sees it: the head of a response
    is held until its first body write, then both go in one ``writelines`` (one ``writev`` on
    uvloop), so the client gets them in one segment and wakes once. A response with a
    content-length waits for its body however long it takes; a chunked one (a stream) at most
    until the end of the loop iteration its head was written in (the shim's streams write the
    head and their first events together; anything else still sees its head go out at once).
    ``100 Continue`` passes through. The cycle writes nothing else; ``close`` and
    ``is_closing`` go to the transport."""

    __slots__ = ("_cycle", "_head", "_loop", "_transport")

    def __init__(
        self, transport: asyncio.Transport, cycle: Any, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._transport = transport
        # The protocol's loop: asking asyncio for the running one is a getpid call on 3.11.
        self._loop = loop
        # Dropped once the head is sent, so the cycle and this object do not keep each other.
        self._cycle: Any = cycle
        self._head: bytes | None = None

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.writelines((head, data))
            return
        cycle = self._cycle
        if cycle is not None and cycle.response_started:
            self._cycle = None
            chunked = cycle.chunked_encoding
            # None: no body follows (204, 304); a HEAD response's body is never written.
            if chunked is not None and cycle.scope["method"] != "HEAD":
                self._head = data
                if chunked:
                    self._loop.call_soon(self._send_head)
                return
        self._transport.write(data)

    def _send_head(self) -> None:
        # The end of the iteration a chunked head was written in: no body came with it.
        head = self._head
        if head is not None and not self._transport.is_closing():
            self._head = None
            self._transport.write(head)

    def close(self) -> None:
        # A response cut short (the app failed after its head) closes without its head: the
        # client sees the connection end, as it would have after a head without its body.
        self._head = None
        self._cycle = None
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()
