"""Executor-side reasons a candidate was not tried; leaves of ``server.core.errors``' tree."""

from __future__ import annotations

from server.core.errors import UpstreamConnectionError, UpstreamRateLimitedError


class CircuitOpenError(UpstreamConnectionError):
    """The deployment's (or every pool key's) circuit is open: skipped without a call."""

    reason = "CIRCUIT_OPEN"


class DeploymentBusyError(UpstreamRateLimitedError):
    """The deployment is at its configured max_concurrency: skipped without a call."""

    reason = "DEPLOYMENT_BUSY"


class KeysCoolingError(UpstreamRateLimitedError):
    """Every key of the deployment's pool is cooling down after a 429: skipped without a call."""

    reason = "UPSTREAM_RATE_LIMITED"
