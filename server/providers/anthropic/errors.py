"""Anthropic error bodies and in-stream ``error`` events → ``server.core.errors.Upstream*``.

Anthropic's error body is ``{"type": "error", "error": {"type", "message"}, "request_id"}``.
HTTP statuses go through the shared ``error_for_status`` (429 with ``retry-after`` and 529
overloaded are retryable; 400 keeps the provider's message; 401/403 never show a key).

An ``error`` event inside a 200 stream is mapped by its error type where the type changes what
the caller should do: ``rate_limit_error`` (429), ``invalid_request_error`` (400, not worth a
retry), auth and not-found errors, and ``overloaded_error`` (529, like the HTTP status). Every
other type (``api_error``, ``timeout_error``, unknown ones) means the stream broke on the
server's side: ``UpstreamStreamError``, retryable before the first chunk.
"""

from __future__ import annotations

from collections.abc import Iterable

from server.core.errors import (
    UpstreamAuthError,
    UpstreamBadRequestError,
    UpstreamError,
    UpstreamNotFoundError,
    UpstreamRateLimitedError,
    UpstreamServerError,
    UpstreamStreamError,
)
from server.providers.calls import status_error_mapper
from server.providers.upstream_errors import safe_message

# Anthropic error type → (error class, the HTTP status that type comes with).
_BY_TYPE: dict[str, tuple[type[UpstreamError], int]] = {
    "invalid_request_error": (UpstreamBadRequestError, 400),
    "request_too_large": (UpstreamBadRequestError, 413),
    "authentication_error": (UpstreamAuthError, 401),
    "permission_error": (UpstreamAuthError, 403),
    "not_found_error": (UpstreamNotFoundError, 404),
    "rate_limit_error": (UpstreamRateLimitedError, 429),
    "api_error": (UpstreamStreamError, 500),
    "timeout_error": (UpstreamStreamError, 504),
    "overloaded_error": (UpstreamServerError, 529),
}


def error_fields(data: object) -> tuple[str | None, str | None]:
    """``(message, error type)`` from a parsed Anthropic error body (None when absent)."""
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return None, None
    kind, message = error.get("type"), error.get("message")
    return (
        message if isinstance(message, str) and message else None,
        kind if isinstance(kind, str) and kind else None,
    )


# The gateway error for a non-2xx Messages API response.
error_for_response = status_error_mapper(error_fields)


def error_for_type(
    kind: str,
    message: str,
    provider: str,
    *,
    secrets: Iterable[str] = (),
) -> UpstreamError:
    """The gateway error for an Anthropic error type seen in a stream's ``error`` event."""
    cls, status = _BY_TYPE.get(kind, (UpstreamStreamError, 0))
    if cls is UpstreamAuthError:
        return UpstreamAuthError(
            f"upstream rejected the gateway's credentials ({kind})", provider=provider
        )
    text = safe_message(message, secrets) or f"upstream stream error ({kind or 'unknown'})"
    # The stream itself had status 200; `status` records what the error type stands for.
    return cls(text, provider=provider, status=status)
