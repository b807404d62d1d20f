"""The gateway's one rooted exception tree; every error knows its effects.

Each class carries, as class attributes, what every layer needs to know about it, so no caller
works it out again with ``isinstance`` chains (house style 3 and 10; models: httpx
``_exceptions.py``, tensorzero's one ``match`` per property):

- ``code`` (a ``google.rpc.Code``; ``server.grpc_api.status`` maps it to gRPC) and
  ``http_status`` with ``reason`` (ErrorInfo.reason): how both transports report it;
- ``retryable``: the same deployment may be tried again after a backoff;
- ``fallback``: another candidate deployment may serve the request (every retryable error,
  plus a provider that cannot do what was asked);
- ``outcome``: the ``AttemptOutcome`` an upstream attempt that failed this way records;
- ``health``: what the failure says about the deployment and the key that served it.

The tree (status, reason; R = retryable, F = fallback; health effect)::

    GatewayError                            500 INTERNAL
    ├── InvalidRequestError                 400 INVALID_REQUEST
    │   └── UnsupportedFeatureError         400 UNSUPPORTED_FEATURE          F
    ├── RequestTooLargeError                413 REQUEST_TOO_LARGE
    ├── RequestTimeoutError                 408 REQUEST_TIMEOUT
    ├── UnauthenticatedError                401 INVALID_API_KEY
    ├── PermissionDeniedError               403 PERMISSION_DENIED
    │   └── ModelNotAllowedError            403 MODEL_NOT_ALLOWED
    ├── NotFoundError                       404 NOT_FOUND
    │   ├── ModelNotFoundError              404 MODEL_NOT_FOUND
    │   └── ResponseNotFoundError           404 RESPONSE_NOT_FOUND
    ├── RateLimitedError                    429 RATE_LIMITED
    ├── BudgetExceededError                 429 BUDGET_EXCEEDED
    ├── FailedPreconditionError             400 FAILED_PRECONDITION
    │   └── MaxTurnsExceededError           400 MAX_TURNS_EXCEEDED
    ├── DeadlineExceededError               504 DEADLINE_EXCEEDED
    ├── UnimplementedError                  501 UNIMPLEMENTED
    ├── StoreUnavailableError               503 STORE_UNAVAILABLE
    └── UpstreamError                       502 UPSTREAM_ERROR
        ├── UpstreamRateLimitedError        429 UPSTREAM_RATE_LIMITED        R F  cool key
        │   ├── KeysCoolingError            429 UPSTREAM_RATE_LIMITED        R F  (skipped)
        │   └── DeploymentBusyError         429 DEPLOYMENT_BUSY              R F  (skipped)
        ├── UpstreamServerError             502 UPSTREAM_SERVER_ERROR        R F  deployment
        ├── UpstreamConnectionError         503 UPSTREAM_UNAVAILABLE         R F  deployment
        │   └── CircuitOpenError            503 CIRCUIT_OPEN                 R F  (skipped)
        ├── UpstreamTimeoutError            504 UPSTREAM_TIMEOUT             R F  deployment
        ├── UpstreamStreamError             502 UPSTREAM_STREAM_ERROR        R F  deployment
        ├── UpstreamBadRequestError         400 UPSTREAM_INVALID_REQUEST
        ├── UpstreamNotFoundError           404 UPSTREAM_NOT_FOUND
        ├── UpstreamAuthError               502 UPSTREAM_AUTH_FAILED              trip key
        └── AllAttemptsFailedError          502 ALL_ATTEMPTS_FAILED (aggregate; all_attempts_failed)
            ├── AllAttemptsUnavailableError 503 ALL_ATTEMPTS_FAILED
            ├── AllAttemptsTimedOutError    504 ALL_ATTEMPTS_FAILED
            └── AllAttemptsRateLimitedError 429 UPSTREAM_RATE_LIMITED

"Skipped" errors describe a candidate the executor passed over without calling it, so they
have no health effect of their own. Messages are written for the API caller: they never
contain provider keys, gateway keys or raw upstream bodies. This module imports no transport
library.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum

from switchboard.v1 import types_pb2

ERROR_DOMAIN = "switchboard.dev"


class Code(IntEnum):
    """The canonical status codes (``google.rpc.Code``; gRPC uses the same numbers)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class HealthEffect(Enum):
    """What a failed attempt tells the health store (circuit breakers and key cooldowns)."""

    # Nothing: the request or the caller was at fault, or the attempt never reached a verdict.
    NONE = "none"
    # The key hit its rate limit: it sits out (Retry-After) while the deployment stays healthy.
    COOL_KEY = "cool_key"
    # The key was refused (revoked, wrong): its circuit opens at once.
    TRIP_KEY = "trip_key"
    # The deployment misbehaved (5xx, timeout, broken connection or stream).
    COUNT_AGAINST_DEPLOYMENT = "count_against_deployment"

    @property
    def key_scoped(self) -> bool:
        """True when another key of the same deployment's pool may succeed at once."""
        return self is HealthEffect.COOL_KEY or self is HealthEffect.TRIP_KEY


