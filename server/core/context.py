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
    """Who is calling: a gateway key (by id, never by secret) or the master key.

    Admission applies the key's ``limits`` and, for a key in a project, the project's
    ``project_limits`` as well (both must admit a request, so the tighter wins); the project's
    rate, concurrency and budget state is kept under ``project_name(project_id)``."""

    key_id: str
    name: str
    is_admin: bool = False
    limits: KeyLimits = field(default_factory=KeyLimits)
    # Environment label (dev, staging, prod, ...); "" for a key created without one.
    env: str = ""
    project_id: str | None = None
    # The project's shared limits; None when the key has no project.
    project_limits: KeyLimits | None = None
    # Model names (as the caller sends them, or the route they resolve to; `*` globs) this key
    # may use; empty means any.
    allowed_models: tuple[str, ...] = ()
    # Requests of this key in flight at once; None means unlimited.
    max_concurrent: int | None = None
    # Unix seconds after which the key stops working; None means never. Key stores refuse
    # an expired key at lookup; this copy is for display and error messages.
    expires_at: float | None = None


_PROJECT = "project:"


def project_name(project_id: str) -> str:
    """The name a project's limiter, concurrency and budget state is kept under (key ids start
    with ``key_``, so the two never collide)."""
    return _PROJECT + project_id


def limit_subject(name: str) -> tuple[str, str]:
    """For a limiter or budget name: the ``QuotaViolation`` subject (``key:<id>`` or
    ``project:<id>``) and the words an error message names it by."""
    if name.startswith(_PROJECT):
        return name, f"project {name[len(_PROJECT) :]}"
    return f"key:{name}", f"gateway key {name}"


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
    # Names (key id, ``project:<id>``) whose concurrent-request slot this call holds; the
    # usage policy takes them at admission and gives them back once when the call ends.
    slots: tuple[str, ...] = ()

    def remaining(self) -> float | None:
        """Seconds left until the deadline, or None when there is none."""
        if self.deadline is None:
            return None
        return self.deadline - time.monotonic()
