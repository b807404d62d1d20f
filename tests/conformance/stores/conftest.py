"""Runs the store conformance suite once per state backend (``server.core.state``).

``embedded`` always runs; ``postgres`` (keys, ledger and responses in PostgreSQL, the rest
embedded) runs on a fresh schema of ``SWITCHBOARD_TEST_POSTGRES_URL`` and ``redis`` (limits,
budgets and health in Redis on a fresh key prefix of ``SWITCHBOARD_TEST_REDIS_URL``, the rest
from the embedded SQLite classes); each skips, saying so, when its variable is unset.

A backend is one ``Backend``: its ``Stores`` plus ``replica()``, another handle on the same
state as a second process or replica would open it (for the embedded backend: a second SQLite
connection on the same data dir; its in-process counters are, by design, the same objects; for
postgres: a second pool and stores on the same schema; for redis: a second client and limit
stores on the same prefix). ``flush()`` sends what every replica queued (the non-blocking
calls of a networked backend); the embedded one has nothing to send.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from server.config import CircuitConfig
from server.core.state import Stores
from server.store.distributed.postgres import open_postgres
from server.store.distributed.redis_limits_backend import RedisLimits, open_redis_limits
from server.store.embedded.backend import open_embedded
from server.store.embedded.budgets import MemoryBudgets
from server.store.embedded.health import LocalHealth
from server.store.embedded.keys import SqliteKeyStore
from server.store.embedded.ledger import SqliteLedger
from server.store.embedded.limits import MemoryRateLimiter
from server.store.embedded.responses import SqliteResponseStore
from tests.support.postgres import fresh_schema, postgres_url
from tests.support.redis import delete_prefix, fresh_prefix, redis_url

# Short circuit timings so the health tests run in milliseconds on real clocks.
CIRCUIT = CircuitConfig(consecutive_failures=3, cooldown_seconds=0.2, window_seconds=30.0)


@dataclass
class Backend:
    """One backend under test: its stores and a way to open another replica's view."""

    name: str
    stores: Stores
    replica: Callable[[], Awaitable[Stores]]
    flush: Callable[[], Awaitable[None]] = field(default=lambda: _nothing())
    _opened: list[Stores] = field(default_factory=list)


async def _nothing() -> None:
    return None


@contextlib.asynccontextmanager
async def _embedded(tmp_path: Path) -> AsyncIterator[Backend]:
    stores = open_embedded(tmp_path, CIRCUIT)
    opened: list[Stores] = []

    async def replica() -> Stores:
        other = Stores(
            keys=SqliteKeyStore(tmp_path),
            limiter=stores.limiter,
            budgets=stores.budgets,
            ledger=SqliteLedger(tmp_path),
            health=stores.health,
            responses=SqliteResponseStore(tmp_path),
        )
        opened.append(other)
        return other

    try:
        yield Backend("embedded", stores, replica)
    finally:
        for other in opened:
            await other.aclose()
        await stores.aclose()


@contextlib.asynccontextmanager
async def _postgres(tmp_path: Path) -> AsyncIterator[Backend]:
    url = postgres_url()
    async with fresh_schema(url) as schema:
        pg = await open_postgres(url, schema)
        stores = Stores(
            keys=pg.keys,
            limiter=MemoryRateLimiter(),
            budgets=MemoryBudgets({}),
            ledger=pg.ledger,
            health=LocalHealth(CIRCUIT),
            responses=pg.responses,
        )
        opened: list[Stores] = []

        async def replica() -> Stores:
            other = await open_postgres(url, schema)
            opened.append(
                Stores(
                    keys=other.keys,
                    limiter=stores.limiter,
                    budgets=stores.budgets,
                    ledger=other.ledger,
                    health=stores.health,
                    responses=other.responses,
                )
            )
            return opened[-1]

        try:
            yield Backend("postgres", stores, replica)
        finally:
            for other in opened:
                await other.aclose()
            await stores.aclose()


@contextlib.asynccontextmanager
async def _redis(tmp_path: Path) -> AsyncIterator[Backend]:
    url = redis_url()
    prefix = fresh_prefix()
    opened: list[tuple[Stores, RedisLimits]] = []

    async def open_one() -> Stores:
        ledger = SqliteLedger(tmp_path)
        limits = open_redis_limits(url, ledger.month_spend, prefix=prefix, circuit=CIRCUIT)
        limits.start()
        await limits.health.synced.wait()
        stores = Stores(
            keys=SqliteKeyStore(tmp_path),
            limiter=limits.limiter,
            budgets=limits.budgets,
            ledger=ledger,
            health=limits.health,
            responses=SqliteResponseStore(tmp_path),
            closers=[limits.aclose],
        )
        opened.append((stores, limits))
        return stores

    async def flush() -> None:
        for _, limits in opened:
            await limits.flush()

    try:
        yield Backend("redis", await open_one(), open_one, flush)
    finally:
        for stores, _ in reversed(opened):
            await stores.aclose()
        await delete_prefix(url, prefix)


BACKENDS = {"embedded": _embedded, "postgres": _postgres, "redis": _redis}


# Backends on a shared service carry its marker (`-m "not postgres"` leaves them out).
_MARKS = {"postgres": pytest.mark.postgres, "redis": pytest.mark.redis}


@pytest.fixture(
    params=[pytest.param(name, marks=_MARKS.get(name, ())) for name in sorted(BACKENDS)]
)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with BACKENDS[request.param](tmp_path) as b:
        yield b
