"""Request and response headers every API surface of the shim shares.

Request: ``x-switchboard-route`` (strategy override → ``ChatRequest.routing.strategy``),
``x-switchboard-cache`` (``skip`` or ``refresh`` → ``ChatRequest.routing.cache``) and
``x-switchboard-timeout`` (seconds for the whole request → the call's deadline). Response:
``x-switchboard-provider``, ``x-switchboard-model`` (the upstream model that answered),
``x-switchboard-attempts`` (tries, fallbacks included), ``x-switchboard-cache`` (``hit``,
``miss`` or ``skip``, where the response cache is on) and ``x-switchboard-cost-usd``; on
errors with a delay, ``Retry-After`` and ``retry-after-ms``.
"""

from __future__ import annotations

import math

from switchboard.v1 import chat_pb2, types_pb2

from server.core.cache import CACHE_RESULTS
from server.core.errors import GatewayError, InvalidRequestError
from server.http_shim.asgi import Headers, HttpRequest, header_value

_STRATEGY = {
    name: types_pb2.RouteStrategy.Value(f"ROUTE_STRATEGY_{name.upper()}")
    for name in ("ordered", "cheapest", "fastest", "available", "weighted")
}
_CACHE_MODES = {"skip": types_pb2.CACHE_MODE_SKIP, "refresh": types_pb2.CACHE_MODE_REFRESH}
_CACHE_HEADERS = {status: name.encode("ascii") for status, name in CACHE_RESULTS.items()}


def apply_route_header(
    req: HttpRequest, request: chat_pb2.ChatRequest | chat_pb2.EmbedRequest
) -> None:
    """Applies ``x-switchboard-route`` (a strategy override) and ``x-switchboard-cache`` to the
    parsed request."""
    cache = req.header(b"x-switchboard-cache")
    if cache is not None and isinstance(request, chat_pb2.ChatRequest):
        mode = _CACHE_MODES.get(cache.strip().lower())
        if mode is None:
            raise InvalidRequestError(
                "x-switchboard-cache must be skip or refresh", param="x-switchboard-cache"
            )
        request.routing.cache = mode
    strategy = req.header(b"x-switchboard-route")
    if strategy is not None:
        value = _STRATEGY.get(strategy.strip().lower())
        if value is None:
            raise InvalidRequestError(
                f"x-switchboard-route must be one of {', '.join(_STRATEGY)}",
                param="x-switchboard-route",
            )
        request.routing.strategy = value  # type: ignore[assignment]


def timeout_header(req: HttpRequest) -> float | None:
    """``x-switchboard-timeout`` in seconds, or None."""
    raw = req.header(b"x-switchboard-timeout")
    if raw is None:
        return None
    try:
        timeout = float(raw)
    except ValueError:
        timeout = math.nan
    if not (0 < timeout < math.inf):
        raise InvalidRequestError(
            "x-switchboard-timeout must be a positive number of seconds",
            param="x-switchboard-timeout",
        )
    return timeout


def route_headers(route: types_pb2.RouteInfo) -> Headers:
    """Where the request went: provider, upstream model and number of attempts."""
    headers = [
        (b"x-switchboard-provider", header_value(route.provider)),
        (b"x-switchboard-model", header_value(route.model)),
        (b"x-switchboard-attempts", str(len(route.attempts)).encode("ascii")),
    ]
    if route.cache:
        headers.append((b"x-switchboard-cache", _CACHE_HEADERS[route.cache]))
    return headers


def usd_header(value: float) -> bytes:
    """A dollar amount as a header value (plain decimal, no exponent)."""
    return (f"{value:.10f}".rstrip("0").rstrip(".") or "0").encode("ascii")


def error_headers(exc: GatewayError) -> Headers:
    """`Retry-After` (whole seconds, rounded up) and `retry-after-ms` when the error has a delay."""
    if exc.retry_after is None or exc.retry_after < 0:
        return []
    seconds = exc.retry_after
    return [
        (b"retry-after", str(max(math.ceil(seconds), 0)).encode()),
        (b"retry-after-ms", str(round(seconds * 1000)).encode()),
    ]
