"""The one service object both transports call (DESIGN.md "One request's way").

transport edge → ``Gateway`` (validate, route, admit, execute, cost) → one ``RequestRecord``
to every sink (usage policy, observer) → transport edge.
"""

from __future__ import annotations

import contextlib
import hmac
import time
from collections.abc import AsyncGenerator, Sequence
from typing import Protocol

from switchboard.v1 import chat_pb2, types_pb2

from server.core.accumulate import StreamAccumulator
from server.core.context import CallContext, Principal
from server.core.conversation import Conversation, response_not_found
from server.core.errors import GatewayError, PermissionDeniedError, UnauthenticatedError
from server.core.ids import new_request_id
from server.core.records import Execution, Plan, RequestRecord, RequestSink
from server.core.state import ResponseStore
from server.core.validate import (
    DEFAULT_BOUNDS,
    RequestBounds,
    validate_chat_request,
    validate_embed_request,
)
from server.routing.cost import (
    DELIVERED_CHARS_PER_TOKEN,
    compute_cost,
    estimate_embed_tokens,
    estimate_input_tokens,
)
from server.routing.router import Router

ADMIN = Principal(key_id="master", name="master", is_admin=True)


class KeyLookup(Protocol):
    """Finds the principal for a gateway key secret (``server.core.state.KeyStore.lookup``)."""

    async def lookup(self, secret: str) -> Principal | None: ...


class Admission(Protocol):
    """Takes a request's share of its key's limits before any upstream call
    (``server.policy.admission.UsagePolicy``)."""

    async def admit_call(self, ctx: CallContext) -> None:
        """Counts the call against the key's request rate (and refuses a spent budget)."""
        ...

    async def admit(self, ctx: CallContext, plan: Plan) -> object:
        """Reserves its tokens and cost; returns what it took, for the record."""
        ...

    def leave_call(self, ctx: CallContext) -> None:
        """Gives back what the call holds for its whole length (concurrency slots); once."""
        ...


