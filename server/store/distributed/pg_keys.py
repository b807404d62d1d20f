"""The distributed ``KeyStore``: gateway keys and projects in PostgreSQL, looked up from a
bounded in-process cache that every replica empties when a key changes anywhere.

``lookup`` is on every request's path. Its answers (a principal, or "no such active key") are
cached per secret hash for at most ``cache_ttl`` seconds (1 s), in an LRU of ``cache_size``
entries. Every write (create, update, rotate, revoke, a project change) sends a ``pg_notify``
in its own transaction, so it is delivered exactly when the change commits; each store keeps
one connection LISTENing and drops the affected entries as the notification arrives
(milliseconds later on every replica). The TTL bounds what a lost notification costs: a
listener that drops reconnects with backoff and empties the cache when it is back, and until
then entries still expire by TTL. A generation counter, bumped by every invalidation, keeps a
lookup that raced a change from caching the row it read before it.

Stores of the same database and schema in one process also empty each other's caches
directly when one writes (``local_peers``), so a change made through one is visible through
the others as soon as the write returns, without waiting for the notification's round trip.

Expiry and rotation grace are deadlines kept beside each cached principal and compared with
the wall clock at every lookup, so no cache outlives them. PostgreSQL unreachable: an entry
within its TTL is still served; any other lookup raises ``StoreUnavailableError`` (fail
closed). Secrets are never stored, logged or put in a repr; only their SHA-256 is.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from switchboard.v1 import admin_pb2

from server.core.context import KeyLimits, Principal
from server.core.errors import StoreUnavailableError
from server.core.ids import hash_key, new_gateway_key
from server.core.state import KeySpec, KeyUpdate
from server.policy.keys import key_prefix
from server.store.distributed import pg_pool
from server.store.distributed.pg_pool import PoolHandle, reachable
from server.store.keyrows import (
    KEY_COLUMNS,
    KEY_INSERT_COLUMNS,
    PRINCIPAL_COLUMNS,
    PROJECT_COLUMNS,
    PROJECT_INSERT_COLUMNS,
    check_grace,
    earliest,
    key_not_found,
    key_record,
    key_revoked,
    key_update_columns,
    new_key,
    new_project,
    principal_from_row,
    project_not_found,
    project_record,
    project_update_columns,
)

log = logging.getLogger(__name__)

STORE = "the key store"
# One channel for every schema of a database; the payload says which (`<schema> key <id>`).
CHANNEL = "switchboard_keys"
DEFAULT_CACHE_TTL = 1.0
DEFAULT_CACHE_SIZE = 10_000
# After a lookup found PostgreSQL unreachable, others fail at once for this long.
FAIL_FAST_SECONDS = 0.25
# How often an idle listener is pinged (a silently dropped connection is found this soon).
LISTENER_PING = 5.0

# The secret's current hash first, then a previous one in its grace (``key_secrets``).
_LOOKUP = (
    f"SELECT {PRINCIPAL_COLUMNS}, k.revoke_time, NULL::float8 "
    "FROM gateway_keys k LEFT JOIN projects p ON p.id = k.project_id WHERE k.key_hash = $1 "
    "UNION ALL "
    f"SELECT {PRINCIPAL_COLUMNS}, k.revoke_time, s.expire_time "
    "FROM key_secrets s JOIN gateway_keys k ON k.id = s.key_id "
    "LEFT JOIN projects p ON p.id = k.project_id WHERE s.key_hash = $1 "
    "LIMIT 1"
)

_INSERT_KEY = (
    f"INSERT INTO gateway_keys ({', '.join(KEY_INSERT_COLUMNS)}) "
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(KEY_INSERT_COLUMNS) + 1))})"
)
_INSERT_PROJECT = (
    f"INSERT INTO projects ({', '.join(PROJECT_INSERT_COLUMNS)}) "
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(PROJECT_INSERT_COLUMNS) + 1))})"
)


@dataclass(frozen=True, slots=True)
class _Entry:
    """A cached lookup: the principal (None: no active key has this secret), the wall-clock
    time it stops being valid (None: never), and the monotonic time the entry goes stale."""

    principal: Principal | None
    deadline: float | None
    stale_at: float
    key_id: str | None


# Stores per (server, database, schema) in this process, for ``local_peers``.
_PEERS: dict[str, weakref.WeakSet[PgKeyStore]] = {}


class PgKeyStore:
    """Implements ``server.core.state.KeyStore`` over PostgreSQL, exactly as
    ``server.store.embedded.keys.SqliteKeyStore`` does over SQLite (module docstring)."""

    def __init__(
        self,
        handle: PoolHandle,
        *,
        cache_ttl: float = DEFAULT_CACHE_TTL,
        cache_size: int = DEFAULT_CACHE_SIZE,
        local_peers: bool = True,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._handle = handle
        self._pool = handle.pool
        self._schema = handle.schema
        self.cache_ttl = cache_ttl
        self.cache_size = cache_size
        self._clock = wall_clock
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._generation = 0
        self._loading: dict[str, asyncio.Future[_Entry]] = {}
        self._failure: str | None = None
        self._retry_at = 0.0
        self._listener_task: asyncio.Task[None] | None = None
        self._listener_lost = asyncio.Event()
        self._listening = asyncio.Event()
        self._closed = False
        self._peer_key = f"{pg_pool.where(handle.url)}#{handle.schema}" if local_peers else ""
        if self._peer_key:
            _PEERS.setdefault(self._peer_key, weakref.WeakSet()).add(self)

    def __repr__(self) -> str:
        return f"PgKeyStore({self._handle!r}, cached={len(self._cache)})"

    @property
    def listening(self) -> bool:
        """Whether change notifications are being received now."""
        return self._listening.is_set()

    def problems(self) -> list[str]:
        """For ``/healthz``: key changes arrive only through the 1 s cache bound while the
        listener reconnects, and uncached keys cannot be checked while PostgreSQL is down."""
        out = []
        if self._listener_task is not None and not self._closed and not self.listening:
            out.append("keys: PostgreSQL change notifications reconnecting")
        if self._failure is not None:
            out.append("keys: PostgreSQL unreachable at the last lookup (uncached keys get 503)")
        return out

    async def start(self) -> None:
        """Starts the listener and waits (bounded) for it to be connected."""
        if self._listener_task is None:
            self._listener_task = asyncio.get_running_loop().create_task(
                self._listen(), name="pg-keys-listener"
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), pg_pool.CONNECT_TIMEOUT)

    # --- lookups (hot path) -------------------------------------------------------------------

    async def lookup(self, secret: str) -> Principal | None:
        """The principal of an active key, or None for an unknown, revoked or expired one or a
        rotated-out secret past its grace."""
        key_hash = hash_key(secret)
        entry = self._cache.get(key_hash)
        if entry is not None and time.monotonic() < entry.stale_at:
            self._cache.move_to_end(key_hash)
        else:
            entry = await self._load(key_hash)
        if entry.principal is None:
            return None
        if entry.deadline is not None and self._clock() >= entry.deadline:
            return None
        return entry.principal

    async def _load(self, key_hash: str) -> _Entry:
        # Concurrent misses of one secret share a single query.
        pending = self._loading.get(key_hash)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch(key_hash))
            self._loading[key_hash] = pending
            pending.add_done_callback(lambda f: self._loaded(key_hash, f))
        return await asyncio.shield(pending)

    def _loaded(self, key_hash: str, future: asyncio.Future[_Entry]) -> None:
        self._loading.pop(key_hash, None)
        if not future.cancelled():
            future.exception()  # retrieved: every waiter may have gone

    async def _fetch(self, key_hash: str) -> _Entry:
        generation = self._generation
        if self._failure is not None and time.monotonic() < self._retry_at:
            # Just failed: answer at once rather than have every request try to connect.
            raise StoreUnavailableError(self._failure, retry_after=1.0)
        try:
            with reachable(STORE):
                row = await self._pool.fetchrow(_LOOKUP, key_hash)
        except StoreUnavailableError as exc:
            self._failure = exc.message
            self._retry_at = time.monotonic() + FAIL_FAST_SECONDS
            raise
        self._failure = None
        stale_at = time.monotonic() + self.cache_ttl
        if row is None:
            entry = _Entry(None, None, stale_at, None)
        elif row[13] is not None:  # revoked
            entry = _Entry(None, None, stale_at, row[0])
        else:
            principal = principal_from_row(row[:13])
            entry = _Entry(principal, earliest(principal.expires_at, row[14]), stale_at, row[0])
        # An invalidation while the query ran may concern this very row: do not cache it.
        if generation == self._generation and not self._closed:
            self._cache[key_hash] = entry
            self._cache.move_to_end(key_hash)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return entry

    def _invalidate(self, kind: str, ident: str) -> None:
        """Drops the entries of one key (``key``) or of one project's keys (``project``); any
        other kind empties the cache."""
        self._generation += 1
        if kind == "key":
            drop = [h for h, e in self._cache.items() if e.key_id == ident]
        elif kind == "project":
            drop = [
                h
                for h, e in self._cache.items()
                if e.principal is not None and e.principal.project_id == ident
            ]
        else:
            self._cache.clear()
            return
        for key_hash in drop:
            del self._cache[key_hash]

    # --- change notifications ------------------------------------------------------------------

    async def _listen(self) -> None:
        """Keeps one LISTEN connection, reconnecting with backoff after a drop."""
        backoff = 0.05
        while not self._closed:
            conn: asyncpg.Connection | None = None
            try:
                conn = await pg_pool.connect(self._handle.url, self._schema)
                self._listener_lost.clear()
                conn.add_termination_listener(lambda _c: self._listener_lost.set())
                await conn.add_listener(CHANNEL, self._on_notify)
                # Changes made while no listener ran were missed.
                self._invalidate("all", "")
                self._listening.set()
                # Connected again: PostgreSQL answers, so the last lookup failure is over.
                self._failure = None
                backoff = 0.05
                while not self._closed:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._listener_lost.wait(), LISTENER_PING)
                    if self._listener_lost.is_set() or conn.is_closed():
                        break
                    await conn.execute("SELECT 1")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # whatever it was: reconnect
                if self._listening.is_set():
                    log.warning("key change listener lost (%s); reconnecting", type(exc).__name__)
            finally:
                self._listening.clear()
                if conn is not None:
                    conn.terminate()
            if not self._closed:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        schema, _, rest = payload.partition(" ")
        if schema != self._schema:
            return
        kind, _, ident = rest.partition(" ")
        self._invalidate(kind, ident)

    async def _write(
        self, kind: str, ident: str, work: Callable[[asyncpg.Connection], Awaitable[Any]]
    ) -> Any:
        """Runs ``work`` in one transaction that also notifies every replica of the change,
        then empties the affected entries of this process's stores."""
        try:
            with reachable(STORE):
                async with self._pool.acquire() as conn, conn.transaction():
                    result = await work(conn)
                    await conn.execute(
                        "SELECT pg_notify($1, $2)", CHANNEL, f"{self._schema} {kind} {ident}"
                    )
        finally:
            # Also on failure: a commit whose reply was lost may still have happened.
            for store in self._peers():
                store._invalidate(kind, ident)
        return result

    def _peers(self) -> list[PgKeyStore]:
        if not self._peer_key:
            return [self]
        return list(_PEERS.get(self._peer_key, ()))

    # --- management (admin RPCs and the CLI) ------------------------------------------------------

    async def create(
        self, name: str | KeySpec, limits: KeyLimits | None = None
    ) -> tuple[admin_pb2.GatewayKey, str]:
        """A new key and its secret; the secret is returned only here and stored hashed."""
        new = new_key(name, limits, self._clock())

        async def work(conn: asyncpg.Connection) -> None:
            if new.spec.project_id is not None:
                await _require_project(conn, new.spec.project_id)
            await conn.execute(_INSERT_KEY, *new.values())

        await self._write("key", new.key_id, work)
        return await self._existing(new.key_id), new.secret

    async def get(self, key_id: str) -> admin_pb2.GatewayKey | None:
        """One key by id, revoked or not."""
        with reachable(STORE):
            row = await self._pool.fetchrow(
                f"SELECT {KEY_COLUMNS} FROM gateway_keys k WHERE k.id = $1", key_id
            )
        return key_record(row, self._clock()) if row else None

    async def list(self, *, include_revoked: bool = False) -> builtins.list[admin_pb2.GatewayKey]:
        """Keys, oldest first."""
        where = "" if include_revoked else " WHERE k.revoke_time IS NULL"
        with reachable(STORE):
            rows = await self._pool.fetch(
                f"SELECT {KEY_COLUMNS} FROM gateway_keys k{where} ORDER BY k.create_time, k.id"
            )
        now = self._clock()
        return [key_record(row, now) for row in rows]

    async def update(self, key_id: str, changes: KeyUpdate) -> admin_pb2.GatewayKey:
        """Applies ``changes`` (``server.core.state.KeyUpdate``)."""
        sets = key_update_columns(changes)

        async def work(conn: asyncpg.Connection) -> None:
            found = await conn.fetchval(
                "SELECT 1 FROM gateway_keys WHERE id = $1 FOR UPDATE", key_id
            )
            if not found:
                raise key_not_found(key_id)
            if changes.project_id:
                await _require_project(conn, changes.project_id)
            if sets:
                await _update(conn, "gateway_keys", key_id, sets)

        await self._write("key", key_id, work)
        return await self._existing(key_id)

    async def rotate(
        self, key_id: str, grace_seconds: float = 0.0
    ) -> tuple[admin_pb2.GatewayKey, str]:
        """A new secret; the old one works for ``grace_seconds`` more."""
        check_grace(grace_seconds)
        now = self._clock()

        async def work(conn: asyncpg.Connection) -> str:
            row = await conn.fetchrow(
                "SELECT key_hash, env, revoke_time FROM gateway_keys WHERE id = $1 FOR UPDATE",
                key_id,
            )
            if row is None:
                raise key_not_found(key_id)
            old_hash, env, revoked = row
            if revoked is not None:
                raise key_revoked(key_id)
            secret = new_gateway_key(env)
            # Secrets whose grace has ended are of no further use.
            await conn.execute("DELETE FROM key_secrets WHERE expire_time <= $1", now)
            if grace_seconds > 0:
                await conn.execute(
                    "INSERT INTO key_secrets (key_hash, key_id, expire_time) VALUES ($1, $2, $3)",
                    old_hash,
                    key_id,
                    now + grace_seconds,
                )
            await conn.execute(
                "UPDATE gateway_keys SET key_hash = $1, prefix = $2, rotate_time = $3 "
                "WHERE id = $4",
                hash_key(secret),
                key_prefix(secret, env),
                now,
                key_id,
            )
            return secret

        secret = await self._write("key", key_id, work)
        return await self._existing(key_id), secret

    async def revoke(self, key_id: str) -> admin_pb2.GatewayKey:
        """Revokes a key and its secrets (idempotent); NotFoundError for an unknown id."""

        async def work(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "UPDATE gateway_keys SET revoke_time = $1 WHERE id = $2 AND revoke_time IS NULL",
                self._clock(),
                key_id,
            )
            await conn.execute("DELETE FROM key_secrets WHERE key_id = $1", key_id)

        await self._write("key", key_id, work)
        return await self._existing(key_id)

    async def create_project(self, name: str, limits: KeyLimits | None = None) -> admin_pb2.Project:
        """A new project with shared limits."""
        row = new_project(name, limits, self._clock())
        with reachable(STORE):
            await self._pool.execute(_INSERT_PROJECT, *row)
        return await self._existing_project(str(row[0]))

    async def get_project(self, project_id: str) -> admin_pb2.Project | None:
        """One project by id."""
        with reachable(STORE):
            row = await self._pool.fetchrow(
                f"SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1", project_id
            )
        return project_record(row) if row else None

    async def list_projects(self) -> builtins.list[admin_pb2.Project]:
        """Projects, oldest first."""
        with reachable(STORE):
            rows = await self._pool.fetch(
                f"SELECT {PROJECT_COLUMNS} FROM projects ORDER BY create_time, id"
            )
        return [project_record(row) for row in rows]

    async def update_project(
        self, project_id: str, *, name: str | None = None, limits: KeyLimits | None = None
    ) -> admin_pb2.Project:
        """Renames a project and/or replaces its limits; every replica's cached principals of
        its keys are dropped."""
        sets = project_update_columns(name, limits)

        async def work(conn: asyncpg.Connection) -> None:
            await _require_project(conn, project_id, param="id")
            if sets:
                await _update(conn, "projects", project_id, sets)

        await self._write("project", project_id, work)
        return await self._existing_project(project_id)

    async def aclose(self) -> None:
        """Stops the listener and releases the shared pool."""
        if self._closed:
            return
        self._closed = True
        if self._peer_key and (peers := _PEERS.get(self._peer_key)) is not None:
            peers.discard(self)
            if not peers:
                del _PEERS[self._peer_key]
        if self._listener_task is not None:
            self._listener_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener_task
        self._cache.clear()
        await self._handle.release()

    async def _existing(self, key_id: str) -> admin_pb2.GatewayKey:
        record = await self.get(key_id)
        if record is None:
            raise key_not_found(key_id)
        return record

    async def _existing_project(self, project_id: str) -> admin_pb2.Project:
        project = await self.get_project(project_id)
        if project is None:
            raise project_not_found(project_id, "id")
        return project


async def _require_project(
    conn: asyncpg.Connection, project_id: str, param: str = "project_id"
) -> None:
    # FOR SHARE: the project cannot be deleted under a key being moved into it.
    if not await conn.fetchval("SELECT 1 FROM projects WHERE id = $1 FOR SHARE", project_id):
        raise project_not_found(project_id, param)


async def _update(
    conn: asyncpg.Connection, table: str, ident: str, sets: dict[str, object]
) -> None:
    # Column names come from this module, never from a caller.
    assignments = ", ".join(f"{column} = ${i}" for i, column in enumerate(sets, start=2))
    await conn.execute(f"UPDATE {table} SET {assignments} WHERE id = $1", ident, *sets.values())
