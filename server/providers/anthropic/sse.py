"""An incremental Server-Sent Events parser over raw bytes (WHATWG EventSource parsing rules).

Shared by the Anthropic (``event:`` + ``data:``, ``\\n\\n``) and Gemini (``data:`` only,
``\\r\\n\\r\\n``) adapters. Works on bytes so each event's data goes straight to ``orjson``.
"""

from __future__ import annotations


class SSEParser:
    """Feed it chunks as they arrive; it returns each complete event as ``(event, data)``."""

    __slots__ = ("_buf", "_data", "_event")

    def __init__(self) -> None:
        self._buf = b""
        self._event = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[tuple[str, bytes]]:
        """Complete events in ``chunk`` (plus what earlier chunks left unfinished)."""
        buf = self._buf + chunk if self._buf else chunk
        # A chunk ending in \r may be half of \r\n: keep it until the next chunk says.
        held = b""
        if buf.endswith(b"\r"):
            buf, held = buf[:-1], b"\r"
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = buf.split(b"\n")
        self._buf = lines.pop() + held
        events: list[tuple[str, bytes]] = []
        for line in lines:
            if not line:
                if self._data:
                    events.append((self._event.decode(), b"\n".join(self._data)))
                self._event = b""
                self._data = []
                continue
            if line[0] == 0x3A:  # ":" starts a comment (keep-alive)
                continue
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                self._data.append(value)
            elif name == b"event":
                self._event = value
        return events

    @property
    def pending(self) -> bool:
        """True when an event was started but not finished by a blank line."""
        return bool(self._data or self._buf.strip())