_O = types_pb2


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

    code: Code = Code.INTERNAL
    http_status: int = 500
    reason: str = "INTERNAL"
    retryable: bool = False
    fallback: bool = False
    outcome: int = _O.ATTEMPT_OUTCOME_CLIENT_ERROR
    health: HealthEffect = HealthEffect.NONE

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

    def under(self, prefix: str) -> GatewayError:
        """The same error with its field paths moved under ``prefix`` (``chat.model`` when
        the request sits in StreamChatRequest.chat)."""
        moved = copy.copy(self)
        moved.param = f"{prefix}.{self.param}" if self.param else None
        moved.field_violations = tuple(
            FieldViolation(f"{prefix}.{v.field}", v.description) for v in self.field_violations
        )
        return moved


# --- caller errors ---------------------------------------------------------------------------


class InvalidRequestError(GatewayError):
    """The request is malformed or fails validation (INVALID_ARGUMENT / 400)."""

    code = Code.INVALID_ARGUMENT
    http_status = 400
    reason = "INVALID_REQUEST"

    @classmethod
    def of(
        cls,
        violations: Sequence[FieldViolation],
        *,
        what: str = "Invalid request",
        total: int | None = None,
        quote: bool = False,
    ) -> InvalidRequestError:
        """One error for several bad fields: the message names the first (``'field'`` when
        ``quote``) and counts the rest; every one goes into BadRequest. ``total`` counts
        violations beyond those listed."""
        first = violations[0]
        rest = (len(violations) if total is None else total) - 1
        field = f"'{first.field}'" if quote else first.field
        more = f" (and {rest} more)" if rest > 0 else ""
        return cls(
            f"{what}: {field}: {first.description}{more}",
            param=first.field,
            field_violations=violations,
        )


class UnsupportedFeatureError(InvalidRequestError):
    """The chosen provider cannot do what the request asks; nothing is dropped silently.

    Another candidate deployment may be able to, so the executor moves on to it."""

    reason = "UNSUPPORTED_FEATURE"
    fallback = True


class RequestTooLargeError(GatewayError):
    """The request exceeds a size bound (body bytes, messages, parts, nesting) (413)."""

    code = Code.INVALID_ARGUMENT
    http_status = 413
    reason = "REQUEST_TOO_LARGE"


class RequestTimeoutError(GatewayError):
    """The request body did not arrive in time (DEADLINE_EXCEEDED / 408)."""

    code = Code.DEADLINE_EXCEEDED
    http_status = 408
    reason = "REQUEST_TIMEOUT"


class UnauthenticatedError(GatewayError):
    """Missing, unknown or revoked gateway key (UNAUTHENTICATED / 401)."""

    code = Code.UNAUTHENTICATED
    http_status = 401
    reason = "INVALID_API_KEY"


class PermissionDeniedError(GatewayError):
    """The key is valid but may not do this (PERMISSION_DENIED / 403)."""

    code = Code.PERMISSION_DENIED
    http_status = 403
    reason = "PERMISSION_DENIED"


class ModelNotAllowedError(PermissionDeniedError):
    """The key may not use the model or route it asked for (its allowed models)."""

    reason = "MODEL_NOT_ALLOWED"


class NotFoundError(GatewayError):
    """A named resource does not exist (NOT_FOUND / 404)."""

    code = Code.NOT_FOUND
    http_status = 404
    reason = "NOT_FOUND"


class ModelNotFoundError(NotFoundError):
    """No provider, deployment or route answers to this model name."""

    reason = "MODEL_NOT_FOUND"


