"""The one service object both transports call (DESIGN.md "One request's way").

transport edge → ``Gateway`` (validate, policy, route, execute, cost, settle) → transport edge.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import AsyncIterator
from typing import Protocol

from switchboard.v1 import chat_pb2

from server.core.context import CallContext, Principal
from server.core.errors import PermissionDeniedError, UnauthenticatedError
from server.core.ids import new_request_id
from server.core.validate import validate_chat_request
from server.observability.requests import RequestObserver
from server.policy.admission import Reservation, UsagePolicy
from server.resilience.executor import Execution, Executor
from server.routing.pricing import compute_cost
from server.routing.router import Plan, Router

ADMIN = Principal(key_id="master", name="master", is_admin=True)


class KeyLookup(Protocol):
    """Finds the principal for a gateway key secret (``server.policy.keys.KeyStore``)."""

    def lookup(self, secret: str) -> Principal | None: ...


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` value (a bare token is accepted too)."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if token and scheme.lower() == "bearer":
        return token.strip() or None
    return None if token else scheme or None


class Gateway:
    """Chat, streaming and model listing over routing, resilience and policy."""

    def __init__(
        self,
        router: Router,
        executor: Executor,
        keys: KeyLookup,
        master_key: str,
        default_timeout: float,
        *,
        observer: RequestObserver | None = None,
        policy: UsagePolicy | None = None,
    ) -> None:
        self.router = router
        self.executor = executor
        self.keys = keys
        self._master_key = master_key.encode()
        self.default_timeout = default_timeout
        # Metrics and the one-line-per-request log (server.observability).
        self.observer = observer or RequestObserver()
        # Rate limits, budgets and the usage ledger (server.policy.admission); the default
        # enforces limits in memory and records nowhere.
        self.policy = policy or UsagePolicy()

    # --- edge helpers ---------------------------------------------------------------------

    def authenticate(self, token: str | None) -> Principal:
        """The caller behind a gateway key (or the master key); 401 otherwise."""
        if not token:
            raise UnauthenticatedError("Missing gateway key: send `Authorization: Bearer <key>`.")
        if hmac.compare_digest(token.encode(), self._master_key):
            return ADMIN
        principal = self.keys.lookup(token)
        if principal is None:
            raise UnauthenticatedError("Invalid or revoked gateway key.")
        return principal

    def new_context(
        self,
        principal: Principal,
        *,
        transport: str,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> CallContext:
        """A call context whose deadline is the client's timeout or the configured default."""
        budget = self.default_timeout if timeout is None else min(timeout, self.default_timeout)
        return CallContext(
            request_id=request_id or new_request_id(),
            principal=principal,
            deadline=time.monotonic() + budget,
            transport=transport,
        )

    # --- chat -----------------------------------------------------------------------------

    def _plan(self, request: chat_pb2.ChatRequest, *, stream: bool = False) -> Plan:
        validate_chat_request(request)
        return self.router.plan(request, stream=stream)

    async def chat(self, request: chat_pb2.ChatRequest, ctx: CallContext) -> chat_pb2.ChatResponse:
        """One completion, with cost and route info filled in."""
        run = Execution()
        plan: Plan | None = None
        reserved: Reservation | None = None
        response: chat_pb2.ChatResponse | None = None
        error: BaseException | None = None
        try:
            plan = self._plan(request)
            reserved = self.policy.admit(ctx, request, plan)
            response = await self.executor.chat(plan, request, ctx, run)
            deployment = run.deployment
            assert deployment is not None
            response.id = ctx.request_id
            response.model = request.model
            response.created = int(time.time())
            response.cost.CopyFrom(compute_cost(response.usage, deployment.price))
            _fill_route(response.route, plan, run)
            return response
        except BaseException as exc:
            error = exc
            raise
        finally:
            usage = response.usage if response is not None and error is None else None
            cost = response.cost if response is not None and error is None else None
            self.observer.finish(
                ctx, request, plan, run, stream=False, usage=usage, cost=cost, error=error
            )
            self.policy.settle(
                reserved, ctx, request, plan, run, stream=False, usage=usage, cost=cost, error=error
            )

    async def stream_chat(
        self, request: chat_pb2.ChatRequest, ctx: CallContext
    ) -> AsyncIterator[chat_pb2.StreamChatResponse]:
        """start frame (once committed to a deployment), deltas, then one end frame."""
        run = Execution()
        plan: Plan | None = None
        reserved: Reservation | None = None
        end: chat_pb2.StreamEnd | None = None
        error: BaseException | None = None
        try:
            plan = self._plan(request, stream=True)
            reserved = self.policy.admit(ctx, request, plan)
            created = int(time.time())
            started = False
            async for frame in self.executor.stream(plan, request, ctx, run):
                if not started:
                    started = True
                    start = chat_pb2.StreamChatResponse()
                    start.start.id = ctx.request_id
                    start.start.model = request.model
                    start.start.created = created
                    _fill_route(start.start.route, plan, run)
                    yield start
                if frame.WhichOneof("frame") == "end":
                    end = frame.end
                    end.id = ctx.request_id
                    end.model = request.model
                    end.created = created
                    assert run.deployment is not None
                    end.cost.CopyFrom(compute_cost(end.usage, run.deployment.price))
                    _fill_route(end.route, plan, run)
                yield frame
        except BaseException as exc:
            # Transports close the stream right after the end frame: that is a success.
            if not (isinstance(exc, GeneratorExit) and end is not None):
                error = exc
            raise
        finally:
            usage = end.usage if end is not None else None
            cost = end.cost if end is not None else None
            self.observer.finish(
                ctx, request, plan, run, stream=True, usage=usage, cost=cost, error=error
            )
            self.policy.settle(
                reserved, ctx, request, plan, run, stream=True, usage=usage, cost=cost, error=error
            )

    async def list_models(self, ctx: CallContext) -> chat_pb2.ListModelsResponse:
        """Every route and deployment this gateway can serve."""
        return chat_pb2.ListModelsResponse(models=self.router.catalog.list_models())

    async def get_model(self, ctx: CallContext, model: str) -> chat_pb2.Model:
        """One model or route by name; ModelNotFoundError (404) when nothing serves it."""
        return self.router.catalog.describe(model)


def _fill_route(route: object, plan: Plan, run: Execution) -> None:
    from switchboard.v1 import types_pb2

    assert isinstance(route, types_pb2.RouteInfo)
    d = run.deployment
    route.route = plan.route.name
    route.strategy = plan.strategy  # type: ignore[assignment]
    if d is not None:
        route.provider = d.provider_name
        route.model = d.model
        route.deployment = d.id
    del route.attempts[:]
    route.attempts.extend(run.attempts)


def require_admin(ctx: CallContext) -> None:
    """Admin operations need the master key."""
    if not ctx.principal.is_admin:
        raise PermissionDeniedError("This operation needs the master key.")
