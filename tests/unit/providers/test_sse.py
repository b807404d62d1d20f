"""The shared SSE parser (server.providers.sse): the framing every streaming adapter relies on."""

from __future__ import annotations

import pytest

from server.providers.sse import SSEParser

# OpenAI-compatible: comment keep-alives, CRLF lines, multi-line data, `data:` without a space,
# ignored id/retry fields and the [DONE] sentinel.
SAMPLE = (
    b": keep-alive comment\n\n"
    b'data: {"a": 1}\n\n'
    b"event: message\r\ndata: line one\r\ndata: line two\r\n\r\n"
    b"data:no-space\n\n"
    b"id: 7\nretry: 100\n\n"
    b"data: [DONE]\n\n"
)
EXPECTED = [
    (b"", b'{"a": 1}'),
    (b"message", b"line one\nline two"),
    (b"", b"no-space"),
    (b"", b"[DONE]"),
]


def feed_all(parser: SSEParser, wire: bytes, size: int) -> list[tuple[bytes, bytes]]:
    events: list[tuple[bytes, bytes]] = []
    for start in range(0, len(wire), size):
        events.extend(parser.feed(wire[start : start + size]))
    return events


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, len(SAMPLE)])
def test_sse_parser_is_independent_of_chunk_boundaries(size: int) -> None:
    parser = SSEParser()
    events = feed_all(parser, SAMPLE, size)
    events.extend(parser.flush())
    assert events == EXPECTED


def test_sse_parser_flushes_a_last_event_without_blank_line() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: [DONE]") == []
    assert parser.flush() == [(b"", b"[DONE]")]
    assert parser.flush() == []


def test_sse_parser_handles_split_chunks_crlf_comments_and_multiline_data() -> None:
    """Anthropic's framing (``event:`` lines), fed one byte at a time."""
    p = SSEParser()
    wire = b'event: a\r\ndata: {"x":\r\ndata: 1}\r\n\r\n: keepalive\n\nevent: b\ndata: 2\n\n'
    assert feed_all(p, wire, 1) == [(b"a", b'{"x":\n1}'), (b"b", b"2")]
    assert p.flush() == []
    assert p.feed(b"data: partial") == []
    assert p.flush() == [(b"", b"partial")]


@pytest.mark.parametrize("size", [1, 2, 5, 1000])
def test_sse_parser_gemini_crlf_framing(size: int) -> None:
    wire = b'data: {"a":1}\r\n\r\ndata: {"b":2}\r\n\r\n'
    parser = SSEParser()
    assert feed_all(parser, wire, size) == [(b"", b'{"a":1}'), (b"", b'{"b":2}')]
    assert parser.flush() == []


def test_sse_parser_bare_cr_ends_lines_and_a_split_crlf_is_one_line_end() -> None:
    parser = SSEParser()
    assert parser.feed(b"event: e\rdata: 1\r") == []
    # The \n completes the \r\n begun in the last chunk: not a blank line of its own.
    assert parser.feed(b"\n") == []
    assert parser.feed(b"data: 2\r\r") == [(b"e", b"1\n2")]
    assert parser.feed(b"\ndata: 3\r\n\r\n") == [(b"", b"3")]


def test_sse_parser_keeps_padded_data_and_drops_only_one_space() -> None:
    parser = SSEParser()
    events = parser.feed(b'data:  {"type": "ping"}  \n\ndata:\n\n')
    assert events == [(b"", b' {"type": "ping"}  '), (b"", b"")]
