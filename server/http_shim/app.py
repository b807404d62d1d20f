"""The shim's ASGI application: a static route table over the API surfaces.

A raw ASGI 3 app (no framework; DESIGN.md "Speed"). Every chat surface is one
``endpoint.ChatEndpoint`` over its ``Dialect`` (OpenAI chat completions, Anthropic messages,
OpenAI Responses, and embeddings, whose endpoint calls ``Gateway.embed``);
``create_app`` joins them, the models endpoints, ``/healthz`` and ``/metrics`` into one dict
looked up once per request. Served by uvicorn in the same event loop as the gRPC server
(``server/app.py``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import orjson

from server.config import LimitsConfig
from server.core.service import Gateway
from server.http_shim.anthropic_dialect import MAX_BODY as ANTHROPIC_MAX_BODY
from server.http_shim.anthropic_dialect import AnthropicDialect, MessagesExtras
from server.http_shim.asgi import (
    BODY_TIMEOUT,
    ClientDisconnected,
    HttpRequest,
    Receive,
    Scope,
    Send,
)
from server.http_shim.endpoint import INTERNAL_MESSAGE, ChatEndpoint
from server.http_shim.openai_dialect import ModelsApi, OpenAIDialect
from server.http_shim.openai_embeddings import EmbeddingsDialect
from server.http_shim.openai_errors import openai_error
from server.http_shim.responses_dialect import ResponsesApi, ResponsesDialect

log = logging.getLogger("switchboard.http")

# A handler sends its whole response and returns the status it sent (for metrics and logs).
Handler = Callable[[HttpRequest], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint: method, path and handler. A path ending in ``/*`` matches everything
    under it (``/v1/models/*`` for ids that contain slashes); exact paths win."""

    method: str
    path: str
    handler: Handler


