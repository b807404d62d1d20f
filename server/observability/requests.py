"""What the Gateway calls once per finished request: metrics plus one JSON log line."""

from __future__ import annotations

import logging
import time

from switchboard.v1 import types_pb2

from server.core.cache import CACHE_RESULTS
from server.core.errors import GatewayError
from server.core.records import RequestRecord
from server.core.secrets import scrub
from server.observability.logging import log_request
from server.observability.metrics import Metrics
from server.routing.router import STRATEGY_NAMES

_OUTCOME_NAMES = {
    value.number: value.name.removeprefix("ATTEMPT_OUTCOME_").lower()
    for value in types_pb2.AttemptOutcome.DESCRIPTOR.values
}
# Caller-supplied strings that reach a log line are cut to this length.
_MAX_FIELD = 200

_log = logging.getLogger(__name__)


class RequestObserver:
    """Records each finished request (chat or stream, success, failure or cancel): metrics and
    one log line (a ``RequestSink``)."""

    def __init__(self, metrics: Metrics | None = None, *, log_requests: bool = True) -> None:
        self.metrics = metrics
        self.log_requests = log_requests

    def finish(self, record: RequestRecord) -> None:
        """Never raises: observing must not change what the caller gets."""
        try:
            self._finish(record)
        except Exception:
            _log.exception("recording a finished request failed")

    def _finish(self, record: RequestRecord) -> None:
        run = record.run
        plan = record.plan
        usage = record.usage
        cost = record.cost
        error = record.error
        latency = time.monotonic() - run.started
        ttft = record.ttft
        outcome, status = record.outcome
        route = plan.route.name if plan is not None else ""
        d = run.deployment
        deployment = d.id if d is not None else ""
        cost_usd = cost.total_usd if cost is not None else 0.0
        if self.metrics is not None:
            if record.cache:
                self.metrics.cache(route, CACHE_RESULTS.get(record.cache, "other"))
            self.metrics.request(
                route=route,
                deployment=deployment,
                outcome=outcome,
                stream=record.stream,
                latency=latency,
                ttft=ttft,
                attempts=len(run.attempts),
                usage=usage,
                cost_usd=cost_usd,
            )
        if not self.log_requests:
            return
        ctx = record.ctx
        fields: dict[str, object] = {
            "msg": "request",
            "request_id": ctx.request_id,
            "transport": ctx.transport,
            "key_id": ctx.principal.key_id,
            "model": record.request.model[:_MAX_FIELD],
            "route": route,
            "strategy": STRATEGY_NAMES.get(plan.strategy, "") if plan is not None else "",
            "stream": record.stream,
            "outcome": outcome,
            "status": status,
            "provider": d.provider_name if d is not None else "",
            "upstream_model": d.model if d is not None else "",
            "deployment": deployment,
            "attempts": len(run.attempts),
            "cache": CACHE_RESULTS.get(record.cache, ""),
            "retries": run.retries,
            "fallbacks": run.fallbacks,
            "tried": [
                {
                    "deployment": a.deployment,
                    "outcome": _OUTCOME_NAMES.get(a.outcome, str(a.outcome)),
                    "status": a.http_status,
                    "ms": round(a.latency_ms, 2),
                }
                for a in run.attempts
            ],
            "latency_ms": round(latency * 1000.0, 3),
        }
        if ttft is not None:
            fields["ttft_ms"] = round(ttft * 1000.0, 3)
        if usage is not None:
            fields["input_tokens"] = usage.input_tokens
            fields["output_tokens"] = usage.output_tokens
            fields["cached_input_tokens"] = usage.cached_input_tokens
            fields["cache_write_tokens"] = usage.cache_write_input_tokens
        if cost is not None:
            fields["cost_usd"] = cost_usd
        if error is not None:
            fields["error_reason"] = outcome if outcome != "cancelled" else "CANCELLED"
            if isinstance(error, GatewayError):
                # Messages are written for the API caller: no keys, no raw upstream bodies.
                fields["error"] = scrub(error.message)[:500]
        log_request(fields)
