"""The PostgreSQL connection pool the distributed stores share, and how its failures read.

asyncpg, pooled (min 1, max 10 connections per process: a gateway's PostgreSQL work is key
lookups that miss the cache, batched ledger writes and stored responses, none of which holds a
connection for long). Connecting and every command are bounded (2 s by default), so an
unreachable or stalled server turns into ``StoreUnavailableError`` quickly instead of holding
requests.

Every table lives in one schema (``search_path`` is set per connection), so several gateways or
test runs can share a database. URLs carry passwords: nothing here puts a URL, or a driver
exception's text, into a repr, a log line or an error message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import asyncpg

from server.core.errors import StoreUnavailableError

log = logging.getLogger(__name__)

SCHEMA_PATTERN = re.compile(r"[a-z_][a-z0-9_]{0,62}")
CONNECT_TIMEOUT = 2.0
COMMAND_TIMEOUT = 2.0
POOL_MIN = 1
POOL_MAX = 10

# What a failure to reach the server looks like: the socket (refused, reset, timed out), the
# connection (class 08, or asyncpg's "connection was closed"), an operator stopping it
# (class 57: admin shutdown, cannot connect now) or running out of connections (class 53).
UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
)


def check_schema(schema: str) -> str:
    """``schema`` when it is a plain lower-case identifier (it is put into SQL unquoted)."""
    if not SCHEMA_PATTERN.fullmatch(schema):
        raise ValueError(f"invalid PostgreSQL schema name {schema!r}: [a-z_][a-z0-9_]{{0,62}}")
    return schema


def where(url: str) -> str:
    """``host:port/database`` of a URL: what may be shown of it (no user, no password)."""
    parts = urlsplit(url)
    return f"{parts.hostname or ''}:{parts.port or 5432}{parts.path or '/'}"


def unavailable(store: str, exc: BaseException) -> StoreUnavailableError:
    """The error for an unreachable ``store`` ("the key store"), naming the failure's class
    only: a driver's message may quote the server address or more."""
    return StoreUnavailableError(
        f"{store} (PostgreSQL) is unreachable ({type(exc).__name__}); try again shortly.",
        retry_after=1.0,
    )


@contextlib.contextmanager
def reachable(store: str) -> Iterator[None]:
    """``with``: turns a failure to reach PostgreSQL inside into ``StoreUnavailableError``."""
    try:
        yield
    except StoreUnavailableError:
        raise
    except UNREACHABLE as exc:
        raise unavailable(store, exc) from None


async def connect(url: str, schema: str) -> asyncpg.Connection:
    """One connection outside the pool (the key store's listener)."""
    return await asyncpg.connect(
        url,
        timeout=CONNECT_TIMEOUT,
        command_timeout=COMMAND_TIMEOUT,
        server_settings=_settings(schema),
    )


async def create_pool(url: str, schema: str) -> asyncpg.Pool:
    """The shared pool; raises ``StoreUnavailableError`` when the server cannot be reached."""
    with reachable("the key store"):
        pool = await asyncpg.create_pool(
            url,
            min_size=POOL_MIN,
            max_size=POOL_MAX,
            timeout=CONNECT_TIMEOUT,
            command_timeout=COMMAND_TIMEOUT,
            # Idle connections are closed after a while so a replica at rest holds one.
            max_inactive_connection_lifetime=60.0,
            server_settings=_settings(schema),
        )
    assert pool is not None
    return pool


def _settings(schema: str) -> dict[str, str]:
    return {"search_path": check_schema(schema), "application_name": "switchboard"}


class PoolHandle:
    """The pool shared by the keys, the ledger and the responses of one ``PgStores``: each
    store releases it once from its ``aclose`` and the last release closes it (``Stores``
    closes its stores one by one)."""

    def __init__(self, pool: asyncpg.Pool, url: str, schema: str, holders: int) -> None:
        self.pool = pool
        self.url = url
        self.schema = schema
        self._holders = holders

    def __repr__(self) -> str:
        return f"PoolHandle({where(self.url)!r}, schema={self.schema!r})"

    async def release(self) -> None:
        """One holder is done; the last one closes the pool (bounded wait, then abort)."""
        self._holders -= 1
        if self._holders != 0:
            return
        try:
            await asyncio.wait_for(self.pool.close(), CONNECT_TIMEOUT)
        except UNREACHABLE as exc:
            log.warning("closing the PostgreSQL pool: %s; terminating it", type(exc).__name__)
            self.pool.terminate()
