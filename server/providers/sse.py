"""The one incremental ``text/event-stream`` parser every streaming adapter uses.

WHATWG server-sent events parsing (openai-python ``SSEDecoder``, the EventSource spec) over raw
bytes, so each event's data goes straight to ``orjson``. What the adapters rely on: comment
lines (``: OPENROUTER PROCESSING`` keep-alives) are skipped; ``\\n``, ``\\r\\n`` (Gemini frames
events with ``\\r\\n\\r\\n``) and bare ``\\r`` all end a line, also when a chunk boundary splits a
``\\r\\n``; ``event:`` names are kept (Anthropic; OpenRouter's ``error``); multi-line ``data:``
is joined with ``\\n``; ``flush()`` at end of body still counts an event that lacked its closing
blank line, since some servers end with ``data: [DONE]`` and no blank line.
"""

from __future__ import annotations


class SSEParser:
    """Feed it chunks as they arrive; it returns each complete event as ``(event, data)``."""

    __slots__ = ("_buf", "_data", "_event", "_skip_lf")

    def __init__(self) -> None:
        self._buf = b""
        self._event = b""
        self._data: list[bytes] = []
        self._skip_lf = False

    def feed(self, chunk: bytes) -> list[tuple[bytes, bytes]]:
        """Events completed by ``chunk`` (plus what earlier chunks left unfinished)."""
        if self._skip_lf:
            # The last chunk ended in \r, which may have been the first half of \r\n.
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if self._buf:
            chunk = self._buf + chunk
        if not chunk:
            return []
        # bytes.splitlines() ends lines at exactly \n, \r\n and \r, as the spec does, in one pass.
        lines = chunk.splitlines()
        last = chunk[-1]
        if last == 0x0A:
            self._buf = b""
        elif last == 0x0D:
            self._buf = b""
            self._skip_lf = True
        else:
            self._buf = lines.pop()
        return self._lines(lines) if lines else []

    def flush(self) -> list[tuple[bytes, bytes]]:
        """At end of body: the unfinished last line and event, as if a blank line followed."""
        tail = self._buf
        self._buf = b""
        self._skip_lf = False
        return self._lines([tail, b""] if tail else [b""])

    def _lines(self, lines: list[bytes]) -> list[tuple[bytes, bytes]]:
        events: list[tuple[bytes, bytes]] = []
        data = self._data
        for line in lines:
            # Nearly every line is `data: <json>`: take it before the general field parsing.
            if line[:6] == b"data: ":
                data.append(line[6:])
                continue
            if not line:
                if data:
                    events.append((self._event, data[0] if len(data) == 1 else b"\n".join(data)))
                    data = self._data = []
                self._event = b""
                continue
            if line[0] == 0x3A:  # ":" starts a comment (keep-alive)
                continue
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                data.append(value)
            elif name == b"event":
                self._event = value
        return events