class Runner(Protocol):
    """Runs a plan against its candidates (``server.resilience.executor.Executor``)."""

    async def chat(
        self, plan: Plan, request: chat_pb2.ChatRequest, ctx: CallContext, run: Execution
    ) -> chat_pb2.ChatResponse: ...

    def stream(
        self, plan: Plan, request: chat_pb2.ChatRequest, ctx: CallContext, run: Execution
    ) -> AsyncGenerator[chat_pb2.StreamChatResponse, None]: ...

    async def embed(
        self, plan: Plan, request: chat_pb2.EmbedRequest, ctx: CallContext, run: Execution
    ) -> chat_pb2.EmbedResponse: ...

    async def count_tokens(
        self, plan: Plan, request: chat_pb2.ChatRequest, ctx: CallContext, run: Execution
    ) -> int: ...


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
        executor: Runner,
        keys: KeyLookup,
        master_key: str,
        default_timeout: float,
        *,
        admission: Admission | None = None,
        sinks: Sequence[RequestSink] = (),
        bounds: RequestBounds = DEFAULT_BOUNDS,
        responses: ResponseStore | None = None,
    ) -> None:
        self.router = router
        self.executor = executor
        self.keys = keys
        self._master_key = master_key.encode()
        self.default_timeout = default_timeout
        # Rate limits and budgets (server.policy.admission); None admits everything.
        self.admission = admission
        # Who learns of every finished request: the usage policy (settle, ledger), the
        # observer (metrics, log line).
        self.sinks = tuple(sinks)
        # How much one request may carry (checked before routing, on every transport).
        self.bounds = bounds
        # Stored responses (``store`` / ``previous_response_id``); None keeps none.
        self.responses = responses

    # --- edge helpers ---------------------------------------------------------------------

    async def authenticate(self, token: str | None) -> Principal:
        """The caller behind a gateway key (or the master key); 401 otherwise."""
        if not token:
            raise UnauthenticatedError("Missing gateway key: send `Authorization: Bearer <key>`.")
        if hmac.compare_digest(token.encode(), self._master_key):
            return ADMIN
        principal = await self.keys.lookup(token)
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

    async def admit_call(self, ctx: CallContext) -> None:
        """Counts a call against its key's request rate before its body is decoded (the HTTP
        edge calls this; for gRPC, whose messages arrive decoded, ``chat`` does)."""
        if self.admission is not None and not ctx.admitted:
            await self.admission.admit_call(ctx)
        ctx.admitted = True

    def end_call(self, ctx: CallContext) -> None:
        """Releases what the call still holds (its concurrency slot) when a transport is done
        with it: a safety net for calls that ended before their record reached the sinks
        (a client gone while its body was read); a no-op once the record was settled."""
        if ctx.slots and self.admission is not None:
            self.admission.leave_call(ctx)

    def refused(
        self, ctx: CallContext, error: GatewayError, request: chat_pb2.ChatRequest | None = None
    ) -> None:
        """Records a request refused at the edge after its key was known (a body too large or
        malformed, its rate limit): one record like any other request's."""
        record = RequestRecord(ctx, request or chat_pb2.ChatRequest(), stream=False, error=error)
        for sink in self.sinks:
            sink.finish(record)

    async def _admit(
        self, record: RequestRecord, request: chat_pb2.ChatRequest
    ) -> tuple[Plan, Conversation | None]:
        """Validates, routes and admits the request; the plan and reservation go on the record.
        A stateful request (``core.conversation``) is replaced on the record by what goes
        upstream, which is what gets validated, routed and billed."""
        await self.admit_call(record.ctx)
        conversation = None
        # Stateful (core.conversation)? Three reads, inline: this runs on every chat request.
        if request.previous_response_id or request.store or request.instructions:
            conversation = await Conversation.open(
                self.responses, record.ctx.principal.key_id, request
            )
            request = record.request = conversation.upstream
        validate_chat_request(request, self.bounds)
        plan = record.plan = self.router.plan(request, stream=record.stream)
        if self.admission is not None:
            record.reservation = await self.admission.admit(record.ctx, plan)
        return plan, conversation

    def _recorded(self, record: RequestRecord) -> _Recorded:
        """Hands the record to every sink however the request ends (the one try/finally)."""
        return _Recorded(record, self.sinks)

    async def chat(self, request: chat_pb2.ChatRequest, ctx: CallContext) -> chat_pb2.ChatResponse:
        """One completion, with cost and route info filled in."""
        with self._recorded(RequestRecord(ctx, request, stream=False)) as record:
            plan, conversation = await self._admit(record, request)
            run = record.run
            upstream = request if conversation is None else conversation.upstream
            response = await self.executor.chat(plan, upstream, ctx, run)
            deployment = run.deployment
            assert deployment is not None
            response.id = ctx.request_id
            response.model = request.model
            response.created = int(time.time())
            response.cost.CopyFrom(compute_cost(response.usage, deployment.price))
            _fill_route(response.route, plan, run)
            record.usage = response.usage
            record.cost = response.cost
            if conversation is not None:
                response.response_id = await conversation.save(response)
            return response

    async def stream_chat(
        self, request: chat_pb2.ChatRequest, ctx: CallContext
    ) -> AsyncGenerator[chat_pb2.StreamChatResponse, None]:
        """start frame (once committed to a deployment), deltas, then one end frame."""
        recorded = self._recorded(RequestRecord(ctx, request, stream=True))
        with recorded as record:
            plan, conversation = await self._admit(record, request)
            run = record.run
            created = int(time.time())
            started = False
            end_frame: chat_pb2.StreamChatResponse | None = None
            upstream = request if conversation is None else conversation.upstream
            frames = self.executor.stream(plan, upstream, ctx, run)
            kept: StreamAccumulator | None = None
            if conversation is not None and conversation.response_id:
                # Only a stored stream pays for accumulating its answer.
                kept = StreamAccumulator()
                frames = _accumulating(frames, kept)
            # Closed here, not left to the garbage collector, so that a client going away
            # frees the upstream stream and the deployment's slot at once.
            async with contextlib.aclosing(frames):
                async for frame in frames:
                    if not started:
                        started = True
                        start = chat_pb2.StreamChatResponse()
                        start.start.id = ctx.request_id
                        start.start.model = request.model
                        start.start.created = created
                        _fill_route(start.start.route, plan, run)
                        if conversation is not None:
                            start.start.response_id = conversation.response_id
                        yield start
                    if frame.WhichOneof("frame") == "end":
                        end = frame.end
                        end.id = ctx.request_id
                        end.model = request.model
                        end.created = created
                        assert run.deployment is not None
                        end.cost.CopyFrom(compute_cost(end.usage, run.deployment.price))
                        _fill_route(end.route, plan, run)
                        record.usage = end.usage
                        record.cost = end.cost
                        # Held until the upstream stream is closed and booked, below.
                        end_frame = frame
                        continue
                    yield frame
            if end_frame is not None and conversation is not None and kept is not None:
                end_frame.end.response_id = await conversation.save(_streamed(end_frame.end, kept))
            if end_frame is not None:
                # The request is recorded (its ledger row journaled) before the client can
                # see it end, so a complete stream is never missing from the ledger.
                recorded.finish()
                yield end_frame

    async def embed(
        self, request: chat_pb2.EmbedRequest, ctx: CallContext
    ) -> chat_pb2.EmbedResponse:
        """Embedding vectors through the same routing, fallback, limits, budget and ledger as
        chat; usage an upstream does not report is estimated (a token per four bytes)."""
        with self._recorded(RequestRecord(ctx, request, stream=False)) as record:
            await self.admit_call(ctx)
            validate_embed_request(request)
            plan = record.plan = self.router.plan(request)
            if self.admission is not None:
                record.reservation = await self.admission.admit(ctx, plan)
            run = record.run
            response = await self.executor.embed(plan, request, ctx, run)
            deployment = run.deployment
            assert deployment is not None
            if not response.usage.input_tokens:
                response.usage.input_tokens = estimate_embed_tokens(request)
            response.id = ctx.request_id
            response.model = request.model
            response.cost.CopyFrom(compute_cost(response.usage, deployment.price))
            _fill_route(response.route, plan, run)
            record.usage = response.usage
            record.cost = response.cost
            return response

    async def count_tokens(
        self, request: chat_pb2.ChatRequest, ctx: CallContext
    ) -> tuple[int, bool]:
        """(input tokens, exact): exact from the provider's own count endpoint when the route
        has a deployment that offers one (Anthropic's), through the executor like any call;
        else ``routing.cost.estimate_input_tokens`` (a token per four bytes of the encoded
        request, plus framing). Free upstream, so neither limited nor recorded."""
        validate_chat_request(request, self.bounds)
        plan = self.router.plan(request)
        exact = [d for d in plan.candidates if callable(getattr(d.provider, "count_tokens", None))]
        if not exact:
            return estimate_input_tokens(request), False
        counted = Plan(plan.route, plan.strategy, exact, request)
        return await self.executor.count_tokens(counted, request, ctx, Execution()), True

    async def get_response(self, ctx: CallContext, response_id: str) -> chat_pb2.StoredResponse:
        """A stored response of the calling key; ResponseNotFoundError (404) otherwise."""
        found = None
        if self.responses is not None and response_id:
            found = await self.responses.get(ctx.principal.key_id, response_id)
        if found is None:
            raise response_not_found(response_id)
        return found

    async def delete_response(self, ctx: CallContext, response_id: str) -> None:
        """Deletes a stored response of the calling key; ResponseNotFoundError (404) otherwise."""
        deleted = False
        if self.responses is not None and response_id:
            deleted = await self.responses.delete(ctx.principal.key_id, response_id)
        if not deleted:
            raise response_not_found(response_id)

    async def list_models(self, ctx: CallContext) -> chat_pb2.ListModelsResponse:
        """Every route and deployment this gateway can serve."""
        return chat_pb2.ListModelsResponse(models=self.router.catalog.list_models())

    async def get_model(self, ctx: CallContext, model: str) -> chat_pb2.Model:
        """One model or route by name; ModelNotFoundError (404) when nothing serves it."""
        return self.router.catalog.describe(model)


