"""Opens the embedded backend (``server.core.state.Stores`` over one data dir)."""

from __future__ import annotations

import time
from pathlib import Path

from server.config import CircuitConfig
from server.core.money import month_bounds, month_of
from server.core.state import Stores
from server.store.embedded.budgets import MemoryBudgets
from server.store.embedded.health import LocalHealth
from server.store.embedded.keys import SqliteKeyStore
from server.store.embedded.ledger import SqliteLedger, month_spend
from server.store.embedded.limits import MemoryRateLimiter
from server.store.embedded.responses import SqliteResponseStore


def open_embedded(data_dir: Path, circuit: CircuitConfig | None = None) -> Stores:
    """The embedded stores over ``data_dir``; this month's spend is read back from the ledger
    so that budgets survive restarts."""
    ledger = SqliteLedger(data_dir)
    spent = month_spend(data_dir, *month_bounds(*month_of(time.time())))
    return Stores(
        keys=SqliteKeyStore(data_dir),
        limiter=MemoryRateLimiter(),
        budgets=MemoryBudgets(spent),
        ledger=ledger,
        health=LocalHealth(circuit),
        responses=SqliteResponseStore(data_dir),
    )
