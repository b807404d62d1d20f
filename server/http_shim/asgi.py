"""The few ASGI pieces the shim needs: one request's view, response helpers, disconnect watch.

Mirrors the ASGI 3 HTTP protocol (asgiref ``HTTPScope`` / ``http.request`` / ``http.response.*``
/ ``http.disconnect`` messages); no web framework is involved, because the shim's own per-request
work is what has to stay small (DESIGN.md "Speed").
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from server.core import deadlines
from server.core.errors import RequestTimeoutError, RequestTooLargeError
from server.core.ids import new_request_id

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

# A client's own x-request-id is kept when it is short and safe to echo in a header and a log.
_SAFE_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
# Bodies above this are refused before they are read into memory (base64 images are large).
MAX_BODY_BYTES = 64 * 1024 * 1024

JSON_CONTENT = (b"content-type", b"application/json")
# Seconds a request body may take to arrive once its headers are in (server.body_timeout).
BODY_TIMEOUT = 60.0
# Seconds before a request starts listening for the client going away (see DisconnectWatch).
WATCH_AFTER = 0.1


class ClientDisconnected(Exception):
    """The client went away before its request body was read."""


class HttpRequest:
    """One HTTP request as a handler sees it: scope, ASGI channels, headers and request id."""

    __slots__ = ("headers", "method", "path", "receive", "request_id", "scope", "send")

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        # ASGI header names are lower-case bytes; a repeated header keeps its last value.
        self.headers: dict[bytes, bytes] = dict(scope["headers"])
        given = self.headers.get(b"x-request-id")
        self.request_id = (
            given.decode("ascii")
            if given is not None and _SAFE_REQUEST_ID.match(given)
            else new_request_id()
        )

    def header(self, name: bytes) -> str | None:
        """A request header (lower-case name) as text, or None."""
        value = self.headers.get(name)
        return None if value is None else value.decode("latin-1")

    async def body(self, limit: int = MAX_BODY_BYTES, within: float = BODY_TIMEOUT) -> bytes:
        """The whole request body; RequestTooLargeError above ``limit`` bytes, and
        RequestTimeoutError (408) when it has not arrived ``within`` seconds after the headers
        (a chunked body that never finishes must not hold a connection and a task forever)."""
        length = self.headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise RequestTooLargeError(f"Request body too large: the limit is {limit} bytes.")
        try:
            with deadlines.within(within):
                return await self._read(limit)
        except TimeoutError:
            raise RequestTimeoutError(
                f"The request body did not arrive within {within:g} s."
            ) from None

    async def _read(self, limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected
            chunk: bytes = message.get("body", b"")
            if not chunks and not message.get("more_body", False) and len(chunk) <= limit:
                return chunk
            size += len(chunk)
            if size > limit:
                raise RequestTooLargeError(f"Request body too large: the limit is {limit} bytes.")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def base_headers(self) -> Headers:
        """Headers every response carries (the request id)."""
        return [(b"x-request-id", self.request_id.encode("ascii"))]

    async def respond(self, status: int, body: bytes, headers: Headers) -> None:
        """Sends a complete response with a content-length."""
        headers.append((b"content-length", str(len(body)).encode("ascii")))
        await self.send({"type": "http.response.start", "status": status, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})

    async def respond_json(self, status: int, body: bytes, headers: Headers | None = None) -> None:
        """Sends JSON bytes with the base headers plus ``headers``."""
        all_headers = self.base_headers()
        all_headers.append(JSON_CONTENT)
        if headers:
            all_headers.extend(headers)
        await self.respond(status, body, all_headers)


def header_value(text: str) -> bytes:
    """``text`` as a header value: printable ASCII only, so a model name cannot split headers."""
    if text.isascii() and text.isprintable():
        return text.encode("ascii")
    return "".join(c for c in text if " " <= c < "\x7f").encode("ascii")


class DisconnectWatch:
    """Cancels the handler's task when the client goes away (ASGI ``http.disconnect``).

    Starlette's ``StreamingResponse`` listens the same way; cancelling the task (not just a flag)
    is what makes the gateway's upstream call stop at once. The listening task starts only after
    ``delay`` seconds: a task per request costs tens of microseconds, and a request that is over
    sooner has no upstream call worth cancelling. Call ``stop()`` before sending the final
    message: after a complete response the server reports a disconnect too.
    """

    __slots__ = ("_dog", "_receive", "_start_at", "_stopped", "_target", "_watcher", "disconnected")

    def __init__(self, receive: Receive, delay: float = WATCH_AFTER) -> None:
        self._target, self._dog = deadlines.task_and_watchdog()
        self._receive = receive
        self._stopped = False
        self._watcher: asyncio.Task[None] | None = None
        self.disconnected = False
        # Started by the loop's watchdog tick (core.deadlines), not a timer of its own.
        self._start_at = time.monotonic() + delay
        self._dog.add(self)

    def due(self, now: float) -> bool:
        return now >= self._start_at

    def fire(self) -> None:
        if not self._stopped:
            self._watcher = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        if not self._stopped:
            self.disconnected = True
            self._target.cancel()

    def stop(self) -> None:
        """Stops watching; a disconnect after this no longer cancels the handler."""
        if not self._stopped:
            self._stopped = True
            self._dog.discard(self)
            if self._watcher is not None:
                self._watcher.cancel()

    def absorb(self) -> bool:
        """After a CancelledError: True (and the cancel undone) when it was this watch's own."""
        if not self.disconnected:
            return False
        self._target.uncancel()
        return self._target.cancelling() == 0