class _Recorded:
    """``with``: the request's record goes to every sink when the block ends, however it ends
    (a class rather than ``contextlib.contextmanager``: it runs on every request)."""

    __slots__ = ("_done", "record", "sinks")

    def __init__(self, record: RequestRecord, sinks: Sequence[RequestSink]) -> None:
        self.record = record
        self.sinks = sinks
        self._done = False

    def __enter__(self) -> RequestRecord:
        return self.record

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        record = self.record
        if exc is not None and not (isinstance(exc, GeneratorExit) and record.usage is not None):
            # A stream closed right after its end frame (transports stop reading there) is a
            # success; anything else that ends the block early is the request's outcome.
            record.error = exc
        self.finish()

    def finish(self) -> None:
        """Hands the record to the sinks now (once; the end of the block does it otherwise)."""
        if self._done:
            return
        self._done = True
        record = self.record
        if record.usage is None and record.run.first_chunk_at is not None:
            bill_delivered(record)
        for sink in self.sinks:
            sink.finish(record)


async def _accumulating(
    frames: AsyncGenerator[chat_pb2.StreamChatResponse, None], into: StreamAccumulator
) -> AsyncGenerator[chat_pb2.StreamChatResponse, None]:
    """The frames, folded into ``into`` as they pass (a stored stream's answer)."""
    async with contextlib.aclosing(frames):
        async for frame in frames:
            into.add(frame)
            yield frame


def _streamed(end: chat_pb2.StreamEnd, kept: StreamAccumulator) -> chat_pb2.ChatResponse:
    """The ChatResponse a stored stream keeps: the accumulated message and the end frame."""
    return chat_pb2.ChatResponse(
        id=end.id,
        model=end.model,
        message=kept.message(),
        finish_reason=end.finish_reason,
        usage=end.usage,
        cost=end.cost,
        route=end.route,
        created=end.created,
    )


def bill_delivered(record: RequestRecord) -> None:
    """Usage and cost of a stream that ended before its end frame (the client went away, the
    upstream broke or stalled): the upstream processed the prompt and produced what was
    delivered, so that is billed. What the upstream reported before the end counts as reported
    (its input tokens, its output so far); what it did not is estimated: input from the
    request (``routing.cost.estimate_input_tokens``), output as one token per four delivered
    characters."""
    run = record.run
    usage = types_pb2.Usage()
    if run.meter is not None:
        usage.CopyFrom(run.meter)
    request = record.request
    if not usage.input_tokens and isinstance(request, chat_pb2.ChatRequest):
        usage.input_tokens = estimate_input_tokens(request)
    usage.output_tokens = max(usage.output_tokens, -(-run.delivered // DELIVERED_CHARS_PER_TOKEN))
    record.usage = usage
    price = run.deployment.price if run.deployment is not None else None
    record.cost = compute_cost(usage, price)


def _fill_route(route: types_pb2.RouteInfo, plan: Plan, run: Execution) -> None:
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
