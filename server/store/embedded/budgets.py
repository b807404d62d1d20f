"""The embedded ``BudgetStore``: hard monthly spend limits per gateway key, in process.

Money is integer nano-USD (``server.core.money``), so sums are exact and the in-memory spend
equals the usage ledger's ``SUM(total_nanousd)``. A key's spend for the current calendar month
(UTC) is loaded from the ledger at startup and kept in memory; each settled request adds its
actual cost. Before a call the request reserves its estimated cost (``server.policy.admission``
says how it is estimated) and that reservation counts against the budget until the request
settles.

A request is refused with ``BudgetExceededError`` (429, RESOURCE_EXHAUSTED, ``QuotaFailure``):

- when the month's settled spend has reached the budget: ``retry_after`` is the time until the
  next month starts (UTC), when the budget renews;
- when spend + in-flight reservations + this request's estimate would pass it: no
  ``retry_after``, since waiting does not help this request (a smaller ``max_tokens`` may).

Owned by the event loop thread (nothing suspends).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from server.core.context import limit_subject
from server.core.errors import BudgetExceededError, QuotaViolation
from server.core.money import format_usd, month_bounds, month_of


def budget_refusal(
    key_id: str, limit: int, spent: int, held: int, estimate: int, until_month_end: float
) -> BudgetExceededError | None:
    """Why ``estimate`` cannot be reserved with ``spent`` settled and ``held`` reserved against
    ``limit``, or None when it can (shared with the Redis budgets so both refuse alike)."""
    subject, who = limit_subject(key_id)
    if spent >= limit:
        return BudgetExceededError(
            f"Monthly budget of {format_usd(limit)} reached for {who} "
            f"({format_usd(spent)} spent this month); it renews at the start of next month "
            "(UTC).",
            retry_after=max(until_month_end, 0.0),
            quota_violations=[
                QuotaViolation(
                    subject,
                    f"monthly_budget_usd limit of {format_usd(limit)} reached "
                    f"({format_usd(spent)} spent)",
                )
            ],
        )
    if spent + held + estimate > limit:
        left = max(limit - spent - held, 0)
        return BudgetExceededError(
            f"This request's estimated cost of up to {format_usd(estimate)} exceeds what is "
            f"left of the monthly budget of {who} ({format_usd(left)} of "
            f"{format_usd(limit)}, after {format_usd(held)} reserved by requests in flight); "
            "lower max_tokens or retry when other requests finish.",
            quota_violations=[
                QuotaViolation(
                    subject,
                    f"monthly_budget_usd limit of {format_usd(limit)} would be exceeded "
                    f"({format_usd(spent)} spent, {format_usd(held)} reserved, "
                    f"{format_usd(estimate)} estimated)",
                )
            ],
        )
    return None


class MemoryBudgets:
    """Month-to-date spend and in-flight reservations per key (``BudgetStore``)."""

    def __init__(
        self,
        spent: Mapping[str, int] | None = None,
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = wall_clock
        self._spent: dict[str, int] = dict(spent or {})
        self._reserved: dict[str, int] = {}
        self._start, self._end = month_bounds(*month_of(wall_clock()))

    @property
    def month(self) -> tuple[float, float]:
        """The current month's bounds (unix seconds), after any rollover."""
        self._roll(self._clock())
        return self._start, self._end

    async def spent(self, key_id: str) -> int:
        """Settled spend of this key in the current month, nano-USD."""
        self._roll(self._clock())
        return self._spent.get(key_id, 0)

    def reserved(self, key_id: str) -> int:
        """Cost reserved by this key's requests in flight, nano-USD."""
        return self._reserved.get(key_id, 0)

    async def reserve(self, key_id: str, limit: int, estimate: int) -> int:
        """Reserves ``estimate`` nano-USD against a ``limit``; raises ``BudgetExceededError``."""
        now = self._clock()
        self._roll(now)
        spent = self._spent.get(key_id, 0)
        held = self._reserved.get(key_id, 0)
        refusal = budget_refusal(key_id, limit, spent, held, estimate, self._end - now)
        if refusal is not None:
            raise refusal
        if estimate:
            self._reserved[key_id] = held + estimate
        return estimate

    def settle(self, key_id: str, reserved: int, actual: int) -> None:
        """Releases a reservation and adds the actual cost to this month's spend."""
        if reserved:
            left = self._reserved.get(key_id, 0) - reserved
            if left > 0:
                self._reserved[key_id] = left
            else:
                self._reserved.pop(key_id, None)
        if actual:
            self._roll(self._clock())
            self._spent[key_id] = self._spent.get(key_id, 0) + actual

    def _roll(self, now: float) -> None:
        # Only forward: a wall clock stepping back must not forget this month's spend.
        if now >= self._end:
            self._spent.clear()
            self._start, self._end = month_bounds(*month_of(now))
