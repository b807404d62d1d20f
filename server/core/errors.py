"""The gateway's one rooted exception tree.

Every error knows its gRPC code, HTTP status, machine-readable reason and whether the executor
may retry it (house style 3, after tensorzero's error enum and httpx ``_exceptions.py``). Both
transports encode these errors at their edge; nothing below a transport builds a status or a
JSON error body itself. Messages are written for the API caller: they never contain provider
keys, gateway keys or raw upstream bodies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc

ERROR_DOMAIN = "switchboard.dev"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One invalid request field (mirrors ``google.rpc.BadRequest.FieldViolation``)."""

    field: str
    description: str


@dataclass(frozen=True, slots=True)
class QuotaViolation:
    """One exhausted quota (mirrors ``google.rpc.QuotaFailure.Violation``)."""

    subject: str
    description: str


class GatewayError(Exception):
    """Root of every error the gateway reports to a caller."""

    grpc_code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    http_status: int = 500
    reason: str = "INTERNAL"
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        param: str | None = None,
        field_violations: Sequence[FieldViolation] = (),
        quota_violations: Sequence[QuotaViolation] = (),
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        # Seconds the caller should wait before retrying (RetryInfo / Retry-After).
        self.retry_after = retry_after
        # The offending request field, in the caller's own field path (OpenAI ``param``).
        self.param = param
        self.field_violations = tuple(field_violations)
        self.quota_violations = tuple(quota_violations)
        # Extra ErrorInfo metadata; values must be safe to show to the caller.
        self.metadata = dict(metadata or {})


# --- caller errors ---------------------------------------------------------------------------


class InvalidRequestError(GatewayError):
    """The request is malformed or fails validation (INVALID_ARGUMENT / 400)."""

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400
    reason = "INVALID_REQUEST"


class UnsupportedFeatureError(InvalidRequestError):
    """The chosen provider cannot do what the request asks; nothing is dropped silently."""

    reason = "UNSUPPORTED_FEATURE"


class UnauthenticatedError(GatewayError):
    """Missing, unknown or revoked gateway key (UNAUTHENTICATED / 401)."""

    grpc_code = grpc.StatusCode.UNAUTHENTICATED
    http_status = 401
    reason = "INVALID_API_KEY"


class PermissionDeniedError(GatewayError):
    """The key is valid but may not do this (PERMISSION_DENIED / 403)."""

    grpc_code = grpc.StatusCode.PERMISSION_DENIED
    http_status = 403
    reason = "PERMISSION_DENIED"


class NotFoundError(GatewayError):
    """A named resource does not exist (NOT_FOUND / 404)."""

    grpc_code = grpc.StatusCode.NOT_FOUND
    http_status = 404
    reason = "NOT_FOUND"


class ModelNotFoundError(NotFoundError):
    """No provider, deployment or route answers to this model name."""

    reason = "MODEL_NOT_FOUND"


class RateLimitedError(GatewayError):
    """A per-key RPM/TPM limit is exhausted (RESOURCE_EXHAUSTED / 429 + Retry-After)."""

    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 429
    reason = "RATE_LIMITED"


class BudgetExceededError(GatewayError):
    """The key's monthly spend limit is reached (RESOURCE_EXHAUSTED / 429)."""

    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 429
    reason = "BUDGET_EXCEEDED"


class DeadlineExceededError(GatewayError):
    """The request's deadline ran out, retries included (DEADLINE_EXCEEDED / 504)."""

    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED
    http_status = 504
    reason = "DEADLINE_EXCEEDED"


class UnimplementedError(GatewayError):
    """The RPC or endpoint exists in the contract but is not served yet (UNIMPLEMENTED / 501)."""

    grpc_code = grpc.StatusCode.UNIMPLEMENTED
    http_status = 501
    reason = "UNIMPLEMENTED"


# --- upstream errors (raised by adapters; see house style 4) --------------------------------


