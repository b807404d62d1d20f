"""Runs the store conformance suite once per state backend (``server.core.state``).

``embedded`` always runs; ``redis`` (limits, budgets and health in Redis on a fresh key
prefix; keys, ledger and responses from the embedded SQLite classes) needs
SWITCHBOARD_TEST_REDIS_URL and is skipped, saying so, without it.

A backend is one ``Backend``: its ``Stores`` plus ``replica()``,
another handle on the same state as a second process or replica would open it (for the
embedded backend: a second SQLite connection on the same data dir; its in-process counters
are, by design, the same objects). ``flush()`` sends what every replica queued (the
non-blocking calls of a networked backend); the embedded one has nothing to send.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from server.config import CircuitConfig
from server.core.state import Stores
from server.store.distributed.redis_limits_backend import RedisLimits, open_redis_limits
from server.store.embedded.backend import open_embedded
from server.store.embedded.keys import SqliteKeyStore
from server.store.embedded.ledger import SqliteLedger
from server.store.embedded.responses import SqliteResponseStore
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
        )
        opened.append((stores, limits))
        return stores

    async def flush() -> None:
        for _, limits in opened:
            await limits.flush()

    try:
        yield Backend("redis", await open_one(), open_one, flush)
    finally:
        for stores, limits in reversed(opened):
            await limits.aclose()
            await stores.aclose()
        await delete_prefix(url, prefix)


BACKENDS = {"embedded": _embedded, "redis": _redis}


@pytest.fixture(params=sorted(BACKENDS))
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with BACKENDS[request.param](tmp_path) as b:
        yield b
