"""Opens the PostgreSQL half of the distributed backend: keys and projects, the usage ledger
and stored responses, on one pool and one schema (``pg_pool``, ``pg_schema``, ``pg_keys``,
``pg_ledger``, ``pg_responses``)."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from server.store.distributed import pg_pool
from server.store.distributed.pg_keys import PgKeyStore
from server.store.distributed.pg_ledger import PgLedger
from server.store.distributed.pg_pool import PoolHandle, reachable
from server.store.distributed.pg_responses import PgResponseStore
from server.store.distributed.pg_schema import migrate


@dataclass(slots=True)
class PgStores:
    """The PostgreSQL stores of one process, sharing ``pool``."""

    pool: asyncpg.Pool
    keys: PgKeyStore
    ledger: PgLedger
    responses: PgResponseStore

    def __repr__(self) -> str:
        return f"PgStores({self.keys!r})"

    async def aclose(self) -> None:
        """Writes the ledger out, stops the key listener and closes the pool."""
        await self.ledger.aclose()
        await self.keys.aclose()
        await self.responses.aclose()


async def open_postgres(
    url: str, schema: str = "switchboard", *, local_peers: bool = True
) -> PgStores:
    """Connects, applies the migrations the schema lacks (``pg_schema.migrate``) and starts the
    key store's change listener. ``StoreUnavailableError`` when PostgreSQL is unreachable."""
    pg_pool.check_schema(schema)
    pool = await pg_pool.create_pool(url, schema)
    try:
        with reachable("the key store"):
            async with pool.acquire() as conn:
                await migrate(conn, schema)
        handle = PoolHandle(pool, url, schema, holders=3)
        keys = PgKeyStore(handle, local_peers=local_peers)
        await keys.start()
    except BaseException:
        pool.terminate()
        raise
    return PgStores(pool, keys, PgLedger(handle), PgResponseStore(handle))
