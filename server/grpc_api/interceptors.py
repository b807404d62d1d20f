"""The gRPC edge: request id, authentication and error encoding for every switchboard RPC.

One server interceptor (grpc examples/python ``auth`` and ``interceptors``) reads
``authorization: Bearer <key>``, ``x-request-id`` and W3C ``traceparent`` from the call
metadata, authenticates via ``Gateway.authenticate``, puts the request id, principal, key and
traceparent in contextvars (the interceptor runs in the call's own task, as its handler does),
and hands grpc the method's handler wrapped so that
``x-request-id`` goes back as trailing metadata (on every outcome; an explicit
initial-metadata send costs an extra write per call, measured ~0.1 ms of server CPU, and
streams carry the id in their start frame anyway),
``GatewayError`` becomes a rich ``google.rpc.Status`` and anything unexpected becomes a generic
INTERNAL (logged with the request id). Health and reflection RPCs need no key. The wrapped
handler reads the call's values from those contextvars, so it is built once per method rather
than per call.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import grpc
import grpc.aio

from server.core.context import Principal
from server.core.errors import GatewayError, InvalidRequestError
from server.core.ids import new_request_id
from server.core.service import Gateway, bearer_token
from server.grpc_api.status import REQUEST_ID_KEY, internal_grpc_status, to_grpc_status

log = logging.getLogger(__name__)

# Standard services that answer without a key (load balancers and grpcurl call them bare).
PUBLIC_METHOD_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
_MAX_REQUEST_ID = 128

_request_id: ContextVar[str] = ContextVar("switchboard_request_id", default="")
_principal: ContextVar[Principal | None] = ContextVar("switchboard_principal", default=None)
# The key the call authenticated with, for RPCs that must check it again (Converse, per turn).
_token: ContextVar[str] = ContextVar("switchboard_token", default="")
# The caller's W3C traceparent, continued by the request's trace (observability.tracing).
_traceparent: ContextVar[str | None] = ContextVar("switchboard_traceparent", default=None)


def current_request_id() -> str:
    """The request id of the RPC running in this task."""
    return _request_id.get()


def current_token() -> str:
    """The gateway key of the RPC running in this task (never logged)."""
    return _token.get()


def current_traceparent() -> str | None:
    """The W3C traceparent the RPC running in this task came with, if any."""
    return _traceparent.get()


def current_principal() -> Principal:
    """The authenticated caller of the RPC running in this task."""
    principal = _principal.get()
    if principal is None:
        raise RuntimeError("no authenticated principal: is the AuthInterceptor installed?")
    return principal


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates each call, assigns its request id, and encodes its errors."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        # Per method: the handler grpc resolved and its wrapped twin, built on the first call.
        self._edges: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or method.startswith(PUBLIC_METHOD_PREFIXES):
            return handler
        authorization: str | None = None
        client_request_id: str | bytes | None = None
        traceparent: str | None = None
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization" and isinstance(value, str):
                authorization = value
            elif key == REQUEST_ID_KEY:
                client_request_id = value
            elif key == "traceparent" and isinstance(value, str):
                traceparent = value
        request_id = _usable_request_id(client_request_id) or new_request_id()
        token = bearer_token(authorization)
        try:
            principal = await self._gateway.authenticate(token)
        except GatewayError as exc:
            status = to_grpc_status(exc, request_id)
            return _replace(handler, _refuse(status, bool(handler.request_streaming)))
        _request_id.set(request_id)
        _principal.set(principal)
        _token.set(token or "")
        _traceparent.set(traceparent)
        edge = self._edges.get(method)
        if edge is None or edge[0] is not handler:
            edge = (handler, _replace(handler, _edge(self._gateway, handler, method)))
            self._edges[method] = edge
        return edge[1]


async def abort(context: grpc.aio.ServicerContext, status: grpc.Status) -> None:
    """Ends the call with a rich status (``abort_with_status``; raises grpc.aio.AbortError)."""
    await context.abort(status.code, status.details, status.trailing_metadata)


def _usable_request_id(value: object) -> str | None:
    # A caller's id is echoed into logs and metadata: accept only short printable tokens.
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_REQUEST_ID:
        return None
    return value if value.isascii() and value.isprintable() and " " not in value else None


def _behaviour(handler: grpc.RpcMethodHandler) -> Callable[..., Any]:
    return (
        handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream
    )


class _Malformed:
    """What a request that is not a valid protobuf message decodes to (instead of raising,
    which grpcio would answer with UNKNOWN and a logged traceback per request)."""

    __slots__ = ()


_MALFORMED = _Malformed()
_MALFORMED_MESSAGE = "The request is not a valid protobuf message for this method."


def _safe(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """``deserializer`` that returns ``_MALFORMED`` for bytes it cannot decode (bad UTF-8,
    truncated fields, nesting beyond protobuf's recursion limit, random bytes)."""
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:
            return _MALFORMED

    return deserialize


def _malformed() -> InvalidRequestError:
    log.info("refused a request that is not a valid protobuf message")
    return InvalidRequestError(_MALFORMED_MESSAGE)


def _refuse_malformed(gateway: Gateway) -> None:
    """Records a malformed request of a known key, then raises its INVALID_ARGUMENT."""
    error = _malformed()
    context = gateway.new_context(
        current_principal(), transport="grpc", request_id=_request_id.get()
    )
    gateway.refused(context, error)
    raise error


async def _checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """A client stream whose malformed messages raise INVALID_ARGUMENT where they are read."""
    async for request in requests:
        if request is _MALFORMED:
            raise _malformed()
        yield request


def _replace(handler: grpc.RpcMethodHandler, behaviour: Callable[..., Any]) -> Any:
    kwargs = {
        "request_deserializer": _safe(handler.request_deserializer),
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(behaviour, **kwargs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(behaviour, **kwargs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(behaviour, **kwargs)
    return grpc.stream_stream_rpc_method_handler(behaviour, **kwargs)


# How long a refused client-streaming call waits for the client's first message.
_FIRST_MESSAGE_WAIT = 1.0


def _refuse(status: grpc.Status, streaming_requests: bool) -> Callable[..., Awaitable[None]]:
    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
        if streaming_requests:
            # An asyncio client whose write completes after the status arrives reports
            # INTERNAL "Internal error from Core" instead of the status (grpc/grpc#36066;
            # 62 of 1,000 concurrent refused Converse calls here). The client writes its
            # start first, so taking that message before refusing lets the write land.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(anext(aiter(request), None), _FIRST_MESSAGE_WAIT)
        await abort(context, status)

    return refuse


def _edge(gateway: Gateway, handler: grpc.RpcMethodHandler, method: str) -> Callable[..., Any]:
    """``handler``'s behaviour at the edge: the request-id trailer, malformed requests refused,
    errors encoded. The call's own values come from the contextvars the interceptor set."""
    inner = _behaviour(handler)
    streaming_requests = bool(handler.request_streaming)

    async def fail(context: grpc.aio.ServicerContext, exc: Exception) -> None:
        request_id = _request_id.get()
        if isinstance(exc, GatewayError):
            await abort(context, to_grpc_status(exc, request_id))
        log.error("unexpected error in %s request_id=%s", method, request_id, exc_info=exc)
        await abort(context, internal_grpc_status(request_id))

    if inspect.isasyncgenfunction(inner):

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            context.set_trailing_metadata(((REQUEST_ID_KEY, _request_id.get()),))
            try:
                if request is _MALFORMED:
                    _refuse_malformed(gateway)
                if streaming_requests:
                    request = _checked(request)
                async for item in inner(request, context):
                    yield item
            except grpc.aio.AbortError:
                raise
            except Exception as exc:  # CancelledError is a BaseException and passes through
                await fail(context, exc)

        return stream

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        context.set_trailing_metadata(((REQUEST_ID_KEY, _request_id.get()),))
        try:
            if request is _MALFORMED:
                _refuse_malformed(gateway)
            if streaming_requests:
                request = _checked(request)
            return await inner(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # CancelledError is a BaseException and passes through
            await fail(context, exc)

    return unary
