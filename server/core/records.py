"""What one request carries through the pipeline: its plan, its execution, its final record.

``Plan`` is the router's answer (candidates in strategy order, and the request's token
estimate, computed once for everyone who needs it); ``Execution`` is what the executor learned
while running it; ``RequestRecord`` is both, plus usage, cost and error, handed once to every
``RequestSink`` (the usage policy, the observer) when the request ends in any way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from switchboard.v1 import chat_pb2, types_pb2

from server.core.context import CallContext
from server.core.errors import GatewayError

if TYPE_CHECKING:
    from server.routing.catalog import Deployment, Route


@dataclass(slots=True)
class Plan:
    """The candidates for one request, best first, and the strategy that ordered them."""

    route: Route
    strategy: int
    candidates: Sequence[Deployment]
    request: chat_pb2.ChatRequest | chat_pb2.EmbedRequest | None = None
    # (input, output) tokens, worked out on first use (most requests never need them).
    _tokens: tuple[int, int] | None = field(default=None, repr=False)

    @property
    def input_tokens(self) -> int:
        """An upper bound on the request's input tokens (``routing.cost.input_token_bound``):
        what limits reserve and what `cheapest` ranks by."""
        return self._estimate()[0]

    @property
    def output_tokens(self) -> int:
        """The request's typical output (``routing.cost.output_estimate``), for ranking; limits
        reserve each candidate's ``output_token_bound`` instead."""
        return self._estimate()[1]

    def _estimate(self) -> tuple[int, int]:
        tokens = self._tokens
        if tokens is None:
            from server.routing.cost import embed_token_bound, input_token_bound, output_estimate

            request = self.request or chat_pb2.ChatRequest()
            if isinstance(request, chat_pb2.EmbedRequest):
                tokens = self._tokens = (embed_token_bound(request), 0)
            else:
                tokens = self._tokens = (input_token_bound(request), output_estimate(request))
        return tokens


@dataclass(slots=True)
class Execution:
    """What the executor learned while running a plan; filled in as it goes."""

    deployment: Deployment | None = None
    attempts: list[types_pb2.Attempt] = field(default_factory=list)
    # Monotonic start of the request (the Gateway creates this object first thing).
    started: float = field(default_factory=time.monotonic)
    # Monotonic time the first streamed chunk arrived (streams only).
    first_chunk_at: float | None = None
    # Same-deployment retries and moves to a later candidate.
    retries: int = 0
    fallbacks: int = 0
    # Streams: characters of text, reasoning and tool calls delivered to the client, and the
    # usage the upstream reported before the stream ended (for billing a stream cut short).
    delivered: int = 0
    meter: types_pb2.Usage | None = None
    # The request's trace span (``observability.tracing``); None when tracing is off.
    span: object = None


@dataclass(slots=True)
class RequestRecord:
    """One finished request as every sink sees it (success, error or cancellation)."""

    ctx: CallContext
    # What was sent for the caller: a chat request (with any stored conversation it
    # continues) or an embedding request.
    request: chat_pb2.ChatRequest | chat_pb2.EmbedRequest
    stream: bool
    run: Execution = field(default_factory=Execution)
    plan: Plan | None = None
    # Whatever the usage policy took at admission (``server.policy.admission.Reservation``).
    reservation: object = None
    # Usage and cost as billed: the response's, a stream's end frame, or what a stream that
    # ended early had delivered.
    usage: types_pb2.Usage | None = None
    cost: types_pb2.Cost | None = None
    error: BaseException | None = None
    # What the answer finished with (a ``FinishReason``), for traces.
    finish_reason: int = 0
    # What the response cache did (a ``CacheStatus``; 0 when it is off for this request) and
    # the request's cache key when it looked or will store.
    cache: int = 0
    cache_key: str = ""

    @property
    def outcome(self) -> tuple[str, int]:
        """``("success", 200)``, ``("cache_hit", 200)`` (answered from the cache), the error's
        ``(reason, http_status)``, ``("cancelled", 499)`` (nginx's "client closed request") or
        ``("INTERNAL", 500)`` for a bug."""
        error = self.error
        if error is None:
            return ("cache_hit" if self.cache == types_pb2.CACHE_STATUS_HIT else "success"), 200
        if isinstance(error, GatewayError):
            return error.reason, error.http_status
        if isinstance(error, asyncio.CancelledError | GeneratorExit):
            return "cancelled", 499
        return "INTERNAL", 500

    @property
    def ttft(self) -> float | None:
        """Seconds from the start to the first streamed chunk (None for unary calls)."""
        first = self.run.first_chunk_at
        return None if first is None else first - self.run.started


class RequestSink(Protocol):
    """Takes every finished request (``Gateway`` calls ``finish`` exactly once per request).

    Implementations never raise and never await: the request's outcome is settled already,
    and accounting must not change what the caller gets."""

    def finish(self, record: RequestRecord) -> None: ...
