"""Google API error bodies → ``server.core.errors.Upstream*``.

The body is ``{"error": {"code", "message", "status", "details": [...]}}``. ``error.status``
decides the class (RESOURCE_EXHAUSTED and UNAVAILABLE are retryable, with the ``RetryInfo``
``retryDelay`` when present, else ``Retry-After``); an invalid key comes back as
INVALID_ARGUMENT with ``ErrorInfo.reason`` ``API_KEY_INVALID`` and is an auth error, never
showing the key. The same object inside a 200 stream is mapped the same way, except that a
server-side failure other than UNAVAILABLE means the stream broke (``UpstreamStreamError``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from server.core.errors import UpstreamError, UpstreamStreamError
from server.providers.upstream_errors import error_for_status, safe_message

# Google canonical status → the HTTP status it maps to (google.rpc.Code).
_STATUS_HTTP: dict[str, int] = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ABORTED": 409,
    "ALREADY_EXISTS": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "INTERNAL": 500,
    "UNKNOWN": 500,
    "DATA_LOSS": 500,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}
_KEY_REASONS = frozenset(
    {"API_KEY_INVALID", "API_KEY_SERVICE_BLOCKED", "API_KEY_HTTP_REFERRER_BLOCKED"}
)


def _retry_delay(details: Any) -> float | None:
    for detail in details if isinstance(details, list) else ():
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("RetryInfo"):
            raw = detail.get("retryDelay")
            if isinstance(raw, str) and raw.endswith("s"):
                try:
                    return max(0.0, float(raw[:-1]))
                except ValueError:
                    return None
            if isinstance(raw, dict):
                # The proto form of a Duration: {"seconds": ..., "nanos": ...}.
                return float(raw.get("seconds") or 0) + float(raw.get("nanos") or 0) / 1e9
    return None


def _as_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _key_rejected(details: Any) -> bool:
    return any(
        isinstance(d, dict) and d.get("reason") in _KEY_REASONS
        for d in (details if isinstance(details, list) else ())
    )


def error_from_body(
    data: Any,
    status: int,
    headers: Mapping[str, str],
    provider: str,
    secrets: Iterable[str] = (),
    *,
    in_stream: bool = False,
) -> UpstreamError:
    """The gateway error for a decoded Google error body (HTTP ``status``, 0 in a stream)."""
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        error = {}
    google_status = str(error.get("status") or "")
    details = error.get("details")
    # The canonical status is more precise than HTTP's; UNKNOWN says nothing, so HTTP decides.
    http = (
        (_STATUS_HTTP.get(google_status) if google_status != "UNKNOWN" else None)
        or status
        or _as_int(error.get("code"))
    )
    if _key_rejected(details):
        http = 401
    message = str(error.get("message") or "")
    if in_stream and (not http or (http >= 500 and google_status != "UNAVAILABLE")):
        # The stream broke on Google's side (INTERNAL, UNKNOWN...); UNAVAILABLE (overloaded)
        # keeps its server-error class, as it would as an HTTP status.
        return UpstreamStreamError(
            safe_message(message, secrets) or "upstream stream error",
            provider=provider,
            status=http or 200,
        )
    mapped = error_for_status(
        http or 502,
        message,
        provider=provider,
        headers=headers,
        secrets=secrets,
        code=google_status or None,
    )
    mapped.status = status or http
    delay = _retry_delay(details)
    if delay is not None and mapped.retryable:
        mapped.retry_after = delay
    return mapped


def error_for_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    provider: str,
    secrets: Iterable[str] = (),
) -> UpstreamError:
    """The gateway error for a non-2xx ``generateContent`` response."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    # Some Google front ends answer with a one-element list around the error object.
    if isinstance(data, list) and data:
        data = data[0]
    return error_from_body(data, status, headers, provider, secrets)
