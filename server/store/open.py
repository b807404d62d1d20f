"""Opens the state backend the configuration selects (``server.config.store_settings``).

Embedded (the default): SQLite in the data dir plus in-process counters, one process.
Distributed (both ``SWITCHBOARD_DATABASE_URL`` and ``SWITCHBOARD_REDIS_URL``, or the
``store`` section): PostgreSQL + Redis, shared by every process and replica. ``serve``, the
CLI and the admin API all open their state here, so they always agree on where it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from server.config import Config, store_settings
from server.core.state import Stores
from server.store.embedded.backend import open_embedded


async def open_stores(config: Config, env: Mapping[str, str], data_dir: Path) -> Stores:
    """The configured backend's stores (``ConfigError`` for a malformed store section;
    ``StoreUnavailableError`` when a distributed store cannot be reached at start)."""
    store = store_settings(config, env)
    if not store.distributed:
        return open_embedded(data_dir, config.circuit)
    # Imported only here: the embedded default needs neither driver loaded.
    from server.store.distributed.backend import open_distributed

    return await open_distributed(store, config.circuit)
