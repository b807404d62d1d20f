"""OpenAI-style error bodies → ``server.core.errors.Upstream*``.

OpenAI's shape is ``{"error": {"message", "type", "param", "code"}}``; compatible servers vary
(a bare string, FastAPI's ``detail``), and OpenRouter may answer 200 with an ``error`` object
whose numeric ``code`` is the HTTP status it stands for. Only the message and a short code are
ever read, so no raw upstream text can leak.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from server.core.errors import UpstreamError, UpstreamStreamError
from server.providers.calls import status_error_mapper
from server.providers.upstream_errors import error_for_status


def error_fields(body: object) -> tuple[str | None, str | None]:
    """The provider's own error message and short code from an error body, nothing else.

    OpenAI's shape is ``{"error": {"message", "type", "param", "code"}}``. OpenRouter adds a
    numeric code and ``metadata.raw`` (the upstream provider's raw text) and Groq adds
    ``failed_generation``: those are never read, so they cannot leak.
    """
    if not isinstance(body, dict):
        return None, None
    error = body.get("error")
    if isinstance(error, dict):
        message = error.get("message")
        code = error.get("code")
        if not isinstance(code, str):
            code = error.get("type")
        return (
            message if isinstance(message, str) else None,
            code if isinstance(code, str) else None,
        )
    if isinstance(error, str):
        return error, None
    message = body.get("message")
    if isinstance(message, str):
        return message, None
    detail = body.get("detail")  # FastAPI-based servers (vLLM, TGI)
    if isinstance(detail, str):
        return detail, None
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        msg = detail[0].get("msg")
        return (msg if isinstance(msg, str) else None), None
    return None, None


# The gateway error for a non-2xx Chat Completions response.
error_for_response = status_error_mapper(error_fields)


def error_in_body(
    body: dict[str, object], provider: str, secrets: Iterable[str] = ()
) -> UpstreamError:
    """The gateway error for an ``error`` object in a 200 answer (OpenRouter)."""
    error = body.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    status = code if isinstance(code, int) and 400 <= code <= 599 else 502
    message, short = error_fields(body)
    return error_for_status(status, message, provider=provider, secrets=secrets, code=short)


def error_for_json_stream(body: bytes, provider: str, secrets: Iterable[str] = ()) -> UpstreamError:
    """The gateway error for a stream request answered with a JSON body instead of a stream."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("error"):
        return error_in_body(parsed, provider, secrets)
    return UpstreamStreamError(
        "upstream answered a stream request without a stream", provider=provider, status=200
    )
