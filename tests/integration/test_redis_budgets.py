"""The Redis budgets across independent instances against the machine's real Redis: never
more than the budget reserved, leases of a dead process expire, the spend counter is seeded
from the ledger once and again after Redis forgets it."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from server.core.errors import BudgetExceededError
from tests.support.redis import LimitsFactory, fresh
from tests.support.redis import factory as factory  # the fixture

# Against the shared Redis (`-m "not redis"` leaves these out).
pytestmark = pytest.mark.redis


class Ledger:
    """Stands in for ``UsageReader.month_spend``: what the ledger holds, and how often it was
    read."""

    def __init__(self, spend: dict[str, int]) -> None:
        self.spend = spend
        self.reads = 0

    async def month_spend(self, start: float, end: float) -> dict[str, int]:
        self.reads += 1
        await asyncio.sleep(0.01)  # a real query takes a while: replicas overlap
        return dict(self.spend)


async def test_concurrent_reserves_over_three_instances_never_pass_the_budget(
    factory: LimitsFactory,
) -> None:
    instances = [await factory.open() for _ in range(3)]
    key = fresh()

    async def one(i: int) -> int:
        try:
            return await instances[i % 3].budgets.reserve(key, 100_000, 3_000)
        except BudgetExceededError:
            return 0

    reserved = await asyncio.gather(*(one(i) for i in range(60)))
    assert sum(reserved) == 33 * 3_000  # 100,000 // 3,000 reservations fit, not one more
    for i, amount in enumerate(reserved):
        if amount:
            instances[i % 3].budgets.settle(key, amount, 3_000)
    for limits in instances:
        await limits.flush()
    assert await instances[0].budgets.spent(key) == 99_000
    with pytest.raises(BudgetExceededError) as info:
        await instances[2].budgets.reserve(key, 100_000, 3_000)
    assert info.value.retry_after is None and info.value.quota_violations


async def test_a_dead_process_s_reservations_expire_with_their_lease(
    factory: LimitsFactory,
) -> None:
    lease = 0.4
    dying = await factory.open(reservation_lease=lease)
    other = await factory.open(reservation_lease=lease)
    key = fresh()
    await dying.budgets.reserve(key, 100_000, 60_000)
    await dying.client.redis.aclose()  # SIGKILL-like: never settles
    await asyncio.sleep(lease / 2 + 0.05)
    # The survivor's reservation keeps the set alive past the dead one's lease, so only the
    # purge of expired leases can free it.
    await other.budgets.reserve(key, 100_000, 10_000)
    with pytest.raises(BudgetExceededError):
        await other.budgets.reserve(key, 100_000, 35_000)
    await asyncio.sleep(lease / 2)
    assert await other.budgets.reserve(key, 100_000, 35_000) == 35_000


async def test_the_spend_is_seeded_once_and_again_after_redis_forgets_it(
    factory: LimitsFactory,
) -> None:
    key = fresh()
    ledger = Ledger({key: 50_000})
    instances = [await factory.open(seed=ledger.month_spend) for _ in range(3)]
    # Three replicas find the month's counter absent at once: it is seeded once, not thrice.
    await asyncio.gather(*(i.budgets.reserve(key, 100_000, 1_000) for i in instances))
    assert await instances[0].budgets.spent(key) == 50_000
    for limits in instances:
        limits.budgets.settle(key, 1_000, 1_000)
        await limits.flush()
    assert await instances[1].budgets.spent(key) == 53_000
    ledger.spend[key] = 53_000  # the ledger has the rows by now

    # Redis restarted empty (this Redis keeps nothing on disk): the next reserve reseeds.
    direct = aioredis.Redis.from_url(factory.url)
    try:
        assert await direct.delete(instances[0].budgets.spend_key(key)) == 1
    finally:
        await direct.aclose()
    reads = ledger.reads
    with pytest.raises(BudgetExceededError):
        await instances[2].budgets.reserve(key, 100_000, 48_000)
    assert ledger.reads == reads + 1
    assert await instances[0].budgets.spent(key) == 53_000
    assert await instances[0].budgets.reserve(key, 100_000, 47_000) == 47_000


async def test_a_spent_budget_says_when_it_renews(factory: LimitsFactory) -> None:
    limits = await factory.open()
    key = fresh()
    limits.budgets.settle(key, await limits.budgets.reserve(key, 1_000, 500), 1_000)
    await limits.flush()
    with pytest.raises(BudgetExceededError) as info:
        await limits.budgets.reserve(key, 1_000, 0)
    assert info.value.retry_after is not None and info.value.retry_after > 0
