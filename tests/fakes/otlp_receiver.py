"""A real OTLP trace receiver on loopback, for both protocols a gateway may export with.

Usage::

    async with OtlpReceiver("grpc") as otlp:          # or "http/protobuf"
        otlp.endpoint                                 # 'http://127.0.0.1:PORT' (the base URL)
        spans = await otlp.wait_for(lambda s: len(s) >= 3)
        spans[0].name, spans[0].attributes["gen_ai.request.model"], spans[0].resource

gRPC: ``opentelemetry.proto.collector.trace.v1.TraceService/Export`` on a grpc.aio server.
HTTP: ``POST /v1/traces`` with an ``ExportTraceServiceRequest`` body (application/x-protobuf),
on an aiohttp server. Every received span is kept, flattened with its resource's attributes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc.aio
from aiohttp import web
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2


def _value(v: common_pb2.AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(x) for x in v.array_value.values)
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind) if kind else None


def attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    status_code: int
    start_ns: int
    end_ns: int

    @property
    def is_server(self) -> bool:
        return self.kind == trace_pb2.Span.SPAN_KIND_SERVER

    @property
    def is_client(self) -> bool:
        return self.kind == trace_pb2.Span.SPAN_KIND_CLIENT


class OtlpReceiver:
    """An OTLP/gRPC or OTLP/HTTP trace collector (module docstring)."""

    def __init__(self, protocol: str = "grpc") -> None:
        assert protocol in ("grpc", "http/protobuf")
        self.protocol = protocol
        self.spans: list[ReceivedSpan] = []
        self.exports = 0
        self._changed = asyncio.Condition()
        self._grpc: grpc.aio.Server | None = None
        self._runner: web.AppRunner | None = None
        self.endpoint = ""

    async def __aenter__(self) -> OtlpReceiver:
        if self.protocol == "grpc":
            server = self._grpc = grpc.aio.server()
            trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Servicer(self), server)
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
        else:
            app = web.Application()
            app.router.add_post("/v1/traces", self._http_export)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.endpoint = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._grpc is not None:
            await self._grpc.stop(None)
        if self._runner is not None:
            await self._runner.cleanup()

    async def take(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        for rs in request.resource_spans:
            resource = attributes(rs.resource.attributes)
            for ss in rs.scope_spans:
                for s in ss.spans:
                    self.spans.append(
                        ReceivedSpan(
                            name=s.name,
                            kind=s.kind,
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex(),
                            attributes=attributes(s.attributes),
                            resource=resource,
                            status_code=s.status.code,
                            start_ns=s.start_time_unix_nano,
                            end_ns=s.end_time_unix_nano,
                        )
                    )
        self.exports += 1
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(
        self, enough: Callable[[list[ReceivedSpan]], bool], seconds: float = 15.0
    ) -> list[ReceivedSpan]:
        """The spans received once ``enough(spans)`` holds (AssertionError after ``seconds``)."""
        try:
            async with asyncio.timeout(seconds), self._changed:
                await self._changed.wait_for(lambda: enough(self.spans))
        except TimeoutError:
            raise AssertionError(f"the spans never matched; received: {self.spans}") from None
        return list(self.spans)

    async def _http_export(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        body = await request.read()
        await self.take(trace_service_pb2.ExportTraceServiceRequest.FromString(body))
        reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=reply, content_type="application/x-protobuf")


class _Servicer(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self.receiver = receiver

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: object
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        await self.receiver.take(request)
        return trace_service_pb2.ExportTraceServiceResponse()
