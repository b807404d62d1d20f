"""The Redis half of the distributed backend in one piece: one client shared by the rate
limiter, the budgets and the health replication, started and closed together."""

from __future__ import annotations

from dataclasses import dataclass

from server.config import CircuitConfig
from server.store.distributed.redis_budgets import RESERVATION_LEASE, RedisBudgets, Seed
from server.store.distributed.redis_client import MAX_QUEUED, RedisClient
from server.store.distributed.redis_health import RedisHealth
from server.store.distributed.redis_limits import SLOT_LEASE, RedisRateLimiter


@dataclass(slots=True)
class RedisLimits:
    """``RateLimiter``, ``BudgetStore`` and ``HealthStore`` over one ``RedisClient``."""

    client: RedisClient
    limiter: RedisRateLimiter
    budgets: RedisBudgets
    health: RedisHealth

    def start(self) -> None:
        """Starts the health subscriber (needs the running loop)."""
        self.health.start()

    async def flush(self) -> None:
        """Sends every queued update now (``StoreUnavailableError`` if Redis is down)."""
        await self.client.flush()

    def problems(self) -> list[str]:
        return self.client.problems()

    def stats(self) -> tuple[int, int, int]:
        """(round trips, updates queued, updates dropped) of the client, for /metrics."""
        client = self.client
        return client.round_trips, client.queued, client.dropped

    async def aclose(self) -> None:
        """Stops the background tasks, drains the queue, closes the connections."""
        await self.health.aclose()
        await self.limiter.aclose()
        await self.client.aclose()


def open_redis_limits(
    url: str,
    seed: Seed,
    *,
    prefix: str = "sb:",
    circuit: CircuitConfig | None = None,
    timeout: float = 0.5,
    window: float = 60.0,
    slot_lease: float = SLOT_LEASE,
    reservation_lease: float = RESERVATION_LEASE,
    max_queued: int = MAX_QUEUED,
) -> RedisLimits:
    """The Redis limit stores of one process (call ``start`` once the loop runs)."""
    client = RedisClient(url, prefix=prefix, timeout=timeout, max_queued=max_queued)
    return RedisLimits(
        client,
        RedisRateLimiter(client, window=window, slot_lease=slot_lease),
        RedisBudgets(client, seed, lease=reservation_lease),
        RedisHealth(client, circuit),
    )