class ResponseNotFoundError(NotFoundError):
    """No stored response of the calling key has this id (unknown, deleted, or another key's:
    the two are not told apart, so ids of other keys cannot be probed)."""

    reason = "RESPONSE_NOT_FOUND"


class RateLimitedError(GatewayError):
    """A per-key RPM/TPM limit is exhausted (RESOURCE_EXHAUSTED / 429 + Retry-After)."""

    code = Code.RESOURCE_EXHAUSTED
    http_status = 429
    reason = "RATE_LIMITED"
    outcome = _O.ATTEMPT_OUTCOME_RATE_LIMITED


class BudgetExceededError(GatewayError):
    """The key's monthly spend limit is reached (RESOURCE_EXHAUSTED / 429)."""

    code = Code.RESOURCE_EXHAUSTED
    http_status = 429
    reason = "BUDGET_EXCEEDED"


class FailedPreconditionError(GatewayError):
    """The request cannot proceed in the current state; retrying it unchanged will not help."""

    code = Code.FAILED_PRECONDITION
    http_status = 400
    reason = "FAILED_PRECONDITION"


class MaxTurnsExceededError(FailedPreconditionError):
    """The model still asked for tools after Converse's last allowed turn."""

    reason = "MAX_TURNS_EXCEEDED"


class DeadlineExceededError(GatewayError):
    """The request's deadline ran out, retries included (DEADLINE_EXCEEDED / 504)."""

    code = Code.DEADLINE_EXCEEDED
    http_status = 504
    reason = "DEADLINE_EXCEEDED"
    outcome = _O.ATTEMPT_OUTCOME_TIMEOUT


class StoreUnavailableError(GatewayError):
    """A shared state store (Redis or PostgreSQL) cannot be reached, so a limit, budget or key
    cannot be checked (UNAVAILABLE / 503). Limits fail closed unless `limits.on_store_error` is
    `allow`. The message names the store, never its URL or password."""

    code = Code.UNAVAILABLE
    http_status = 503
    reason = "STORE_UNAVAILABLE"


class UnimplementedError(GatewayError):
    """The RPC or endpoint exists in the contract but is not served yet (UNIMPLEMENTED / 501)."""

    code = Code.UNIMPLEMENTED
    http_status = 501
    reason = "UNIMPLEMENTED"


# --- upstream errors (raised by adapters; see house style 4) --------------------------------


class UpstreamError(GatewayError):
    """An upstream provider failed. ``provider`` names it; ``status`` is its HTTP status or 0."""

    code = Code.UNAVAILABLE
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
    """Upstream said 429: the key cools down (its retry-after), the next key or candidate."""

    code = Code.RESOURCE_EXHAUSTED
    http_status = 429
    reason = "UPSTREAM_RATE_LIMITED"
    retryable = True
    fallback = True
    outcome = _O.ATTEMPT_OUTCOME_RATE_LIMITED
    health = HealthEffect.COOL_KEY


class KeysCoolingError(UpstreamRateLimitedError):
    """Every key of the deployment's pool is cooling down after a 429: skipped without a call."""

    health = HealthEffect.NONE


class DeploymentBusyError(UpstreamRateLimitedError):
    """The deployment is at its configured max_concurrency: skipped without a call."""

    reason = "DEPLOYMENT_BUSY"
    health = HealthEffect.NONE


class UpstreamServerError(UpstreamError):
    """Upstream answered 5xx (or 529 overloaded, 408, 409): retryable."""

    reason = "UPSTREAM_SERVER_ERROR"
    retryable = True
    fallback = True
    outcome = _O.ATTEMPT_OUTCOME_SERVER_ERROR
    health = HealthEffect.COUNT_AGAINST_DEPLOYMENT


class UpstreamConnectionError(UpstreamError):
    """Could not connect to the upstream, or the connection broke: retryable."""

    http_status = 503
    reason = "UPSTREAM_UNAVAILABLE"
    retryable = True
    fallback = True
    outcome = _O.ATTEMPT_OUTCOME_CONNECTION_ERROR
    health = HealthEffect.COUNT_AGAINST_DEPLOYMENT


class CircuitOpenError(UpstreamConnectionError):
    """The deployment's (or every pool key's) circuit is open: skipped without a call."""

    reason = "CIRCUIT_OPEN"
    outcome = _O.ATTEMPT_OUTCOME_CIRCUIT_OPEN
    health = HealthEffect.NONE


