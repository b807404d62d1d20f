"""OpenTelemetry traces of requests and their upstream attempts, exported over OTLP.

Off by default: ``build_tracing`` returns None and the request path only checks for None (no
SDK object is made or touched). On when the config file's ``tracing.enabled`` is true or the
standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set (and
``OTEL_SDK_DISABLED`` is not true); the exporter protocol is ``tracing.protocol``, else
``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` / ``OTEL_EXPORTER_OTLP_PROTOCOL``, else
``http/protobuf`` (the specification's default); the service name ``tracing.service_name``,
else ``OTEL_SERVICE_NAME``, else ``switchboard``. Spans are batched (``BatchSpanProcessor``,
whose ``OTEL_BSP_*`` variables apply) and exported from its thread, off the event loop; the
standard ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` choose which requests are traced
(default: all, and every request a traced caller sends).

One span per request (SERVER kind; ``chat <model>`` or ``embeddings <model>``), a child of the
caller's trace when it sent a W3C ``traceparent`` (HTTP header or gRPC metadata), and one
CLIENT child per upstream attempt, whose ``traceparent`` goes on the upstream request
(``providers.http_client.upstream_traceparent``). Attributes follow the OpenTelemetry GenAI
semantic conventions (``gen_ai.*``) plus Switchboard's own (``switchboard.*``). Content capture
is not implemented: no prompt or completion text, no key secret, ever reaches a span; the key
is named by its id.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from switchboard.v1 import chat_pb2, types_pb2

from server.config import TracingConfig
from server.core.cache import CACHE_RESULTS
from server.core.records import Plan, RequestRecord
from server.routing.catalog import Deployment
from server.routing.router import STRATEGY_NAMES

log = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME = "switchboard"
_PROPAGATOR = TraceContextTextMapPropagator()
_FINISH = {
    v.number: v.name.removeprefix("FINISH_REASON_").lower()
    for v in types_pb2.FinishReason.DESCRIPTOR.values
}
_OUTCOME = {
    v.number: v.name.removeprefix("ATTEMPT_OUTCOME_").lower()
    for v in types_pb2.AttemptOutcome.DESCRIPTOR.values
}


def tracing_settings(config: TracingConfig, env: Mapping[str, str]) -> dict[str, str] | None:
    """``{"protocol", "endpoint", "service_name"}`` when tracing is on, else None (an empty
    endpoint leaves it to the exporter's own ``OTEL_*`` variables)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    from_env = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if not (config.enabled or config.endpoint or from_env):
        return None
    protocol = (
        config.protocol
        or env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if protocol not in ("grpc", "http/protobuf"):
        raise ValueError(f"OTLP protocol {protocol!r}: use grpc or http/protobuf")
    return {
        "protocol": protocol,
        "endpoint": config.endpoint or "",
        "service_name": config.service_name or env.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME,
    }


def _exporter(protocol: str, endpoint: str) -> SpanExporter:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        return GrpcExporter(endpoint=endpoint or None)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    # As for OTEL_EXPORTER_OTLP_ENDPOINT, the configured endpoint is the collector's base URL.
    url = endpoint.rstrip("/") + "/v1/traces" if endpoint else None
    return HttpExporter(endpoint=url)


def build_tracing(config: TracingConfig, env: Mapping[str, str] = os.environ) -> Tracing | None:
    """The process's tracing, or None when it is off (module docstring)."""
    settings = tracing_settings(config, env)
    if settings is None:
        return None
    provider = TracerProvider(resource=Resource.create({"service.name": settings["service_name"]}))
    provider.add_span_processor(
        BatchSpanProcessor(_exporter(settings["protocol"], settings["endpoint"]))
    )
    log.info(
        "tracing on: OTLP %s to %s",
        settings["protocol"],
        settings["endpoint"] or "the OTEL_EXPORTER_OTLP_* endpoint",
    )
    return Tracing(provider)


def _traceparent(span: Span) -> str:
    c = span.get_span_context()
    return f"00-{c.trace_id:032x}-{c.span_id:016x}-{int(c.trace_flags):02x}"


class Tracing:
    """Starts and ends the spans of requests and attempts; a ``RequestSink`` for the former."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self._tracer = provider.get_tracer("switchboard")

    # --- requests (the Gateway) ------------------------------------------------------------

    def start(self, record: RequestRecord) -> None:
        """Opens the request's span (a child of the caller's ``traceparent``, if any)."""
        request = record.request
        ctx = record.ctx
        operation = _operation(request)
        parent = None
        if ctx.traceparent:
            parent = _PROPAGATOR.extract({"traceparent": ctx.traceparent})
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.request.model": request.model,
            "switchboard.request_id": ctx.request_id,
            "switchboard.key_id": ctx.principal.key_id,
            "switchboard.transport": ctx.transport,
            "switchboard.stream": record.stream,
        }
        if isinstance(request, chat_pb2.ChatRequest):
            _sampling(request, attributes)
        record.run.span = self._tracer.start_span(
            f"{operation} {request.model}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
        )

    def finish(self, record: RequestRecord) -> None:
        """Ends the request's span with what the request came to (never raises)."""
        span = record.run.span
        if not isinstance(span, Span):
            return
        record.run.span = None
        try:
            if span.is_recording():
                # Not sampled (OTEL_TRACES_SAMPLER): nothing to describe.
                _finish(span, record)
        except Exception:
            log.exception("ending a request span failed")
        finally:
            span.end()

    # --- attempts (the Executor) -----------------------------------------------------------

    def attempt(self, parent: object, d: Deployment, plan: Plan) -> tuple[Span, str]:
        """A CLIENT span for one upstream attempt under the request's span, and the
        ``traceparent`` the upstream request carries."""
        context = trace.set_span_in_context(parent) if isinstance(parent, Span) else None
        operation = _operation(plan.request)
        span = self._tracer.start_span(
            f"{operation} {d.model}",
            context=context,
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": operation,
                "gen_ai.provider.name": d.provider_name,
                "gen_ai.request.model": d.model,
                "switchboard.deployment": d.id,
            },
        )
        return span, _traceparent(span)

    @staticmethod
    def end_attempt(
        span: object, attempt: types_pb2.Attempt | None, retry_delay: float | None = None
    ) -> None:
        """Ends an attempt span with its outcome (None: ended without one, e.g. cancelled)."""
        if not isinstance(span, Span):
            return
        if not span.is_recording():
            span.end()
            return
        if attempt is None:
            span.set_attribute("switchboard.attempt.outcome", "cancelled")
        else:
            outcome = _OUTCOME.get(attempt.outcome, str(attempt.outcome))
            span.set_attribute("switchboard.attempt.outcome", outcome)
            if attempt.http_status:
                span.set_attribute("http.response.status_code", attempt.http_status)
            if attempt.outcome == types_pb2.ATTEMPT_OUTCOME_SUCCESS:
                span.set_attribute("gen_ai.response.model", attempt.model)
            else:
                span.set_attribute("error.type", attempt.error_reason or outcome)
                span.set_status(Status(StatusCode.ERROR))
        if retry_delay is not None:
            span.set_attribute("switchboard.retry_delay_s", retry_delay)
        span.end()

    def shutdown(self) -> None:
        """Exports what is still buffered and stops the exporter (blocking: off the loop)."""
        self.provider.shutdown()


