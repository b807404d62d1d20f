"""Monthly budgets: integer nano-USD, reservations in flight, refusals and month rollover."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from server.core.errors import BudgetExceededError
from server.core.money import (
    format_usd,
    month_bounds,
    month_of,
    nanos_to_usd,
    usd_to_nanos,
)
from server.store.embedded.budgets import MemoryBudgets as MonthlyBudgets
from tests.unit.policy.support import Clock

USD = 1_000_000_000
MID_NOVEMBER = datetime(2026, 11, 15, 12, 0, tzinfo=UTC).timestamp()
DECEMBER = datetime(2026, 12, 1, tzinfo=UTC).timestamp()


def test_money_helpers() -> None:
    assert month_bounds(2026, 12) == (
        datetime(2026, 12, 1, tzinfo=UTC).timestamp(),
        datetime(2027, 1, 1, tzinfo=UTC).timestamp(),
    )
    assert month_of(DECEMBER - 0.001) == (2026, 11)
    assert month_of(DECEMBER) == (2026, 12)
    assert usd_to_nanos(0.1) == 100_000_000
    assert usd_to_nanos(1e-10) == 0
    assert nanos_to_usd(1_500_000_000) == 1.5
    assert format_usd(1_250_000_000) == "$1.25"
    assert format_usd(5 * USD) == "$5.00"
    assert format_usd(123_000) == "$0.000123"
    assert format_usd(0) == "$0.00"


async def test_reservations_count_until_settled_and_sums_are_exact() -> None:
    b = MonthlyBudgets(wall_clock=Clock(MID_NOVEMBER))
    assert await b.reserve("k", usd_to_nanos(1.0), 300_000_000) == 300_000_000
    assert await b.reserve("k", usd_to_nanos(1.0), 300_000_000) == 300_000_000
    assert b.reserved("k") == 600_000_000
    # 0.6 reserved + 0.5 estimated > 1.0: refused, and waiting is not the remedy.
    with pytest.raises(BudgetExceededError) as info:
        await b.reserve("k", usd_to_nanos(1.0), 500_000_000)
    err = info.value
    assert err.retry_after is None
    assert err.http_status == 429 and err.reason == "BUDGET_EXCEEDED"
    assert err.quota_violations[0].subject == "key:k"
    assert "would be exceeded" in err.quota_violations[0].description
    assert "$0.40" in err.message and "lower max_tokens" in err.message
    # Settling releases the reservation and adds the actual cost.
    b.settle("k", 300_000_000, 123)
    assert b.reserved("k") == 300_000_000
    assert await b.spent("k") == 123
    b.settle("k", 300_000_000, 0)
    assert b.reserved("k") == 0
    # Ten thousand tenths of a cent add up exactly.
    for _ in range(10_000):
        b.settle("k", 0, usd_to_nanos(0.001 / 10))
    assert await b.spent("k") == 123 + 1_000_000_000


async def test_a_spent_budget_refuses_until_next_month() -> None:
    clock = Clock(MID_NOVEMBER)
    b = MonthlyBudgets({"k": 2 * USD, "other": 1}, wall_clock=clock)
    with pytest.raises(BudgetExceededError) as info:
        await b.reserve("k", usd_to_nanos(2.0), 0)
    err = info.value
    assert err.retry_after == pytest.approx(DECEMBER - MID_NOVEMBER)
    assert err.quota_violations[0].description == (
        "monthly_budget_usd limit of $2.00 reached ($2.00 spent)"
    )
    # A key without spend, and a bigger budget, are unaffected.
    await b.reserve("fresh", usd_to_nanos(2.0), USD)
    await b.reserve("k", usd_to_nanos(3.0), USD)
    # December: spend starts over; reservations in flight are kept.
    clock.now = DECEMBER + 1.0
    assert await b.spent("k") == 0
    assert b.reserved("k") == USD
    await b.reserve("k", usd_to_nanos(2.0), 0)
    assert b.month == month_bounds(2026, 12)


async def test_a_request_that_settles_after_the_month_turned_counts_in_the_new_month() -> None:
    clock = Clock(DECEMBER - 1.0)
    b = MonthlyBudgets(wall_clock=clock)
    await b.reserve("k", usd_to_nanos(1.0), 100)
    clock.now = DECEMBER + 1.0
    b.settle("k", 100, 80)
    assert await b.spent("k") == 80 and b.reserved("k") == 0
