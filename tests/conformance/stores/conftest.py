"""Runs the store conformance suite once per state backend (``server.core.state``).

``embedded`` always runs; ``postgres`` (keys, ledger and responses in PostgreSQL, the rest
embedded) runs on a fresh schema of ``SWITCHBOARD_TEST_POSTGRES_URL`` and skips, saying so,
when it is unset. A backend is one ``Backend``: its ``Stores`` plus ``replica()``,
another handle on the same state as a second process or replica would open it (for the
embedded backend: a second SQLite connection on the same data dir; its in-process counters
are, by design, the same objects; for postgres: a second pool and stores on the same schema).
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
from server.store.embedded.backend import open_embedded
from server.store.embedded.budgets import MemoryBudgets
from server.store.embedded.health import LocalHealth
from server.store.embedded.keys import SqliteKeyStore
from server.store.embedded.ledger import SqliteLedger
from server.store.embedded.limits import MemoryRateLimiter
from server.store.embedded.responses import SqliteResponseStore
from tests.support.postgres import fresh_schema, postgres_url

# Short circuit timings so the health tests run in milliseconds on real clocks.
CIRCUIT = CircuitConfig(consecutive_failures=3, cooldown_seconds=0.2, window_seconds=30.0)


@dataclass
class Backend:
    """One backend under test: its stores and a way to open another replica's view."""

    name: str
    stores: Stores
    replica: Callable[[], Awaitable[Stores]]
    _opened: list[Stores] = field(default_factory=list)


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


BACKENDS = {"embedded": _embedded, "postgres": _postgres}


# Backends on a shared service carry its marker (`-m "not postgres"` leaves them out).
_MARKS = {"postgres": pytest.mark.postgres}


@pytest.fixture(
    params=[pytest.param(name, marks=_MARKS.get(name, ())) for name in sorted(BACKENDS)]
)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with BACKENDS[request.param](tmp_path) as b:
        yield b