def _operation(request: object) -> str:
    return "embeddings" if isinstance(request, chat_pb2.EmbedRequest) else "chat"


def _sampling(request: chat_pb2.ChatRequest, attributes: dict[str, Any]) -> None:
    if request.HasField("temperature"):
        attributes["gen_ai.request.temperature"] = request.temperature
    if request.HasField("top_p"):
        attributes["gen_ai.request.top_p"] = request.top_p
    if request.HasField("max_tokens"):
        attributes["gen_ai.request.max_tokens"] = request.max_tokens
    if request.HasField("seed"):
        attributes["gen_ai.request.seed"] = request.seed


def _finish(span: Span, record: RequestRecord) -> None:
    run = record.run
    plan = record.plan
    d = run.deployment
    attributes: dict[str, Any] = {
        "gen_ai.response.id": record.ctx.request_id,
        "switchboard.attempts": len(run.attempts),
        "switchboard.retries": run.retries,
        "switchboard.fallbacks": run.fallbacks,
    }
    if plan is not None:
        attributes["switchboard.route"] = plan.route.name
        attributes["switchboard.strategy"] = STRATEGY_NAMES.get(plan.strategy, "")
    if d is not None:
        attributes["gen_ai.provider.name"] = d.provider_name
        attributes["gen_ai.response.model"] = d.model
        attributes["switchboard.deployment"] = d.id
    usage = record.usage
    if usage is not None:
        attributes["gen_ai.usage.input_tokens"] = usage.input_tokens
        attributes["gen_ai.usage.output_tokens"] = usage.output_tokens
    if record.cost is not None:
        attributes["switchboard.cost_usd"] = record.cost.total_usd
    if record.finish_reason:
        attributes["gen_ai.response.finish_reasons"] = (_FINISH[record.finish_reason],)
    if record.cache:
        attributes["switchboard.cache"] = CACHE_RESULTS.get(record.cache, "")
    outcome, status = record.outcome
    attributes["switchboard.outcome"] = outcome
    if record.error is not None:
        attributes["error.type"] = outcome
        attributes["http.response.status_code"] = status
        span.set_status(Status(StatusCode.ERROR))
    span.set_attributes(attributes)
