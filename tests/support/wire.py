"""Protobuf wire format by hand, for tests that must send bytes no message class would write
(nesting past the parser's limit, a field wrapped without being re-parsed)."""

from __future__ import annotations


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def length_delimited(number: int, payload: bytes) -> bytes:
    """Field ``number`` holding ``payload`` (a string, bytes or an embedded message)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload
