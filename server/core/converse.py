"""The tool-call loop over one stream (``ChatService.Converse``), independent of the transport.

The client's first event is ``start`` (a ChatRequest); anything else is INVALID_ARGUMENT. Then,
turn by turn:

1. The turn runs through ``Gateway.stream_chat`` and every frame goes out as
   ``ConverseResponse.frame``: each turn has its own start and end frames, so its own usage,
   cost and route, and is admitted, limited and recorded as one request of its own whose id is
   ``<request id>.<turn>`` (turns count from 1).
2. A turn that ends with ``FINISH_REASON_TOOL_CALLS`` is followed by ``tool_calls_required``
   with the complete calls (id, name, whole arguments, signature) in index order; the loop then
   waits for the client's ``tool_results``. Every requested ``tool_call_id`` must be answered
   exactly once; an unknown, repeated, empty or missing id is INVALID_ARGUMENT with
   ``BadRequest`` field violations. A client that half-closes instead ends the call OK.
3. The assistant message of the turn (text, reasoning and tool-call parts as produced) and one
   ROLE_TOOL message per result, in the order of the calls, with ``name`` filled from the call
   when the client left it empty, are appended to the conversation, and the next turn runs.
4. A turn that ends for any other reason (stop, length, content filter) ends the call OK.

Bounds: at most ``MAX_TURNS`` model turns; when turn ``MAX_TURNS`` asks for tools again the
call ends FAILED_PRECONDITION (``MAX_TURNS_EXCEEDED``): not RESOURCE_EXHAUSTED, because
retrying the same conversation would only hit the limit again. The client's deadline bounds
the whole conversation, tool execution included; each turn after the first checks the key again
(``reauthenticate``), so a key revoked mid-conversation is refused at its next turn; each turn
also gets at most the gateway's
default request timeout. Waiting for tool results is bounded by ``TOOL_RESULTS_TIMEOUT``
(DEADLINE_EXCEEDED) so that an idle client cannot hold a stream open forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence

from switchboard.v1 import chat_pb2, types_pb2

from server.core.accumulate import StreamAccumulator
from server.core.context import CallContext, Principal
from server.core.errors import (
    DeadlineExceededError,
    FieldViolation,
    InvalidRequestError,
    MaxTurnsExceededError,
)
from server.core.service import Gateway

# Model turns per Converse call; a loop that keeps asking for tools past this is stopped.
MAX_TURNS = 32
# Seconds the server waits for the client's tool results after tool_calls_required.
TOOL_RESULTS_TIMEOUT = 600.0


def start_request(event: chat_pb2.ConverseRequest | None) -> chat_pb2.ChatRequest:
    """The ChatRequest of the client's first event; INVALID_ARGUMENT unless it is ``start``."""
    if event is not None and event.WhichOneof("event") == "start":
        return event.start
    got = "nothing (the client closed its side)" if event is None else _event_name(event)
    raise InvalidRequestError(
        f"Converse must begin with a `start` event (a ChatRequest); got {got}.",
        param="start",
    )


async def converse(
    gateway: Gateway,
    first: chat_pb2.ChatRequest,
    ctx: CallContext,
    events: AsyncIterator[chat_pb2.ConverseRequest],
    *,
    max_turns: int = MAX_TURNS,
    results_timeout: float = TOOL_RESULTS_TIMEOUT,
    reauthenticate: Callable[[], Awaitable[Principal]] | None = None,
) -> AsyncGenerator[chat_pb2.ConverseResponse, None]:
    """Runs the tool-call loop (module docstring) and yields what goes to the client.

    ``ctx`` is the call's: its ``deadline`` is the client's for the whole conversation (None:
    none); ``events`` are the client's events after ``start``.
    """
    request = chat_pb2.ChatRequest()
    request.CopyFrom(first)
    for turn in range(1, max_turns + 1):
        if turn > 1 and reauthenticate is not None:
            # The key may have been revoked (or its limits changed) while the client ran its
            # tools: each turn is a request of its own and is authorised as one.
            ctx.principal = await reauthenticate()
        turn_run = StreamAccumulator()
        try:
            # Closing the turn's stream when the client goes away mid-turn settles the turn and
            # cancels the upstream call.
            frames = gateway.stream_chat(request, _turn_context(gateway, ctx, turn))
            async with contextlib.aclosing(frames):
                async for frame in frames:
                    turn_run.add(frame)
                    yield chat_pb2.ConverseResponse(frame=frame)
        except InvalidRequestError as exc:
            if turn == 1:
                # The caller wrote the first request as `start`: name its fields that way.
                raise exc.under("start") from None
            raise
        if turn_run.finish_reason != types_pb2.FINISH_REASON_TOOL_CALLS:
            return
        calls = turn_run.tool_calls()
        if not calls:
            # TOOL_CALLS without a call leaves nothing to ask the client for.
            return
        if turn == max_turns:
            raise MaxTurnsExceededError(
                f"The model still asked for tools at turn {max_turns}, the most one Converse "
                "call runs; continue in a new call with the conversation so far."
            )
        required = chat_pb2.ConverseResponse()
        required.tool_calls_required.tool_calls.extend(calls)
        yield required
        results = await _next_results(events, ctx, results_timeout)
        if results is None:
            return
        answers = match_results(calls, results.results)
        request.messages.append(turn_run.message())
        for result in answers:
            request.messages.add(role=types_pb2.ROLE_TOOL).content.add().tool_result.CopyFrom(
                result
            )


