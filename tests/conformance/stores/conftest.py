"""Runs the store conformance suite once per state backend (``server.core.state``).

``embedded`` always runs. A backend is one ``Backend``: its ``Stores`` plus ``replica()``,
another handle on the same state as a second process or replica would open it (for the
embedded backend: a second SQLite connection on the same data dir; its in-process counters
are, by design, the same objects).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from server.config import CircuitConfig
from server.core.state import Stores
from server.store.embedded.backend import open_embedded
from server.store.embedded.keys import SqliteKeyStore
from server.store.embedded.ledger import SqliteLedger
from server.store.embedded.responses import SqliteResponseStore

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


BACKENDS = {"embedded": _embedded}


@pytest.fixture(params=sorted(BACKENDS))
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with BACKENDS[request.param](tmp_path) as b:
        yield b