class HttpMetrics(Protocol):
    """What the shim reports to a metrics backend (Prometheus, ``/metrics``)."""

    def observe_http(self, method: str, route: str, status: int, seconds: float) -> None:
        """One finished request; ``route`` is the route's path, never the raw URL."""
        ...

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its content type, for ``GET /metrics``."""
        ...


_HEALTH = orjson.dumps({"status": "ok"})
_INTERNAL = orjson.dumps({"error": openai_error(500, INTERNAL_MESSAGE, code="internal_error")})


class ShimApp:
    """ASGI callable dispatching on (path, method) through a dict built once."""

    def __init__(self, routes: Iterable[Route], metrics: HttpMetrics | None = None) -> None:
        self._table: dict[str, dict[str, Handler]] = {}
        # (prefix, methods) for `/*` routes; consulted only when no exact path matches.
        self._prefixes: list[tuple[str, dict[str, Handler]]] = []
        for route in routes:
            methods = self._table.get(route.path)
            if methods is None:
                methods = self._table[route.path] = {}
                if route.path.endswith("/*"):
                    self._prefixes.append((route.path[:-1], methods))
            if route.method in methods:
                raise ValueError(f"duplicate route {route.method} {route.path}")
            methods[route.method] = route.handler
        self.metrics = metrics

    @property
    def routes(self) -> list[tuple[str, str]]:
        """(method, path) of every route, for docs and tests."""
        return [(m, p) for p, methods in self._table.items() for m in methods]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(HttpRequest(scope, receive, send))
        elif kind == "lifespan":
            await _lifespan(receive, send)
        # websocket: not served; returning without accepting makes the server close it.

    async def _http(self, req: HttpRequest) -> None:
        metrics = self.metrics
        started = time.perf_counter() if metrics is not None else 0.0
        label = req.path
        methods = self._table.get(label)
        if methods is None:
            for prefix, prefixed in self._prefixes:
                if req.path.startswith(prefix) and len(req.path) > len(prefix):
                    methods, label = prefixed, prefix + "*"
                    break
        handler = None
        if methods is not None:
            handler = methods.get(req.method)
            if handler is None and req.method == "HEAD":
                # HEAD is GET without the body (RFC 9110 9.3.2); the server drops the body.
                handler = methods.get("GET")
        status = 500
        try:
            if handler is not None:
                status = await handler(req)
            elif methods is not None:
                status = await _not_allowed(req, methods)
            else:
                status = await _not_found(req)
        except ClientDisconnected:
            status = 499
        except Exception:
            # Never a trace to the client; the log names the request so it can be found.
            log.exception(
                "unhandled error in %s %s (request %s)", req.method, req.path, req.request_id
            )
            await _internal_error(req)
        if metrics is not None:
            route = label if methods is not None else "unmatched"
            metrics.observe_http(req.method, route, status, time.perf_counter() - started)


async def _internal_error(req: HttpRequest) -> None:
    # RuntimeError: the response had already started; the server then closes the connection.
    with contextlib.suppress(RuntimeError):
        await req.respond_json(500, _INTERNAL)


async def _not_found(req: HttpRequest) -> int:
    body = orjson.dumps(
        {"error": openai_error(404, f"Invalid URL ({req.method} {req.path})", code="unknown_url")}
    )
    await req.respond_json(404, body)
    return 404


async def _not_allowed(req: HttpRequest, methods: dict[str, Handler]) -> int:
    allowed = ", ".join(sorted({*methods, "HEAD"} if "GET" in methods else methods))
    body = orjson.dumps(
        {
            "error": openai_error(
                405,
                f"Method {req.method} is not allowed on {req.path}; use {allowed}.",
                code="method_not_allowed",
            )
        }
    )
    await req.respond_json(405, body, [(b"allow", allowed.encode("ascii"))])
    return 405


async def _lifespan(receive: Receive, send: Send) -> None:
    # Startup and shutdown belong to server/app.py; the shim only acknowledges them.
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _health_route(problems: Callable[[], list[str]] | None, worker: int | None) -> Route:
    """``/healthz``: 200 while the process serves. ``{"status": "ok"}``, or ``"degraded"``
    with the problems when a shared store cannot be reached or the ledger has rows waiting
    (still 200: requests the stores need not check are served, and a load balancer must not
    pull every replica at once because their one Redis is down)."""

    # A worker of `serve --workers N` says which one answered.
    ok = _HEALTH if worker is None else orjson.dumps({"status": "ok", "worker": worker})
    extra = {} if worker is None else {"worker": worker}

    async def handler(req: HttpRequest) -> int:
        found = problems() if problems is not None else []
        if not found:
            await req.respond_json(200, ok)
        else:
            body = {"status": "degraded", "problems": found, **extra}
            await req.respond_json(200, orjson.dumps(body))
        return 200

    return Route("GET", "/healthz", handler)


def _metrics_route(metrics: HttpMetrics) -> Route:
    async def handler(req: HttpRequest) -> int:
        body, content_type = metrics.render()
        headers = req.base_headers()
        headers.append((b"content-type", content_type.encode("latin-1")))
        await req.respond(200, body, headers)
        return 200

    return Route("GET", "/metrics", handler)


def api_routes(
    gateway: Gateway, limits: LimitsConfig | None = None, body_timeout: float = BODY_TIMEOUT
) -> list[Route]:
    """Every API surface: the chat dialects and the models endpoints. The OpenAI ones are also
    served without the `/v1` prefix, as some clients send them."""
    limits = limits or LimitsConfig()
    bounds = gateway.bounds
    openai_dialect = OpenAIDialect(limits.body_limit("openai"), bounds)
    anthropic = AnthropicDialect(limits.body_bytes.get("anthropic", ANTHROPIC_MAX_BODY), bounds)
    openai = ChatEndpoint(gateway, openai_dialect, body_timeout)
    models = ModelsApi(gateway)
    embeddings = ChatEndpoint(
        gateway, EmbeddingsDialect(limits.body_limit("openai")), body_timeout, call=gateway.embed
    )
    responses = ChatEndpoint(
        gateway, ResponsesDialect(limits.body_limit("responses"), bounds), body_timeout
    )
    stored = ResponsesApi(gateway)
    extras = MessagesExtras(gateway, anthropic)
    routes = [
        Route("POST", "/v1/messages", ChatEndpoint(gateway, anthropic, body_timeout)),
        Route("POST", "/v1/messages/count_tokens", extras.count_tokens),
    ]
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        routes.append(Route(method, "/v1/messages/*", extras.not_found))
    for prefix in ("/v1", ""):
        routes.append(Route("POST", f"{prefix}/chat/completions", openai))
        routes.append(Route("POST", f"{prefix}/embeddings", embeddings))
        routes.append(Route("POST", f"{prefix}/responses", responses))
        routes.append(Route("GET", f"{prefix}/responses/*", stored.get))
        routes.append(Route("DELETE", f"{prefix}/responses/*", stored.delete))
        routes.append(Route("GET", f"{prefix}/models", models.list_models))
        routes.append(Route("GET", f"{prefix}/models/*", models.retrieve_model))
    return routes


def create_app(
    gateway: Gateway,
    *,
    metrics: HttpMetrics | None = None,
    extra_routes: Iterable[Route] = (),
    limits: LimitsConfig | None = None,
    body_timeout: float = BODY_TIMEOUT,
    problems: Callable[[], list[str]] | None = None,
    worker: int | None = None,
) -> ShimApp:
    """The shim's ASGI app: the API surfaces, ``/healthz`` (degraded when ``problems`` lists
    any), and ``/metrics`` when a metrics hook is given."""
    api = api_routes(gateway, limits, body_timeout)
    routes = [*api, _health_route(problems, worker), *extra_routes]
    if metrics is not None:
        routes.append(_metrics_route(metrics))
    return ShimApp(routes, metrics)