def match_results(
    calls: Sequence[types_pb2.ToolCall], results: Sequence[types_pb2.ToolResult]
) -> list[types_pb2.ToolResult]:
    """One result per call, in the calls' order; INVALID_ARGUMENT unless each id is answered
    exactly once. A result without a ``name`` gets its call's (Gemini needs it)."""
    by_id = {call.id: call for call in calls}
    answered: dict[str, types_pb2.ToolResult] = {}
    violations: list[FieldViolation] = []
    for i, result in enumerate(results):
        field = f"tool_results.results[{i}].tool_call_id"
        call_id = result.tool_call_id
        if not call_id:
            violations.append(FieldViolation(field, "tool_call_id is required"))
        elif call_id not in by_id:
            violations.append(
                FieldViolation(field, f"unknown tool_call_id {call_id!r}: no such call is pending")
            )
        elif call_id in answered:
            violations.append(
                FieldViolation(field, f"tool_call_id {call_id!r} is answered more than once")
            )
        else:
            answered[call_id] = result
    for call in calls:
        if call.id not in answered:
            violations.append(
                FieldViolation(
                    "tool_results.results",
                    f"no result for tool call {call.id!r} ({call.name})",
                )
            )
    if violations:
        raise InvalidRequestError.of(violations, what="Invalid tool results")
    ordered = []
    for call in calls:
        result = types_pb2.ToolResult()
        result.CopyFrom(answered[call.id])
        if not result.name:
            result.name = call.name
        ordered.append(result)
    return ordered


async def _next_results(
    events: AsyncIterator[chat_pb2.ConverseRequest], ctx: CallContext, limit: float
) -> chat_pb2.ToolResults | None:
    """The client's next event as tool results; None when it half-closed."""
    remaining = ctx.remaining()
    wait = limit if remaining is None else min(limit, max(remaining, 0.0))
    try:
        async with asyncio.timeout(wait):
            event = await anext(events, None)
    except TimeoutError:
        if remaining is not None and remaining <= limit:
            raise DeadlineExceededError(
                "The deadline passed while the gateway waited for tool results."
            ) from None
        raise DeadlineExceededError(
            f"No tool results arrived within {limit:g} s of tool_calls_required."
        ) from None
    if event is None:
        return None
    if event.WhichOneof("event") != "tool_results":
        raise InvalidRequestError(
            f"Expected `tool_results` for the pending tool calls; got {_event_name(event)}.",
            param="tool_results",
        )
    return event.tool_results


def _turn_context(gateway: Gateway, ctx: CallContext, turn: int) -> CallContext:
    deadline = time.monotonic() + gateway.default_timeout
    if ctx.deadline is not None:
        deadline = min(deadline, ctx.deadline)
    return CallContext(
        request_id=f"{ctx.request_id}.{turn}",
        principal=ctx.principal,
        deadline=deadline,
        transport=ctx.transport,
    )


def _event_name(event: chat_pb2.ConverseRequest) -> str:
    kind = event.WhichOneof("event")
    if kind == "start":
        return "a second `start` (send it only once, first)"
    return f"`{kind}`" if kind else "an empty ConverseRequest"
