"""server.grpc_api.status: gateway errors as google.rpc.Status with standard details."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2

from server.core.errors import (
    ERROR_DOMAIN,
    BudgetExceededError,
    DeadlineExceededError,
    FieldViolation,
    InvalidRequestError,
    ModelNotFoundError,
    QuotaViolation,
    RateLimitedError,
    UnsupportedFeatureError,
    UpstreamRateLimitedError,
    UpstreamServerError,
)
from server.grpc_api.status import (
    INTERNAL_MESSAGE,
    internal_grpc_status,
    to_grpc_status,
    to_status_proto,
)

_KINDS = {
    "ErrorInfo": error_details_pb2.ErrorInfo,
    "RetryInfo": error_details_pb2.RetryInfo,
    "QuotaFailure": error_details_pb2.QuotaFailure,
    "BadRequest": error_details_pb2.BadRequest,
}


def _details(status: status_pb2.Status) -> dict[str, object]:
    out: dict[str, object] = {}
    for packed in status.details:
        for name, cls in _KINDS.items():
            if packed.Is(cls.DESCRIPTOR):
                msg = cls()
                packed.Unpack(msg)
                assert name not in out, f"{name} packed twice"
                out[name] = msg
    assert len(out) == len(status.details), "unknown detail type"
    return out


def test_not_found_has_only_error_info() -> None:
    status = to_status_proto(ModelNotFoundError("no such model", param="model"), "rid-1")
    assert status.code == grpc.StatusCode.NOT_FOUND.value[0]
    assert status.message == "no such model"
    details = _details(status)
    assert set(details) == {"ErrorInfo"}
    info = details["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert (info.reason, info.domain) == ("MODEL_NOT_FOUND", ERROR_DOMAIN)
    assert dict(info.metadata) == {"request_id": "rid-1"}


def test_upstream_rate_limit_has_retry_info_but_no_quota_failure() -> None:
    err = UpstreamRateLimitedError("slow down", provider="openai", status=429, retry_after=1.5)
    details = _details(to_status_proto(err))
    assert set(details) == {"ErrorInfo", "RetryInfo"}
    retry = details["RetryInfo"]
    assert isinstance(retry, error_details_pb2.RetryInfo)
    assert retry.retry_delay.seconds == 1 and retry.retry_delay.nanos == 500_000_000
    info = details["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert info.metadata["provider"] == "openai" and info.reason == "UPSTREAM_RATE_LIMITED"


def test_key_rate_limit_has_quota_failure_and_retry_info() -> None:
    err = RateLimitedError(
        "60 requests per minute",
        retry_after=12,
        quota_violations=[QuotaViolation("key:key_1", "requests_per_minute=60")],
    )
    status = to_status_proto(err)
    assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    details = _details(status)
    assert set(details) == {"ErrorInfo", "RetryInfo", "QuotaFailure"}
    quota = details["QuotaFailure"]
    assert isinstance(quota, error_details_pb2.QuotaFailure)
    assert [(v.subject, v.description) for v in quota.violations] == [
        ("key:key_1", "requests_per_minute=60")
    ]


def test_budget_without_violations_still_says_which_quota_and_no_retry_info() -> None:
    details = _details(to_status_proto(BudgetExceededError("monthly budget of $5 reached")))
    assert set(details) == {"ErrorInfo", "QuotaFailure"}
    quota = details["QuotaFailure"]
    assert isinstance(quota, error_details_pb2.QuotaFailure)
    assert quota.violations[0].description == "monthly budget of $5 reached"


def test_validation_errors_have_bad_request() -> None:
    err = InvalidRequestError(
        "bad",
        param="temperature",
        field_violations=[
            FieldViolation("temperature", "between 0 and 2"),
            FieldViolation("messages", "required"),
        ],
    )
    details = _details(to_status_proto(err))
    assert set(details) == {"ErrorInfo", "BadRequest"}
    bad = details["BadRequest"]
    assert isinstance(bad, error_details_pb2.BadRequest)
    assert [v.field for v in bad.field_violations] == ["temperature", "messages"]

    # A param without explicit violations still names the field.
    only_param = _details(to_status_proto(UnsupportedFeatureError("no images", param="messages")))
    bad = only_param["BadRequest"]
    assert isinstance(bad, error_details_pb2.BadRequest)
    assert [(v.field, v.description) for v in bad.field_violations] == [("messages", "no images")]


def test_retry_info_only_on_resource_exhausted_and_unavailable() -> None:
    unavailable = _details(to_status_proto(UpstreamServerError("boom", retry_after=2)))
    assert "RetryInfo" in unavailable
    deadline = _details(to_status_proto(DeadlineExceededError("late", retry_after=2)))
    assert "RetryInfo" not in deadline
    unknown_delay = _details(to_status_proto(UpstreamServerError("boom")))
    assert "RetryInfo" not in unknown_delay


def test_grpc_status_carries_details_and_request_id() -> None:
    status = to_grpc_status(ModelNotFoundError("nope"), "rid-9")
    assert status.code == grpc.StatusCode.NOT_FOUND and status.details == "nope"
    metadata = dict(status.trailing_metadata)
    assert metadata["x-request-id"] == "rid-9"
    decoded = status_pb2.Status.FromString(metadata["grpc-status-details-bin"])
    assert decoded.code == grpc.StatusCode.NOT_FOUND.value[0] and decoded.message == "nope"


def test_internal_status_is_generic() -> None:
    status = internal_grpc_status("rid-3")
    assert status.code == grpc.StatusCode.INTERNAL and status.details == INTERNAL_MESSAGE
    decoded = status_pb2.Status.FromString(
        dict(status.trailing_metadata)["grpc-status-details-bin"]
    )
    info = _details(decoded)["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert info.reason == "INTERNAL" and info.metadata["request_id"] == "rid-3"
