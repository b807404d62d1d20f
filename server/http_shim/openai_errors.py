"""Gateway errors → OpenAI's error JSON (``{"error": {"message", "type", "param", "code"}}``).

Mirrors the error object of the OpenAI REST API (openai-openapi ``ErrorResponse``); the HTTP
status and `Retry-After` come from the error itself (``server.http_shim.edge.error_headers``).
Only ``GatewayError.message`` reaches the client: it is written for the caller and never holds
keys or raw upstream bodies.
"""

from __future__ import annotations

from typing import Any

import orjson

from server.core.errors import GatewayError
from server.core.secrets import scrub

# OpenAI's `type` per HTTP status; anything else >= 500 is a `server_error`.
_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    # OpenAI labels rate limits by what ran out; Switchboard's limits are mostly request-based.
    429: "requests",
}
# OpenAI's own `code` values where Switchboard has the same condition.
_CODE_BY_REASON = {
    "INTERNAL": "internal_error",
    "INVALID_API_KEY": "invalid_api_key",
    "MODEL_NOT_FOUND": "model_not_found",
    "RATE_LIMITED": "rate_limit_exceeded",
    "UPSTREAM_RATE_LIMITED": "rate_limit_exceeded",
    "BUDGET_EXCEEDED": "insufficient_quota",
}


def openai_error(
    status: int, message: str, *, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """One OpenAI error object (the value under ``"error"``)."""
    return {
        "message": message,
        "type": _TYPE_BY_STATUS.get(
            status, "server_error" if status >= 500 else "invalid_request_error"
        ),
        "param": param,
        "code": code,
    }


def error_object(exc: GatewayError) -> dict[str, Any]:
    """The OpenAI error object for a gateway error."""
    code = _CODE_BY_REASON.get(exc.reason, exc.reason.lower())
    param = scrub(exc.param) if exc.param else exc.param
    error = openai_error(exc.http_status, scrub(exc.message), code=code, param=param)
    if code == "insufficient_quota":
        error["type"] = "insufficient_quota"
    return error


def error_body(exc: GatewayError) -> bytes:
    """``{"error": {...}}`` as JSON bytes."""
    return orjson.dumps({"error": error_object(exc)})
