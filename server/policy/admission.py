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

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Sequence
from typing import TypeVar

from switchboard.v1 import chat_pb2, types_pb2

from server.core.context import CallContext, Principal, project_name
from server.core.errors import ModelNotAllowedError
from server.core.ids import new_row_id
from server.core.money import NANOS_PER_USD, cost_nanos, usd_to_nanos
from server.core.records import Plan, RequestRecord
from server.core.state import BudgetStore, RateLimiter, UsageRow, UsageSink
from server.policy.keys import model_allowed
from server.routing.cost import estimate_cost, output_token_bound

log = logging.getLogger(__name__)
T = TypeVar("T")


class Reservation:
    """What ``admit`` took for one request: TPM tokens and nano-USD, the key's and (for a key
    in a project) the project's."""

    __slots__ = ("cost", "project_cost", "project_tokens", "tokens")

    def __init__(
        self, tokens: int = 0, cost: int = 0, project_tokens: int = 0, project_cost: int = 0
    ) -> None:
        self.tokens = tokens
        self.cost = cost
        self.project_tokens = project_tokens
        self.project_cost = project_cost

    def __repr__(self) -> str:
        return (
            f"Reservation(tokens={self.tokens}, cost={self.cost}, "
            f"project_tokens={self.project_tokens}, project_cost={self.project_cost})"
        )


# Shared by every request that reserves nothing (master key, keys without token/$ limits).
NOTHING = Reservation()


