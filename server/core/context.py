"""Per-call state that the transports hand to the core."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """A gateway key's limits; None means unlimited."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    monthly_budget_usd: float | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a gateway key (by id, never by secret) or the master key."""

    key_id: str
    name: str
    is_admin: bool = False
    limits: KeyLimits = field(default_factory=KeyLimits)


@dataclass(slots=True)
class CallContext:
    """One call's identity, deadline and request id, as the transport edge established them."""

    request_id: str
    principal: Principal
    # Absolute deadline on the ``time.monotonic()`` clock; None means the configured default.
    deadline: float | None = None
    transport: str = "http"
    # Set once the key's request rate has counted this call (``Gateway.admit_call``).
    admitted: bool = False
    # The caller's W3C ``traceparent`` (HTTP header or gRPC metadata), continued by traces.
    traceparent: str | None = None

    def remaining(self) -> float | None:
        """Seconds left until the deadline, or None when there is none."""
        if self.deadline is None:
            return None
        return self.deadline - time.monotonic()
