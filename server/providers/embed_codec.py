"""Embedding vectors on the wire, for every adapter and the ``/v1/embeddings`` dialect.

Vectors travel as JSON arrays of numbers, or (OpenAI ``encoding_format: base64``) as the
base64 of little-endian float32 values. The contract keeps doubles, so that numbers read from
JSON come back out exactly as they were; base64 is float32, as OpenAI sends it.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Sequence

from server.core.errors import UpstreamServerError


def vector_base64(values: Sequence[float]) -> str:
    """float32 little-endian bytes, base64 (what OpenAI's ``encoding_format: base64`` is)."""
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")


def vector_from_wire(value: object, provider: str) -> list[float]:
    """A vector from a JSON array of numbers or a base64 float32 string; a malformed one is an
    upstream fault (``UpstreamServerError``)."""
    if isinstance(value, list) and all(
        isinstance(x, int | float) and not isinstance(x, bool) for x in value
    ):
        return [float(x) for x in value]
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raw = b"\x00"
        if len(raw) % 4 == 0:
            return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    raise UpstreamServerError("upstream sent a malformed embedding", provider=provider, status=200)
