"""What the Gateway asks before and after each chat request: rate limits, budget, usage ledger.

``admit`` runs after routing (it needs the candidates' prices) and before any upstream call:
it counts the request against the key's RPM, reserves its estimated tokens against TPM and its
estimated cost against the monthly budget, or raises the 429. ``settle`` runs when the request
ends in any way (success, error, cancel, a stream's end frame): it reconciles the reservations
to the actual usage and cost and buffers one ledger row. Both are synchronous and do no I/O.

Estimates: input tokens are ``server.routing.pricing.estimate_input_tokens`` (chars / 4 plus
per-message overheads); output tokens are ``max_tokens``, or ``DEFAULT_OUTPUT_ESTIMATE`` (512)
when the caller set none; cost is those tokens at the most expensive candidate's price.

Actual tokens for TPM are input + output (cached input included). A request that ends without
usage releases its whole reservation, except a stream that had already delivered chunks: the
upstream processed its prompt, so its estimated input tokens stay counted.

The master key skips every limit; its requests are still recorded.
"""

from __future__ import annotations

import asyncio
import logging
import time

from switchboard.v1 import chat_pb2, types_pb2

from server.core.context import CallContext
from server.core.errors import GatewayError, RateLimitedError
from server.policy.budget import NANOS_PER_USD, MonthlyBudgets, month_bounds, month_of
from server.policy.ledger import UsageLedger, UsageRow
from server.policy.limits import RateLimiter
from server.resilience.executor import Execution
from server.routing.pricing import estimate_cost, estimate_input_tokens, output_estimate
from server.routing.router import Plan

log = logging.getLogger(__name__)


class Reservation:
    """What ``admit`` took for one request: TPM tokens, nano-USD, and the input estimate."""

    __slots__ = ("cost", "input_estimate", "tokens")

    def __init__(self, tokens: int = 0, cost: int = 0, input_estimate: int = 0) -> None:
        self.tokens = tokens
        self.cost = cost
        self.input_estimate = input_estimate

    def __repr__(self) -> str:
        return f"Reservation(tokens={self.tokens}, cost={self.cost})"


# Shared by every request that reserves nothing (master key, keys without token/$ limits).
NOTHING = Reservation()


class UsagePolicy:
    """Per-key RPM/TPM limits, monthly budgets and the usage ledger (module docstring)."""

    def __init__(
        self,
        ledger: UsageLedger | None = None,
        *,
        limiter: RateLimiter | None = None,
        budgets: MonthlyBudgets | None = None,
    ) -> None:
        self.ledger = ledger
        self.limiter = limiter or RateLimiter()
        if budgets is None:
            # Month-to-date spend survives restarts: it is read back from the ledger.
            month = month_bounds(*month_of(time.time()))
            budgets = MonthlyBudgets(ledger.month_spend(*month) if ledger is not None else None)
        self.budgets = budgets

    def admit(self, ctx: CallContext, request: chat_pb2.ChatRequest, plan: Plan) -> Reservation:
        """Takes the request's share of the key's limits, or raises the 429 (nothing taken)."""
        principal = ctx.principal
        if principal.is_admin:
            return NOTHING
        limits = principal.limits
        rpm = limits.requests_per_minute
        tpm = limits.tokens_per_minute
        budget = limits.monthly_budget_usd
        if tpm is None and budget is None:
            if rpm is not None:
                self.limiter.acquire(principal.key_id, rpm, None, 0)
            return NOTHING
        key_id = principal.key_id
        tokens_in = estimate_input_tokens(request)
        tokens_out = output_estimate(request)
        cost = 0
        if budget is not None:
            worst = 0.0
            for d in plan.candidates:
                usd = estimate_cost(d.price, tokens_in, tokens_out)
                if usd is not None and usd > worst:
                    worst = usd
            cost = self.budgets.reserve(key_id, budget, round(worst * NANOS_PER_USD))
        try:
            tokens = self.limiter.acquire(key_id, rpm, tpm, tokens_in + tokens_out)
        except RateLimitedError:
            self.budgets.settle(key_id, cost, 0)
            raise
        return Reservation(tokens, cost, tokens_in)

    def settle(
        self,
        reservation: Reservation | None,
        ctx: CallContext,
        request: chat_pb2.ChatRequest,
        plan: Plan | None,
        run: Execution,
        *,
        stream: bool,
        usage: types_pb2.Usage | None = None,
        cost: types_pb2.Cost | None = None,
        error: BaseException | None = None,
    ) -> None:
        """Reconciles the reservation to the actual usage and records the ledger row.

        Never raises: accounting must not change what the caller gets.
        """
        try:
            r = reservation or NOTHING
            self._settle(r, ctx, request, plan, run, stream, usage, cost, error)
        except Exception:
            log.exception("settling a request's usage failed")

    def _settle(
        self,
        r: Reservation,
        ctx: CallContext,
        request: chat_pb2.ChatRequest,
        plan: Plan | None,
        run: Execution,
        stream: bool,
        usage: types_pb2.Usage | None,
        cost: types_pb2.Cost | None,
        error: BaseException | None,
    ) -> None:
        principal = ctx.principal
        key_id = principal.key_id
        if cost is not None:
            input_n = round(cost.input_usd * NANOS_PER_USD)
            output_n = round(cost.output_usd * NANOS_PER_USD)
            cached_n = round(cost.cached_input_usd * NANOS_PER_USD)
            write_n = round(cost.cache_write_usd * NANOS_PER_USD)
            total_n = input_n + output_n + cached_n + write_n
        else:
            input_n = output_n = cached_n = write_n = total_n = 0
        if r.tokens:
            if usage is not None:
                actual = usage.input_tokens + usage.output_tokens
            elif stream and run.first_chunk_at is not None:
                actual = r.input_estimate
            else:
                actual = 0
            self.limiter.reconcile(key_id, r.tokens, actual)
        if not principal.is_admin and (r.cost or total_n):
            self.budgets.settle(key_id, r.cost, total_n)
        ledger = self.ledger
        if ledger is None:
            return
        outcome, status = _outcome(error)
        d = run.deployment
        if usage is None:
            usage = _NO_USAGE
        ledger.record(
            UsageRow(
                time.time(),
                ctx.request_id,
                key_id,
                ctx.transport,
                request.model[:_MAX_MODEL],
                plan.route.name if plan is not None else "",
                d.provider_name if d is not None else "",
                d.model if d is not None else "",
                d.id if d is not None else "",
                stream,
                outcome,
                status,
                len(run.attempts),
                usage.input_tokens,
                usage.output_tokens,
                usage.cached_input_tokens,
                usage.cache_write_input_tokens,
                usage.reasoning_tokens,
                input_n,
                output_n,
                cached_n,
                write_n,
                total_n,
                round((time.monotonic() - run.started) * 1000.0, 3),
            )
        )


_NO_USAGE = types_pb2.Usage()
# Caller-supplied model names are cut to this length in the ledger (as in the request log).
_MAX_MODEL = 200


def _outcome(error: BaseException | None) -> tuple[str, int]:
    """The ledger's outcome and HTTP-equivalent status (as the request log reports them)."""
    if error is None:
        return "success", 200
    if isinstance(error, GatewayError):
        return error.reason, error.http_status
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        # 499: nginx's "client closed request".
        return "cancelled", 499
    return "INTERNAL", 500
