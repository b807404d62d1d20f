"""Opens the distributed backend: PostgreSQL (keys, projects, the ledger, stored responses)
and Redis (rate limits, concurrency slots, budgets, circuit state), shared by every process.

Budgets start from the ledger: when the month's spend counter is absent in Redis (the first
process of the month, or a Redis that restarted empty) it is seeded from PostgreSQL's
``month_spend``. PostgreSQL is opened first so that a refused database fails the start before
any Redis task runs.
"""

from __future__ import annotations

from server.config import CircuitConfig, StoreConfig
from server.core.state import Stores
from server.store.distributed.postgres import open_postgres
from server.store.distributed.redis_limits_backend import open_redis_limits


async def open_distributed(store: StoreConfig, circuit: CircuitConfig | None = None) -> Stores:
    """The stores of one process (``store.distributed`` must be true)."""
    assert store.database_url is not None and store.redis_url is not None
    pg = await open_postgres(store.database_url, store.database_schema)
    try:
        limits = open_redis_limits(
            store.redis_url, pg.ledger.month_spend, prefix=store.redis_prefix, circuit=circuit
        )
        limits.start()
    except BaseException:
        await pg.aclose()
        raise
    return Stores(
        keys=pg.keys,
        limiter=limits.limiter,
        budgets=limits.budgets,
        ledger=pg.ledger,
        health=limits.health,
        responses=pg.responses,
        closers=[limits.aclose],
        limit_store_stats=limits.stats,
    )
