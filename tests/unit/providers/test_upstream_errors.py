"""server.providers.upstream_errors: retry delays, redaction, status and exception mapping."""

from __future__ import annotations

import email.utils
import time

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

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
from server.providers.http1 import ConnectionClosed, MalformedResponse, UnusableURL, parse_target
from server.providers.upstream_errors import (
    MAX_MESSAGE_CHARS,
    error_for_exception,
    error_for_status,
    parse_retry_after,
    redact,
    safe_message,
)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "250"}, 0.25),
        ({"Retry-After-Ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after-ms": "junk", "retry-after": "3"}, 3.0),
        ({"Retry-After": "0.5"}, 0.5),
        ({"retry-after": "-1"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers) == expected
    # As aiohttp hands them over: a case-insensitive multidict proxy.
    assert parse_retry_after(CIMultiDictProxy(CIMultiDict(headers))) == expected


def test_parse_retry_after_http_date() -> None:
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    delay = parse_retry_after({"retry-after": future})
    assert delay is not None and 27 <= delay <= 31
    past = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert parse_retry_after({"retry-after": past}) == 0.0


def test_redact_given_secrets_and_key_shapes() -> None:
    text = (
        "key sk-proj-AbCdEf0123456789 and gsk_abcdefghijklmnop, AIzaSyA1234567890abcdefghijk, "
        "Authorization: Bearer tok.en-value, custom s3cr3t-token"
    )
    out = redact(text, ["s3cr3t-token"])
    for leaked in ("sk-proj", "gsk_abc", "AIzaSy", "tok.en-value", "s3cr3t"):
        assert leaked not in out
    assert out.count("[redacted]") == 5


def test_safe_message_is_one_capped_line() -> None:
    assert safe_message(None) == ""
    assert safe_message("a\n  b\tc") == "a b c"
    long = safe_message("x" * 5000)
    assert len(long) == MAX_MESSAGE_CHARS and long.endswith("…")


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, UpstreamBadRequestError),
        (401, UpstreamAuthError),
        (402, UpstreamBadRequestError),
        (403, UpstreamAuthError),
        (404, UpstreamNotFoundError),
        (408, UpstreamServerError),
        (409, UpstreamServerError),
        (413, UpstreamBadRequestError),
        (422, UpstreamBadRequestError),
        (429, UpstreamRateLimitedError),
        (500, UpstreamServerError),
        (502, UpstreamServerError),
        (503, UpstreamServerError),
        (529, UpstreamServerError),
    ],
)
def test_error_for_status(status: int, error: type[UpstreamError]) -> None:
    mapped = error_for_status(
        status, "upstream says no", provider="p", headers={"retry-after": "4"}, code="some_code"
    )
    assert type(mapped) is error
    assert mapped.provider == "p" and mapped.status == status
    assert mapped.metadata == {"upstream_code": "some_code"}
    if error is UpstreamAuthError:
        assert "upstream says no" not in mapped.message
    else:
        assert mapped.message == "upstream says no"
    if error in (UpstreamRateLimitedError, UpstreamServerError):
        assert mapped.retry_after == 4.0


def test_error_for_status_defaults_and_unsafe_codes() -> None:
    mapped = error_for_status(500, None, provider="p", code="<script>alert(1)</script>")
    assert mapped.message == "upstream server error (HTTP 500)"
    assert mapped.metadata == {}
    assert error_for_status(429, "", provider="p").retry_after is None


def test_error_for_exception_maps_transport_failures() -> None:
    assert isinstance(error_for_exception(TimeoutError(), provider="p"), UpstreamTimeoutError)
    mapped = error_for_exception(ConnectionRefusedError(111, "refused"), provider="p")
    assert isinstance(mapped, UpstreamConnectionError) and "refused" in mapped.message
    closed = error_for_exception(ConnectionClosed("gone"), provider="p")
    assert isinstance(closed, UpstreamConnectionError) and "closed" in closed.message
    garbled = error_for_exception(MalformedResponse("x"), provider="p")
    assert "malformed" in garbled.message
    try:
        parse_target("http://user:pw@host/v1")
    except UnusableURL as exc:
        mapped = error_for_exception(exc, provider="p")
    assert "pw@host" not in mapped.message and mapped.provider == "p"