class UpstreamError(GatewayError):
    """An upstream provider failed. ``provider`` names it; ``status`` is its HTTP status or 0."""

    grpc_code = grpc.StatusCode.UNAVAILABLE
    http_status = 502
    reason = "UPSTREAM_ERROR"

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status: int = 0,
        retry_after: float | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(message, retry_after=retry_after, **kwargs)  # type: ignore[arg-type]
        self.provider = provider
        self.status = status


class UpstreamRateLimitedError(UpstreamError):
    """Upstream said 429: retryable, honouring its retry-after."""

    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 429
    reason = "UPSTREAM_RATE_LIMITED"
    retryable = True


class UpstreamServerError(UpstreamError):
    """Upstream answered 5xx (or 529 overloaded, 408, 409): retryable."""

    reason = "UPSTREAM_SERVER_ERROR"
    retryable = True


class UpstreamConnectionError(UpstreamError):
    """Could not connect to the upstream, or the connection broke: retryable."""

    http_status = 503
    reason = "UPSTREAM_UNAVAILABLE"
    retryable = True


class UpstreamTimeoutError(UpstreamError):
    """The upstream did not answer (or a stream stalled) within its timeout: retryable."""

    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED
    http_status = 504
    reason = "UPSTREAM_TIMEOUT"
    retryable = True


class UpstreamStreamError(UpstreamError):
    """A stream broke or carried an error event after a 200: retryable before the first chunk."""

    reason = "UPSTREAM_STREAM_ERROR"
    retryable = True


class UpstreamBadRequestError(UpstreamError):
    """Upstream rejected the request (400/422); its message is safe to pass on. Not retryable."""

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400
    reason = "UPSTREAM_INVALID_REQUEST"


class UpstreamNotFoundError(UpstreamError):
    """Upstream does not know the model (404). Not retryable."""

    grpc_code = grpc.StatusCode.NOT_FOUND
    http_status = 404
    reason = "UPSTREAM_NOT_FOUND"


class UpstreamAuthError(UpstreamError):
    """Upstream refused the operator's provider key (401/403). The key is never shown."""

    grpc_code = grpc.StatusCode.UNAVAILABLE
    http_status = 502
    reason = "UPSTREAM_AUTH_FAILED"


class AllAttemptsFailedError(UpstreamError):
    """Every candidate deployment failed; lists each attempt (tensorzero AllModelProvidersFailed).

    Its code follows the failures: all rate-limited gives RESOURCE_EXHAUSTED / 429 with the
    smallest upstream retry delay; otherwise UNAVAILABLE (or the last error's code when that is
    more specific).
    """

    def __init__(self, errors: Sequence[GatewayError], *, attempts: Sequence[object] = ()) -> None:
        self.errors = tuple(errors)
        self.attempts = tuple(attempts)
        last = self.errors[-1] if self.errors else None
        summary = "; ".join(f"{_provider_of(e)}: {e.message}" for e in self.errors)
        delays = [e.retry_after for e in self.errors if e.retry_after is not None]
        all_limited = bool(self.errors) and all(
            isinstance(e, UpstreamRateLimitedError | RateLimitedError) for e in self.errors
        )
        super().__init__(
            f"all {len(self.errors)} upstream attempts failed: {summary}",
            retry_after=min(delays) if delays and all_limited else None,
        )
        if all_limited:
            self.grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
            self.http_status = 429
            self.reason = "UPSTREAM_RATE_LIMITED"
        elif last is not None:
            self.grpc_code = last.grpc_code
            self.http_status = last.http_status if last.http_status >= 500 else 502
            self.reason = "ALL_ATTEMPTS_FAILED"
            if last.grpc_code not in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
            ):
                self.grpc_code = grpc.StatusCode.UNAVAILABLE
        else:
            self.reason = "ALL_ATTEMPTS_FAILED"


def _provider_of(error: GatewayError) -> str:
    return getattr(error, "provider", "") or "gateway"
