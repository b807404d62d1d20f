"""``SwitchboardError``: a failed call with its ``google.rpc.Status`` details decoded."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

DETAILS_KEY = "grpc-status-details-bin"
REQUEST_ID_KEY = "x-request-id"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One invalid request field (``google.rpc.BadRequest.FieldViolation``)."""

    field: str
    description: str


@dataclass(frozen=True, slots=True)
class QuotaViolation:
    """One exhausted quota (``google.rpc.QuotaFailure.Violation``)."""

    subject: str
    description: str


@dataclass(eq=False)
class SwitchboardError(Exception):
    """A gateway error as the client sees it: gRPC code, ErrorInfo reason, RetryInfo delay."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    # Seconds to wait before retrying (RetryInfo), when the gateway knows.
    retry_after: float | None = None
    field_violations: tuple[FieldViolation, ...] = ()
    quota_violations: tuple[QuotaViolation, ...] = ()
    request_id: str | None = None

    def __post_init__(self) -> None:
        Exception.__init__(self, self.message)

    def __str__(self) -> str:
        reason = f" {self.reason}" if self.reason else ""
        return f"{self.code.name}{reason}: {self.message}"

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> SwitchboardError:
        """Decodes a ``grpc.aio.AioRpcError`` (or a sync ``grpc.Call`` error)."""
        call: Any = error
        code: grpc.StatusCode = call.code()
        message: str = call.details() or ""
        trailing = _pairs(call.trailing_metadata())
        initial = _pairs(call.initial_metadata()) if hasattr(call, "initial_metadata") else []
        request_id = _first(trailing, REQUEST_ID_KEY) or _first(initial, REQUEST_ID_KEY)
        raw = _first(trailing, DETAILS_KEY)
        out = cls(code=code, message=message, request_id=_text(request_id))
        if isinstance(raw, bytes):
            _apply_details(out, status_pb2.Status.FromString(raw))
        return out


def _apply_details(out: SwitchboardError, status: status_pb2.Status) -> None:
    if status.message:
        out.message = status.message
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            out.reason, out.domain = info.reason, info.domain
            out.metadata = dict(info.metadata)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            out.retry_after = retry.retry_delay.ToNanoseconds() / 1e9
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out.field_violations = tuple(
                FieldViolation(v.field, v.description) for v in bad.field_violations
            )
        elif detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
            quota = error_details_pb2.QuotaFailure()
            detail.Unpack(quota)
            out.quota_violations = tuple(
                QuotaViolation(v.subject, v.description) for v in quota.violations
            )
    Exception.__init__(out, out.message)


def _pairs(metadata: Iterable[Any] | None) -> list[tuple[str, str | bytes]]:
    return [(m[0], m[1]) for m in metadata or ()]


def _first(pairs: list[tuple[str, str | bytes]], key: str) -> str | bytes | None:
    return next((value for k, value in pairs if k == key), None)


def _text(value: str | bytes | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value
