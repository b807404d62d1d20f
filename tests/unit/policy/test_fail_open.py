"""`limits.on_store_error: allow`: checks a store cannot answer admit and take nothing; what
they would give back is not given back to the real store; actual spend is still settled."""

from __future__ import annotations

import pytest

from server.core.errors import RateLimitedError, StoreUnavailableError
from server.policy.fail_open import fail_open
from server.store.embedded.budgets import MemoryBudgets
from server.store.embedded.limits import MemoryRateLimiter


class Outage:
    """Turns a real in-memory limiter/budget store unreachable while ``down`` is set."""

    def __init__(self) -> None:
        self.down = False

    def check(self) -> None:
        if self.down:
            raise StoreUnavailableError("the limit store (Redis) is unreachable")


class FlakyLimiter(MemoryRateLimiter):
    def __init__(self, outage: Outage) -> None:
        super().__init__()
        self.outage = outage

    async def acquire(self, key_id: str, rpm: int | None, tpm: int | None, tokens: int) -> int:
        self.outage.check()
        return await super().acquire(key_id, rpm, tpm, tokens)

    async def enter(self, name: str, limit: int) -> None:
        self.outage.check()
        await super().enter(name, limit)


class FlakyBudgets(MemoryBudgets):
    def __init__(self, outage: Outage) -> None:
        super().__init__({})
        self.outage = outage

    async def reserve(self, key_id: str, limit: int, estimate: int) -> int:
        self.outage.check()
        return await super().reserve(key_id, limit, estimate)


async def test_an_unreachable_store_admits_without_taking_anything() -> None:
    outage = Outage()
    inner_limiter, inner_budgets = FlakyLimiter(outage), FlakyBudgets(outage)
    limiter, budgets = fail_open(inner_limiter, inner_budgets)
    outage.down = True
    assert await limiter.acquire("k", 1, 100, 50) == 0
    assert await budgets.reserve("k", 1_000, 900) == 0
    await limiter.enter("k", 1)
    assert inner_limiter.in_flight("k") == 0
    outage.down = False
    # The slot admitted during the outage is not one of the store's: another caller's real
    # slot survives its leave.
    await limiter.enter("k", 1)
    limiter.leave("k")
    assert inner_limiter.in_flight("k") == 1
    limiter.leave("k")
    assert inner_limiter.in_flight("k") == 0
    # The spend of a request admitted unchecked is still booked once the store answers.
    budgets.settle("k", 0, 700)
    assert await budgets.spent("k") == 700
    assert limiter.unchecked.admitted_unchecked == 3  # type: ignore[attr-defined]


async def test_a_reachable_store_still_refuses() -> None:
    limiter, _ = fail_open(FlakyLimiter(Outage()), FlakyBudgets(Outage()))
    await limiter.acquire("k", 1, None, 0)
    with pytest.raises(RateLimitedError):
        await limiter.acquire("k", 1, None, 0)