class UpstreamTimeoutError(UpstreamError):
    """The upstream did not answer (or a stream stalled) within its timeout: retryable."""

    code = Code.DEADLINE_EXCEEDED
    http_status = 504
    reason = "UPSTREAM_TIMEOUT"
    retryable = True
    fallback = True
    outcome = _O.ATTEMPT_OUTCOME_TIMEOUT
    health = HealthEffect.COUNT_AGAINST_DEPLOYMENT


class UpstreamStreamError(UpstreamError):
    """A stream broke or carried an error event after a 200: retryable before the first chunk."""

    reason = "UPSTREAM_STREAM_ERROR"
    retryable = True
    fallback = True
    outcome = _O.ATTEMPT_OUTCOME_STREAM_ERROR
    health = HealthEffect.COUNT_AGAINST_DEPLOYMENT


class UpstreamBadRequestError(UpstreamError):
    """Upstream rejected the request (400/422); its message is safe to pass on. Not retryable."""

    code = Code.INVALID_ARGUMENT
    http_status = 400
    reason = "UPSTREAM_INVALID_REQUEST"


class UpstreamNotFoundError(UpstreamError):
    """Upstream does not know the model (404). Not retryable."""

    code = Code.NOT_FOUND
    http_status = 404
    reason = "UPSTREAM_NOT_FOUND"


class UpstreamAuthError(UpstreamError):
    """Upstream refused the operator's provider key (401/403). The key is never shown; another
    key of the pool may still work."""

    reason = "UPSTREAM_AUTH_FAILED"
    outcome = _O.ATTEMPT_OUTCOME_AUTH_ERROR
    health = HealthEffect.TRIP_KEY


class AllAttemptsFailedError(UpstreamError):
    """Every candidate deployment failed; lists each attempt (tensorzero AllModelProvidersFailed).

    Built by ``all_attempts_failed``, which picks the subclass whose code fits the failures."""

    reason = "ALL_ATTEMPTS_FAILED"

    def __init__(
        self,
        errors: Sequence[GatewayError],
        *,
        attempts: Sequence[object] = (),
        retry_after: float | None = None,
    ) -> None:
        self.errors = tuple(errors)
        self.attempts = tuple(attempts)
        summary = "; ".join(f"{_provider_of(e)}: {e.message}" for e in self.errors)
        super().__init__(
            f"all {len(self.errors)} upstream attempts failed: {summary}", retry_after=retry_after
        )


class AllAttemptsUnavailableError(AllAttemptsFailedError):
    """Every attempt failed and the last could not reach its upstream (503)."""

    http_status = 503


class AllAttemptsTimedOutError(AllAttemptsFailedError):
    """Every attempt failed and the last timed out (DEADLINE_EXCEEDED / 504)."""

    code = Code.DEADLINE_EXCEEDED
    http_status = 504


class AllAttemptsRateLimitedError(AllAttemptsFailedError):
    """Every attempt was rate limited: 429 with the smallest upstream delay."""

    code = Code.RESOURCE_EXHAUSTED
    http_status = 429
    reason = "UPSTREAM_RATE_LIMITED"


def all_attempts_failed(
    errors: Sequence[GatewayError], attempts: Sequence[object] = ()
) -> AllAttemptsFailedError:
    """The aggregate error for a request whose every attempt failed: all rate limited gives
    429 with the smallest Retry-After; otherwise the last failure decides between 504
    (timeout), 503 (unreachable) and 502."""
    if errors and all(e.code is Code.RESOURCE_EXHAUSTED for e in errors):
        delays = [e.retry_after for e in errors if e.retry_after is not None]
        return AllAttemptsRateLimitedError(
            errors, attempts=attempts, retry_after=min(delays) if delays else None
        )
    last = errors[-1] if errors else None
    cls: type[AllAttemptsFailedError] = AllAttemptsFailedError
    if last is not None and last.code is Code.DEADLINE_EXCEEDED:
        cls = AllAttemptsTimedOutError
    elif last is not None and last.http_status == 503:
        cls = AllAttemptsUnavailableError
    return cls(errors, attempts=attempts)


def _provider_of(error: GatewayError) -> str:
    return getattr(error, "provider", "") or "gateway"
