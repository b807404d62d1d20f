"""Gateway errors as ``google.rpc.Status`` with standard details (AIP-193).

Every error carries ``ErrorInfo{reason, domain, metadata}``; RESOURCE_EXHAUSTED and UNAVAILABLE
add ``RetryInfo`` when the wait is known; rate and budget limits add ``QuotaFailure``; validation
errors add ``BadRequest`` with field violations. Messages come from ``GatewayError.message``,
which is written for the caller and never holds a key or a raw upstream body.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from server.core.errors import (
    ERROR_DOMAIN,
    BudgetExceededError,
    Code,
    FieldViolation,
    GatewayError,
    RateLimitedError,
)
from server.core.secrets import scrub

REQUEST_ID_KEY = "x-request-id"
# Bounds on what one error status carries (see to_status_proto).
MAX_MESSAGE = 1024
MAX_VALUE = 256
MAX_METADATA = 16
MAX_VIOLATIONS = 20
MAX_STATUS_BYTES = 4096
INTERNAL_MESSAGE = "Internal error; the request id identifies it in the gateway's logs."
_RETRY_CODES = (Code.RESOURCE_EXHAUSTED, Code.UNAVAILABLE)


def to_status_proto(error: GatewayError, request_id: str | None = None) -> status_pb2.Status:
    """The ``google.rpc.Status`` for a gateway error: every text scrubbed of secrets, and the
    whole bounded so that it fits the 8 KiB of trailing metadata clients accept by default
    (a status over it surfaces as a misleading RESOURCE_EXHAUSTED)."""
    code = error.code
    status = status_pb2.Status(code=int(code), message=_text(error.message, MAX_MESSAGE))
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN)
    for key, value in list(error.metadata.items())[:MAX_METADATA]:
        info.metadata[_text(key, 64)] = _text(value, MAX_VALUE)
    provider = getattr(error, "provider", "")
    if provider:
        info.metadata["provider"] = _text(provider, MAX_VALUE)
    if request_id:
        info.metadata["request_id"] = request_id
    _pack(status, info)
    if code in _RETRY_CODES and error.retry_after is not None:
        _pack(status, error_details_pb2.RetryInfo(retry_delay=_duration(error.retry_after)))
    quota = list(error.quota_violations)[:MAX_VIOLATIONS]
    if quota or isinstance(error, RateLimitedError | BudgetExceededError):
        failure = error_details_pb2.QuotaFailure()
        for v in quota:
            failure.violations.add(
                subject=_text(v.subject, MAX_VALUE), description=_text(v.description, MAX_VALUE)
            )
        if not quota:
            failure.violations.add(subject="gateway key", description=status.message)
        _pack(status, failure)
    violations = list(error.field_violations)[:MAX_VIOLATIONS]
    if not violations and error.param and code is Code.INVALID_ARGUMENT:
        violations = [FieldViolation(error.param, error.message)]
    if violations:
        bad = error_details_pb2.BadRequest()
        room = MAX_STATUS_BYTES - status.ByteSize() - 64
        for fv in violations:
            added = bad.field_violations.add(
                field=_text(fv.field, MAX_VALUE), description=_text(fv.description, MAX_VALUE)
            )
            if bad.ByteSize() > room and len(bad.field_violations) > 1:
                # The first violations say what to fix; the rest would not fit a client's
                # metadata limit.
                bad.field_violations.remove(added)
                break
        _pack(status, bad)
    return status


def _text(value: str, limit: int) -> str:
    """A caller-safe text: scrubbed of every secret, at most ``limit`` characters."""
    value = scrub(value)
    return value if len(value) <= limit else value[: limit - 1] + "…"


def to_grpc_status(error: GatewayError, request_id: str | None = None) -> grpc.Status:
    """A ``grpc.Status`` for ``ServicerContext.abort_with_status`` (details + x-request-id)."""
    return _with_request_id(to_status_proto(error, request_id), request_id)


def internal_grpc_status(request_id: str | None = None) -> grpc.Status:
    """INTERNAL with a generic message for an unexpected exception; nothing of it leaks."""
    status = status_pb2.Status(code=int(Code.INTERNAL), message=INTERNAL_MESSAGE)
    info = error_details_pb2.ErrorInfo(reason="INTERNAL", domain=ERROR_DOMAIN)
    if request_id:
        info.metadata["request_id"] = request_id
    _pack(status, info)
    return _with_request_id(status, request_id)


def _with_request_id(status: status_pb2.Status, request_id: str | None) -> grpc.Status:
    converted = rpc_status.to_status(status)
    if not request_id:
        return converted
    return _Status(
        converted.code,
        converted.details,
        (*converted.trailing_metadata, (REQUEST_ID_KEY, request_id)),
    )


class _Status(grpc.Status):
    __slots__ = ("code", "details", "trailing_metadata")

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str,
        trailing_metadata: tuple[tuple[str, str | bytes], ...],
    ) -> None:
        self.code = code
        self.details = details
        self.trailing_metadata = trailing_metadata


def _pack(status: status_pb2.Status, detail: object) -> None:
    packed = any_pb2.Any()
    packed.Pack(detail)  # type: ignore[arg-type]
    status.details.append(packed)


def _duration(seconds: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(round(max(0.0, seconds) * 1e9))
    return duration
