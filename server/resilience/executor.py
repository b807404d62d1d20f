"""Runs a plan: tries each candidate deployment in order until one answers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from switchboard.v1 import chat_pb2, types_pb2

from server.config import Config
from server.core.context import CallContext
from server.core.errors import AllAttemptsFailedError, GatewayError, UpstreamError
from server.providers.base import UpstreamCall
from server.routing.catalog import Deployment
from server.routing.router import Plan


@dataclass(slots=True)
class Execution:
    """What the executor learned while running a plan; filled in as it goes."""

    deployment: Deployment | None = None
    attempts: list[types_pb2.Attempt] = field(default_factory=list)


def _attempt(d: Deployment, outcome: int, started: float, error: GatewayError | None = None):
    return types_pb2.Attempt(
        provider=d.provider_name,
        model=d.model,
        deployment=d.id,
        outcome=outcome,  # type: ignore[arg-type]
        http_status=getattr(error, "status", 0) if error else 200,
        error_reason=error.reason if error else "",
        latency_ms=(time.monotonic() - started) * 1000.0,
    )


class Executor:
    """Fallback executor: next candidate on a retryable failure, stop on any other."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def _call(self, d: Deployment, ctx: CallContext) -> UpstreamCall:
        timeout = self.config.timeouts.attempt
        remaining = ctx.remaining()
        if remaining is not None:
            timeout = min(timeout, max(remaining, 0.001))
        return UpstreamCall(model=d.model, api_key=d.api_keys[0], timeout=timeout)

    async def chat(
        self, plan: Plan, request: chat_pb2.ChatRequest, ctx: CallContext, run: Execution
    ) -> chat_pb2.ChatResponse:
        errors: list[GatewayError] = []
        for d in plan.candidates:
            started = time.monotonic()
            try:
                response = await d.provider.chat(request, self._call(d, ctx))
            except GatewayError as exc:
                run.attempts.append(_attempt(d, _outcome(exc), started, exc))
                errors.append(exc)
                if not exc.retryable:
                    raise
                continue
            run.attempts.append(_attempt(d, types_pb2.ATTEMPT_OUTCOME_SUCCESS, started))
            run.deployment = d
            return response
        raise _exhausted(errors, run)

    async def stream(
        self, plan: Plan, request: chat_pb2.ChatRequest, ctx: CallContext, run: Execution
    ) -> AsyncIterator[chat_pb2.StreamChatResponse]:
        errors: list[GatewayError] = []
        for d in plan.candidates:
            started = time.monotonic()
            committed = False
            try:
                async for frame in d.provider.stream(request, self._call(d, ctx)):
                    if not committed:
                        committed = True
                        run.deployment = d
                        run.attempts.append(_attempt(d, types_pb2.ATTEMPT_OUTCOME_SUCCESS, started))
                    yield frame
                return
            except GatewayError as exc:
                if committed:
                    # After the first chunk went out there is no falling back.
                    raise
                run.attempts.append(_attempt(d, _outcome(exc), started, exc))
                errors.append(exc)
                if not exc.retryable:
                    raise
        raise _exhausted(errors, run)


def _exhausted(errors: list[GatewayError], run: Execution) -> GatewayError:
    if len(errors) == 1:
        return errors[0]
    return AllAttemptsFailedError(errors, attempts=run.attempts)


def _outcome(exc: GatewayError) -> int:
    from server.core import errors as e

    if isinstance(exc, e.UpstreamRateLimitedError):
        return types_pb2.ATTEMPT_OUTCOME_RATE_LIMITED
    if isinstance(exc, e.UpstreamTimeoutError):
        return types_pb2.ATTEMPT_OUTCOME_TIMEOUT
    if isinstance(exc, e.UpstreamConnectionError):
        return types_pb2.ATTEMPT_OUTCOME_CONNECTION_ERROR
    if isinstance(exc, e.UpstreamStreamError):
        return types_pb2.ATTEMPT_OUTCOME_STREAM_ERROR
    if isinstance(exc, e.UpstreamAuthError):
        return types_pb2.ATTEMPT_OUTCOME_AUTH_ERROR
    if isinstance(exc, e.UpstreamServerError):
        return types_pb2.ATTEMPT_OUTCOME_SERVER_ERROR
    if isinstance(exc, UpstreamError):
        return types_pb2.ATTEMPT_OUTCOME_CLIENT_ERROR
    return types_pb2.ATTEMPT_OUTCOME_CLIENT_ERROR