class UsagePolicy:
    """Per-key and per-project RPM/TPM limits, monthly budgets, concurrency, allowed models
    and the usage ledger (module docstring)."""

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
        """Takes the key's concurrent-request slot, counts one request against the key's and
        the project's RPM, and refuses a spent budget (the key's or the project's), before the
        body is decoded (429; nothing taken when refused).

        The checks are independent, so they are asked together (``_together``): over a
        networked store they share one round trip."""
        principal = ctx.principal
        if principal.is_admin:
            return
        limits = principal.limits
        shared = principal.project_limits
        project = project_name(principal.project_id) if principal.project_id else None
        limiter = self.limiter
        # (what it takes: a name to refund an RPM count to, or SLOT, or None), the check
        checks: list[tuple[str | None, Awaitable[object]]] = []
        # A zero reservation refuses exactly when the month's spend reached the budget.
        if limits.monthly_budget_usd is not None:
            budget = usd_to_nanos(limits.monthly_budget_usd)
            checks.append((None, self.budgets.reserve(principal.key_id, budget, 0)))
        if project is not None and shared is not None and shared.monthly_budget_usd is not None:
            budget = usd_to_nanos(shared.monthly_budget_usd)
            checks.append((None, self.budgets.reserve(project, budget, 0)))
        if principal.max_concurrent is not None:
            checks.append((_SLOT, limiter.enter(principal.key_id, principal.max_concurrent)))
        if limits.requests_per_minute is not None:
            rpm = limits.requests_per_minute
            checks.append((principal.key_id, limiter.acquire(principal.key_id, rpm, None, 0)))
        if project is not None and shared is not None and shared.requests_per_minute:
            rpm = shared.requests_per_minute
            checks.append((project, limiter.acquire(project, rpm, None, 0)))
        if not checks:
            return
        results = await _together([check for _, check in checks])
        refused: BaseException | None = None
        for (takes, _), result in zip(checks, results, strict=True):
            if isinstance(result, BaseException):
                refused = refused or result
            elif takes is _SLOT:
                # Given back by ``finish`` (or below, when another check refused the call).
                ctx.slots = (principal.key_id,)
        if refused is None:
            return
        for (takes, _), result in zip(checks, results, strict=True):
            if takes is not None and takes is not _SLOT and not isinstance(result, BaseException):
                limiter.refund(takes, 1, 0)
        self.leave_call(ctx)
        raise refused

    async def admit(self, ctx: CallContext, plan: Plan) -> Reservation:
        """Refuses a model the key may not use (403), then reserves the request's tokens and
        cost against the key's and the project's TPM and budget (RPM was counted by
        ``admit_call``), or raises the 429 with nothing taken. The reservations are asked
        together, like ``admit_call``'s checks."""
        principal = ctx.principal
        if principal.is_admin:
            return NOTHING
        if principal.allowed_models:
            _check_model(principal.allowed_models, plan)
        limits = principal.limits
        shared = principal.project_limits if principal.project_id else None
        tpm = limits.tokens_per_minute
        budget = limits.monthly_budget_usd
        project_tpm = shared.tokens_per_minute if shared is not None else None
        project_budget = shared.monthly_budget_usd if shared is not None else None
        if tpm is None and budget is None and project_tpm is None and project_budget is None:
            return NOTHING
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
        # Rounded up: the reservation is a bound, never a nano-dollar short of one.
        estimate = math.ceil(worst * NANOS_PER_USD)
        tokens = tokens_in + tokens_out
        key_id = principal.key_id
        # (the Reservation field the result goes to, the reservation)
        asks: list[tuple[str, Awaitable[int]]] = []
        if budget is not None:
            asks.append(("cost", self.budgets.reserve(key_id, usd_to_nanos(budget), estimate)))
        if tpm is not None:
            asks.append(("tokens", self.limiter.acquire(key_id, None, tpm, tokens)))
        if principal.project_id:
            project = project_name(principal.project_id)
            if project_budget is not None:
                limit = usd_to_nanos(project_budget)
                asks.append(("project_cost", self.budgets.reserve(project, limit, estimate)))
            if project_tpm is not None:
                asks.append(
                    ("project_tokens", self.limiter.acquire(project, None, project_tpm, tokens))
                )
        results = await _together([ask for _, ask in asks])
        taken = Reservation()
        refused: BaseException | None = None
        for (field, _), result in zip(asks, results, strict=True):
            if isinstance(result, BaseException):
                refused = refused or result
            else:
                setattr(taken, field, result)
        if refused is not None:
            self._give_back(principal, taken)
            raise refused
        return taken

    def _give_back(self, principal: Principal, taken: Reservation) -> None:
        key_id = principal.key_id
        if taken.cost:
            self.budgets.settle(key_id, taken.cost, 0)
        if taken.tokens:
            self.limiter.reconcile(key_id, taken.tokens, 0)
        if principal.project_id:
            project = project_name(principal.project_id)
            if taken.project_cost:
                self.budgets.settle(project, taken.project_cost, 0)
            if taken.project_tokens:
                self.limiter.reconcile(project, taken.project_tokens, 0)

    def leave_call(self, ctx: CallContext) -> None:
        """Gives back the call's concurrent slots, once (``slots`` is emptied first, so a
        second call does nothing)."""
        slots = ctx.slots
        if slots:
            ctx.slots = ()
            for name in slots:
                self.limiter.leave(name)

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
        if ctx.slots:
            self.leave_call(ctx)
        run = record.run
        usage = record.usage
        principal = ctx.principal
        key_id = principal.key_id
        if record.cost is not None:
            input_n, output_n, cached_n, write_n, total_n = cost_nanos(record.cost)
        else:
            input_n = output_n = cached_n = write_n = total_n = 0
        project_id = principal.project_id
        if r.tokens or r.project_tokens:
            actual = usage.input_tokens + usage.output_tokens if usage is not None else 0
            if r.tokens:
                self.limiter.reconcile(key_id, r.tokens, actual)
            if r.project_tokens and project_id:
                self.limiter.reconcile(project_name(project_id), r.project_tokens, actual)
        if not principal.is_admin and (r.cost or total_n):
            self.budgets.settle(key_id, r.cost, total_n)
        if project_id and (r.project_cost or total_n):
            self.budgets.settle(project_name(project_id), r.project_cost, total_n)
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
                new_row_id(),
                project_id,
            )
        )


def _check_model(allowed: tuple[str, ...], plan: Plan) -> None:
    """ModelNotAllowedError unless the model the caller sent, or the route it resolved to,
    is one the key may use."""
    request = plan.request
    asked = request.model if request is not None else ""
    if model_allowed(allowed, asked, plan.route.name):
        return
    raise ModelNotAllowedError(
        f"This gateway key may not use the model {asked or plan.route.name!r}; it may use: "
        f"{', '.join(allowed)}.",
        param="model",
    )


# ``admit_call``'s marker for the concurrency check (what it takes is the call's slot).
_SLOT = "\0slot"


async def _together(checks: Sequence[Awaitable[T]]) -> list[T | BaseException]:
    """Runs independent checks at once, with each one's result or exception, in order.

    Over a networked store the checks then leave in the same loop iteration, so a client that
    pipelines what is sent together (the Redis backend) makes one round trip for all of them.
    One check is awaited as it is (no task to create: the embedded backend's usual case); its
    refusal propagates directly, since with one check there is nothing else to give back."""
    if len(checks) == 1:
        return [await checks[0]]
    return await asyncio.gather(*checks, return_exceptions=True)


_NO_USAGE = types_pb2.Usage()
# Caller-supplied model names are cut to this length in the ledger (as in the request log).
_MAX_MODEL = 200
