"""Upstream failures as gateway errors: HTTP statuses, transport exceptions, retry delays.

The helpers turn HTTP statuses and transport exceptions (``http1``'s and the OSErrors of a
connect) into
``server.core.errors.Upstream*`` (house style 4, after httpx ``map_exceptions`` and openai-python
``_base_client.py``). Callers pass the message they already extracted from the provider's error
body; the helpers redact any secret they are given, well-known key shapes and bearer tokens, and
cap the length, so neither a key nor a raw upstream body reaches a caller or a log line.
"""

from __future__ import annotations

import email.utils
import math
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Mapping

from multidict import CIMultiDictProxy

from server.core.errors import (
    UpstreamAuthError,
    UpstreamBadRequestError,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamNotFoundError,
    UpstreamRateLimitedError,
    UpstreamServerError,
    UpstreamTimeoutError,
)
from server.core.secrets import scrub
from server.providers.http1 import ConnectionClosed, MalformedResponse, UnusableURL

# Upstream error messages are short sentences; anything longer is a body we must not forward.
MAX_MESSAGE_CHARS = 500

# --- retry delays --------------------------------------------------------------------------


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms``, then ``retry-after`` as seconds or an HTTP date
    (openai-python ``_base_client._parse_retry_after_header``). None when absent or unusable."""
    get = headers.get if isinstance(headers, CIMultiDictProxy) else _ci_getter(headers)
    delay = _seconds(get("retry-after-ms"), scale=1000.0)
    if delay is not None:
        return delay
    raw = get("retry-after")
    if raw is None:
        return None
    delay = _seconds(raw, scale=1.0)
    if delay is not None:
        return delay
    parsed = email.utils.parsedate_tz(raw)
    if parsed is None:
        return None
    return max(0.0, float(email.utils.mktime_tz(parsed) - time.time()))


def _ci_getter(headers: Mapping[str, str]) -> Callable[[str], str | None]:
    lowered = {k.lower(): v for k, v in headers.items()}
    return lowered.get


def _seconds(raw: str | None, *, scale: float) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw.strip()) / scale
    except ValueError:
        return None
    if math.isnan(value) or math.isinf(value) or value < 0:
        return None
    return value


# --- redaction -----------------------------------------------------------------------------


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every configured secret (and ``secrets``), in any form an upstream may echo
    it, and anything shaped like a key replaced by ``[redacted]`` (``core.secrets.scrub``)."""
    return scrub(text, secrets)


def safe_message(message: str | None, secrets: Iterable[str] = ()) -> str:
    """A caller-safe, single-line, length-capped version of an upstream's error message."""
    if not message:
        return ""
    text = " ".join(redact(message, secrets).split())
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 1] + "…"
    return text


# --- error mapping -------------------------------------------------------------------------


def error_for_status(
    status: int,
    message: str | None,
    *,
    provider: str,
    headers: Mapping[str, str] | None = None,
    secrets: Iterable[str] = (),
    code: str | None = None,
) -> UpstreamError:
    """The gateway error for an upstream HTTP error status (openai-python ``_make_status_error``).

    ``message`` is the provider's own error message field, never a raw body. ``code`` is the
    provider's short error code (e.g. ``unsupported_parameter``), passed on as metadata.
    """
    text = safe_message(message, secrets)
    cls: type[UpstreamError]
    retry_after = None
    if status in (401, 403):
        # The upstream's words are about the operator's key (OpenAI echoes a masked one): the
        # caller learns only that the gateway's credentials were refused.
        cls, text = UpstreamAuthError, ""
        default = f"upstream rejected the gateway's credentials (HTTP {status})"
    elif status == 429:
        cls, default = UpstreamRateLimitedError, "upstream rate limit exceeded"
        retry_after = parse_retry_after(headers) if headers is not None else None
    elif status in (400, 413, 422):
        cls, default = UpstreamBadRequestError, f"upstream rejected the request (HTTP {status})"
    elif status == 404:
        cls, default = UpstreamNotFoundError, "upstream does not know this model or path"
    elif status in (408, 409) or status >= 500:
        cls, default = UpstreamServerError, f"upstream server error (HTTP {status})"
        retry_after = parse_retry_after(headers) if headers is not None else None
    else:
        # Other 4xx (402 payment required, 405, 415...): the upstream refuses this request.
        cls, default = UpstreamBadRequestError, f"upstream refused the request (HTTP {status})"
    return cls(
        text or default,
        provider=provider,
        status=status,
        retry_after=retry_after,
        metadata={"upstream_code": code} if code and _is_code(code, secrets) else None,
    )


def _is_code(code: str, secrets: Iterable[str]) -> bool:
    # A short machine code is passed on; anything else (or anything holding a secret, as an
    # upstream that echoes the key in `code` would) is not.
    if len(code) > 64 or not all(c.isalnum() or c in "_-." for c in code):
        return False
    return scrub(code, secrets) == code


def error_for_exception(exc: BaseException, *, provider: str) -> UpstreamError:
    """The gateway error for a transport failure (after httpx ``map_exceptions``); never uses
    the exception's text, which can carry URLs and headers."""
    if isinstance(exc, UpstreamError):
        return exc
    if isinstance(exc, TimeoutError) or _caused_by(exc, TimeoutError):
        return UpstreamTimeoutError("upstream did not answer in time", provider=provider)
    if isinstance(exc, UnusableURL):
        return UpstreamConnectionError("upstream URL is not usable", provider=provider)
    if isinstance(exc, ConnectionClosed):
        return UpstreamConnectionError("upstream closed the connection", provider=provider)
    if isinstance(exc, MalformedResponse):
        return UpstreamConnectionError("upstream sent a malformed HTTP response", provider=provider)
    return UpstreamConnectionError(_unreachable(exc), provider=provider)


def _unreachable(exc: BaseException) -> str:
    """Why a connection could not be made, in words (not the exception's class name)."""
    if _caused_by(exc, ConnectionRefusedError):
        return "upstream refused the connection (nothing listens at its address)"
    if _caused_by(exc, socket.gaierror):
        return "upstream host name does not resolve"
    if _caused_by(exc, ssl.SSLError):
        return "TLS handshake with the upstream failed"
    if _caused_by(exc, ConnectionResetError):
        return "upstream reset the connection"
    return "could not connect to upstream"


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    current: BaseException | None = exc
    for _ in range(8):
        if current is None:
            return False
        if isinstance(current, kind):
            return True
        current = current.__cause__ or current.__context__
    return False
