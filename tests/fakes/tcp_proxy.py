"""A loopback TCP proxy that a test can cut and restore: a store outage without stopping the
machine's real PostgreSQL or Redis (other tests and helpers share them).

Usage (async)::

    async with TcpProxy("127.0.0.1", 6379) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0"   # point the store at the proxy
        proxy.cut()        # every open connection is reset; new ones are refused
        proxy.restore()    # connections are accepted and forwarded again

While cut, the listening socket stays bound (the port cannot be taken by anything else) but
new connections are closed as soon as they are accepted, which a client sees as a refused or
reset connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType


class TcpProxy:
    """Forwards connections on an ephemeral loopback port to ``host:port``."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._cut = False
        self._open: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._close_all()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    @property
    def is_cut(self) -> bool:
        return self._cut

    def cut(self) -> None:
        """Resets every forwarded connection and refuses new ones until ``restore``."""
        self._cut = True
        self._close_all()

    def restore(self) -> None:
        self._cut = False

    def _close_all(self) -> None:
        for writer in list(self._open):
            transport = writer.transport
            # abort(): an RST, not a polite FIN, like a crashed server or a dropped route.
            transport.abort()
        self._open.clear()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self._cut:
            client_w.transport.abort()
            return
        try:
            upstream_r, upstream_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            return
        self.connections += 1
        self._open.update((client_w, upstream_w))
        try:
            await asyncio.gather(self._pipe(client_r, upstream_w), self._pipe(upstream_r, client_w))
        finally:
            for w in (client_w, upstream_w):
                self._open.discard(w)
                w.transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                if writer.transport.is_closing():
                    return
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError):
            if not writer.transport.is_closing():
                writer.write_eof()
