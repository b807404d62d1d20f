"""What the Gateway asks before and after each chat request: rate limits, budget, usage ledger.

``admit`` runs after routing (it needs the candidates' prices and the plan's token estimate)
and before any upstream call: it counts the request against the key's RPM, reserves its
estimated tokens against TPM and its estimated cost against the monthly budget, or raises the
429. ``finish`` (a ``RequestSink``) runs when the request ends in any way (success, error,
cancel, a stream's end frame): it reconciles the reservations to the actual usage and cost and
records one ledger row. The state lives behind ``server.core.state``'s protocols.

Estimates: input tokens are the plan's (``server.routing.cost.estimate_input_tokens``);
output tokens are ``max_tokens``, or ``DEFAULT_OUTPUT_ESTIMATE`` (512) when the caller set none;
cost is those tokens at the most expensive candidate's price.

Actual tokens for TPM are input + output (cached input included). A request that ends without
usage releases its whole reservation, except a stream that had already delivered chunks: the
upstream processed its prompt, so its estimated input tokens stay counted.

The master key skips every limit; its requests are still recorded.
"""

from __future__ import annotations

import logging
import math
import time

from switchboard.v1 import chat_pb2, types_pb2

from server.core.context import CallContext
from server.core.errors import RateLimitedError
from server.core.ids import new_request_id
from server.core.money import NANOS_PER_USD, cost_nanos, usd_to_nanos
from server.core.records import Plan, RequestRecord
from server.core.state import BudgetStore, RateLimiter, UsageRow, UsageSink
from server.routing.cost import estimate_cost, output_token_bound

log = logging.getLogger(__name__)


class Reservation:
    """What ``admit`` took for one request: TPM tokens and nano-USD."""

    __slots__ = ("cost", "tokens")

    def __init__(self, tokens: int = 0, cost: int = 0) -> None:
        self.tokens = tokens
        self.cost = cost

    def __repr__(self) -> str:
        return f"Reservation(tokens={self.tokens}, cost={self.cost})"


# Shared by every request that reserves nothing (master key, keys without token/$ limits).
NOTHING = Reservation()


class UsagePolicy:
    """Per-key RPM/TPM limits, monthly budgets and the usage ledger (module docstring)."""

    def __init__(
        self,
        limiter: RateLimiter,
        budgets: BudgetStore,
        ledger: UsageSink | None = None,
    ) -> None:
        self.limiter = limiter
        self.budgets = budgets
        self.ledger = ledger

    async def admit_call(self, ctx: CallContext) -> None:
        """Counts one request against the key's RPM, and refuses a key whose monthly budget
        is spent, before its body is decoded (429; nothing taken when refused)."""
        principal = ctx.principal
        if principal.is_admin:
            return
        limits = principal.limits
        if limits.monthly_budget_usd is not None:
            # A zero reservation refuses exactly when the month's spend reached the budget.
            await self.budgets.reserve(principal.key_id, usd_to_nanos(limits.monthly_budget_usd), 0)
        if limits.requests_per_minute is not None:
            await self.limiter.acquire(principal.key_id, limits.requests_per_minute, None, 0)

    async def admit(self, ctx: CallContext, plan: Plan) -> Reservation:
        """Reserves the request's tokens and cost against the key's TPM and budget (its RPM
        was counted by ``admit_call``), or raises the 429 (nothing taken)."""
        principal = ctx.principal
        if principal.is_admin:
            return NOTHING
        limits = principal.limits
        tpm = limits.tokens_per_minute
        budget = limits.monthly_budget_usd
        if tpm is None and budget is None:
            return NOTHING
        key_id = principal.key_id
        tokens_in = plan.input_tokens
        request = plan.request or chat_pb2.ChatRequest()
        # An embedding request produces no output tokens.
        chat = request if isinstance(request, chat_pb2.ChatRequest) else None
        worst = 0.0
        tokens_out = 0
        for d in plan.candidates:
            out = 0 if chat is None else output_token_bound(chat, d.max_output_tokens)
            tokens_out = max(tokens_out, out)
            usd = estimate_cost(d.price, tokens_in, out)
            if usd is not None and usd > worst:
                worst = usd
        cost = 0
        if budget is not None:
            # Rounded up: the reservation is a bound, never a nano-dollar short of one.
            cost = await self.budgets.reserve(
                key_id, usd_to_nanos(budget), math.ceil(worst * NANOS_PER_USD)
            )
        tokens = 0
        if tpm is not None:
            try:
                tokens = await self.limiter.acquire(key_id, None, tpm, tokens_in + tokens_out)
            except RateLimitedError:
                self.budgets.settle(key_id, cost, 0)
                raise
        return Reservation(tokens, cost)

    def finish(self, record: RequestRecord) -> None:
        """Reconciles the reservation to the actual usage and records the ledger row.

        Never raises: accounting must not change what the caller gets."""
        try:
            self._settle(record)
        except Exception:
            log.exception("settling a request's usage failed")

    def _settle(self, record: RequestRecord) -> None:
        r = record.reservation if isinstance(record.reservation, Reservation) else NOTHING
        ctx = record.ctx
        run = record.run
        usage = record.usage
        principal = ctx.principal
        key_id = principal.key_id
        if record.cost is not None:
            input_n, output_n, cached_n, write_n, total_n = cost_nanos(record.cost)
        else:
            input_n = output_n = cached_n = write_n = total_n = 0
        if r.tokens:
            actual = usage.input_tokens + usage.output_tokens if usage is not None else 0
            self.limiter.reconcile(key_id, r.tokens, actual)
        if not principal.is_admin and (r.cost or total_n):
            self.budgets.settle(key_id, r.cost, total_n)
        ledger = self.ledger
        if ledger is None:
            return
        outcome, status = record.outcome
        plan = record.plan
        d = run.deployment
        if usage is None:
            usage = _NO_USAGE
        ledger.record(
            UsageRow(
                time.time(),
                ctx.request_id,
                key_id,
                ctx.transport,
                record.request.model[:_MAX_MODEL],
                plan.route.name if plan is not None else "",
                d.provider_name if d is not None else "",
                d.model if d is not None else "",
                d.id if d is not None else "",
                record.stream,
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
                new_request_id(),
            )
        )


_NO_USAGE = types_pb2.Usage()
# Caller-supplied model names are cut to this length in the ledger (as in the request log).
_MAX_MODEL = 200
