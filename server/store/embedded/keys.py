"""The embedded ``KeyStore``: gateway keys and projects in SQLite, looked up from a cache.

The server and the ``switchboard keys`` CLI share the database file. The server must see a key
the CLI created, changed or revoked at once, without disk I/O per request: a lookup asks SQLite
for ``PRAGMA data_version`` (which changes whenever another connection commits to the file; it
reads the WAL index in shared memory, not the disk) and reloads the cache of active key hashes
only when it moved. Projects live in the same file, so a project change reloads the cache too
(each principal carries its project's limits).

On the event loop the version is read once per loop iteration, not once per lookup (it costs
two ``fcntl`` locks and ~5 us; under load an iteration starts several requests). That is still
"at once": the answer is dropped by a ``call_soon`` made when it was read, and a request whose
bytes arrived after a commit had its first step scheduled after that drop, in the loop's
first-in, first-out ready queue, so its lookup reads the version again. This store's own writes
drop it too.

Expiry and rotation grace are deadlines kept beside each cached principal and compared with
the wall clock at every lookup, so no cache outlives them. A rotation moves the old hash to
``key_secrets`` with the end of its grace; the key's id, limits and usage stay.

Secrets are never stored, logged or put in a repr; only their SHA-256 is.
"""

from __future__ import annotations

import asyncio
import builtins
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from switchboard.v1 import admin_pb2

from server.core.context import KeyLimits, Principal
from server.core.ids import hash_key, new_gateway_key
from server.core.loops import running_loop
from server.core.state import KeySpec, KeyUpdate
from server.policy.keys import (
    key_prefix,
)
from server.store.embedded import sqlite as store
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

# A cached principal and the wall-clock time it stops being valid (None: never).
_Entry = tuple[Principal, float | None]


class SqliteKeyStore:
    """Creates, changes, rotates and revokes gateway keys and projects; resolves a secret to
    its ``Principal``.

    Implements ``server.core.state.KeyStore``; the management calls run their SQLite work in a
    thread (a CLI holding the write lock must not stall the event loop), and the synchronous
    ``*_sync`` forms serve the CLI."""

    def __init__(self, data_dir: Path, *, wall_clock: Callable[[], float] = time.time) -> None:
        self.data_dir = data_dir
        self._clock = wall_clock
        # The reader serves lookups (event loop thread); writes use their own connection so a
        # writer waiting on the CLI's lock never blocks a lookup.
        self._reader = store.connect(data_dir, store.KEYS)
        self._writer: sqlite3.Connection | None = None
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._version: int | None = None
        # True while the loop iteration that last read data_version is running (module doc).
        self._version_read = False
        self._by_hash: dict[str, _Entry] = {}

    def __repr__(self) -> str:
        return f"SqliteKeyStore({str(self.data_dir)!r}, cached={len(self._by_hash)})"

    # --- lookups (hot path) -------------------------------------------------------------------

    async def lookup(self, secret: str) -> Principal | None:
        """The principal of an active key, or None for an unknown, revoked or expired one or a
        rotated-out secret past its grace."""
        if not self._version_read:
            self._refresh()
            self._version_read = True
            running_loop().call_soon(self._forget_version_read)
        return self._cached(secret)

    def lookup_sync(self, secret: str) -> Principal | None:
        """``lookup`` without a coroutine (no disk I/O unless another process committed)."""
        self._refresh()
        return self._cached(secret)

    def _forget_version_read(self) -> None:
        self._version_read = False

    def _refresh(self) -> None:
        with self._read_lock:
            (version,) = self._reader.execute("PRAGMA data_version").fetchone()
            if version != self._version:
                self._reload(version)

    def _cached(self, secret: str) -> Principal | None:
        """The cached principal of ``secret`` unless it is unknown or past its deadline."""
        entry = self._by_hash.get(hash_key(secret))
        if entry is None:
            return None
        principal, deadline = entry
        if deadline is not None and self._clock() >= deadline:
            return None
        return principal

    def _reload(self, version: int) -> None:
        # The version is read before the rows: a commit in between only costs one more reload.
        rows = self._reader.execute(
            f"SELECT k.key_hash, {PRINCIPAL_COLUMNS} "
            "FROM gateway_keys k LEFT JOIN projects p ON p.id = k.project_id "
            "WHERE k.revoke_time IS NULL"
        ).fetchall()
        by_hash: dict[str, _Entry] = {}
        by_id: dict[str, _Entry] = {}
        for row in rows:
            principal = principal_from_row(row[1:])
            by_hash[row[0]] = by_id[principal.key_id] = (principal, principal.expires_at)
        for key_hash, key_id, grace_end in self._reader.execute(
            "SELECT key_hash, key_id, expire_time FROM key_secrets"
        ).fetchall():
            active = by_id.get(key_id)
            if active is not None:
                principal, expires = active
                by_hash[key_hash] = (principal, earliest(expires, grace_end))
        self._by_hash = by_hash
        self._version = version

    # --- management (admin RPCs and the CLI) ------------------------------------------------------

    async def create(
        self, name: str | KeySpec, limits: KeyLimits | None = None
    ) -> tuple[admin_pb2.GatewayKey, str]:
        """A new key and its secret; the secret is returned only here and stored hashed."""
        return await asyncio.to_thread(self.create_sync, name, limits)

    async def get(self, key_id: str) -> admin_pb2.GatewayKey | None:
        """One key by id, revoked or not."""
        return await asyncio.to_thread(self.get_sync, key_id)

    async def list(self, *, include_revoked: bool = False) -> list[admin_pb2.GatewayKey]:
        """Keys, oldest first."""
        return await asyncio.to_thread(self.list_sync, include_revoked=include_revoked)

    async def update(self, key_id: str, changes: KeyUpdate) -> admin_pb2.GatewayKey:
        """Applies ``changes`` (``server.core.state.KeyUpdate``)."""
        return await asyncio.to_thread(self.update_sync, key_id, changes)

    async def rotate(
        self, key_id: str, grace_seconds: float = 0.0
    ) -> tuple[admin_pb2.GatewayKey, str]:
        """A new secret; the old one works for ``grace_seconds`` more."""
        return await asyncio.to_thread(self.rotate_sync, key_id, grace_seconds)

    async def revoke(self, key_id: str) -> admin_pb2.GatewayKey:
        """Revokes a key and its secrets (idempotent); NotFoundError for an unknown id."""
        return await asyncio.to_thread(self.revoke_sync, key_id)

    async def create_project(self, name: str, limits: KeyLimits | None = None) -> admin_pb2.Project:
        """A new project with shared limits."""
        return await asyncio.to_thread(self.create_project_sync, name, limits)

    async def get_project(self, project_id: str) -> admin_pb2.Project | None:
        """One project by id."""
        return await asyncio.to_thread(self.get_project_sync, project_id)

    async def list_projects(self) -> builtins.list[admin_pb2.Project]:
        """Projects, oldest first."""
        return await asyncio.to_thread(self.list_projects_sync)

    async def update_project(
        self, project_id: str, *, name: str | None = None, limits: KeyLimits | None = None
    ) -> admin_pb2.Project:
        """Renames a project and/or replaces its limits."""
        return await asyncio.to_thread(
            self.update_project_sync, project_id, name=name, limits=limits
        )

    async def aclose(self) -> None:
        """Closes both connections."""
        self.close()

    def create_sync(
        self, name: str | KeySpec, limits: KeyLimits | None = None
    ) -> tuple[admin_pb2.GatewayKey, str]:
        """``create`` for synchronous callers (the CLI)."""
        new = new_key(name, limits, self._clock())
        with self._write_lock, _transaction(self._write()) as conn:
            if new.spec.project_id is not None:
                _require_project(conn, new.spec.project_id)
            conn.execute(
                f"INSERT INTO gateway_keys ({', '.join(KEY_INSERT_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(KEY_INSERT_COLUMNS))})",
                new.values(),
            )
        return self._existing(new.key_id), new.secret

    def get_sync(self, key_id: str) -> admin_pb2.GatewayKey | None:
        """``get`` for synchronous callers."""
        with self._write_lock:
            row = (
                self._write()
                .execute(f"SELECT {KEY_COLUMNS} FROM gateway_keys k WHERE k.id = ?", (key_id,))
                .fetchone()
            )
        return key_record(row, self._clock()) if row else None

    def list_sync(self, *, include_revoked: bool = False) -> builtins.list[admin_pb2.GatewayKey]:
        """``list`` for synchronous callers."""
        where = "" if include_revoked else " WHERE k.revoke_time IS NULL"
        with self._write_lock:
            rows = (
                self._write()
                .execute(
                    f"SELECT {KEY_COLUMNS} FROM gateway_keys k{where} ORDER BY k.create_time, k.id"
                )
                .fetchall()
            )
        now = self._clock()
        return [key_record(row, now) for row in rows]

    def update_sync(self, key_id: str, changes: KeyUpdate) -> admin_pb2.GatewayKey:
        """``update`` for synchronous callers."""
        sets = key_update_columns(changes)
        with self._write_lock, _transaction(self._write()) as conn:
            if not conn.execute("SELECT 1 FROM gateway_keys WHERE id = ?", (key_id,)).fetchone():
                raise key_not_found(key_id)
            if changes.project_id:
                _require_project(conn, changes.project_id)
            if sets:
                assignments = ", ".join(f"{column} = ?" for column in sets)
                conn.execute(
                    f"UPDATE gateway_keys SET {assignments} WHERE id = ?", (*sets.values(), key_id)
                )
        return self._existing(key_id)

    def rotate_sync(
        self, key_id: str, grace_seconds: float = 0.0
    ) -> tuple[admin_pb2.GatewayKey, str]:
        """``rotate`` for synchronous callers."""
        check_grace(grace_seconds)
        now = self._clock()
        with self._write_lock, _transaction(self._write()) as conn:
            row = conn.execute(
                "SELECT key_hash, env, revoke_time FROM gateway_keys WHERE id = ?", (key_id,)
            ).fetchone()
            if row is None:
                raise key_not_found(key_id)
            old_hash, env, revoked = row
            if revoked is not None:
                raise key_revoked(key_id)
            secret = new_gateway_key(env)
            # Secrets whose grace has ended are of no further use.
            conn.execute("DELETE FROM key_secrets WHERE expire_time <= ?", (now,))
            if grace_seconds > 0:
                conn.execute(
                    "INSERT INTO key_secrets (key_hash, key_id, expire_time) VALUES (?, ?, ?)",
                    (old_hash, key_id, now + grace_seconds),
                )
            conn.execute(
                "UPDATE gateway_keys SET key_hash = ?, prefix = ?, rotate_time = ? WHERE id = ?",
                (hash_key(secret), key_prefix(secret, env), now, key_id),
            )
        return self._existing(key_id), secret

    def revoke_sync(self, key_id: str) -> admin_pb2.GatewayKey:
        """``revoke`` for synchronous callers."""
        with self._write_lock, _transaction(self._write()) as conn:
            conn.execute(
                "UPDATE gateway_keys SET revoke_time = ? WHERE id = ? AND revoke_time IS NULL",
                (self._clock(), key_id),
            )
            conn.execute("DELETE FROM key_secrets WHERE key_id = ?", (key_id,))
        return self._existing(key_id)

    def create_project_sync(self, name: str, limits: KeyLimits | None = None) -> admin_pb2.Project:
        """``create_project`` for synchronous callers."""
        row = new_project(name, limits, self._clock())
        with self._write_lock:
            self._write().execute(
                f"INSERT INTO projects ({', '.join(PROJECT_INSERT_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(PROJECT_INSERT_COLUMNS))})",
                row,
            )
        return self._existing_project(str(row[0]))

    def get_project_sync(self, project_id: str) -> admin_pb2.Project | None:
        """``get_project`` for synchronous callers."""
        with self._write_lock:
            row = (
                self._write()
                .execute(f"SELECT {PROJECT_COLUMNS} FROM projects WHERE id = ?", (project_id,))
                .fetchone()
            )
        return project_record(row) if row else None

    def list_projects_sync(self) -> builtins.list[admin_pb2.Project]:
        """``list_projects`` for synchronous callers."""
        with self._write_lock:
            rows = (
                self._write()
                .execute(f"SELECT {PROJECT_COLUMNS} FROM projects ORDER BY create_time, id")
                .fetchall()
            )
        return [project_record(row) for row in rows]

    def update_project_sync(
        self, project_id: str, *, name: str | None = None, limits: KeyLimits | None = None
    ) -> admin_pb2.Project:
        """``update_project`` for synchronous callers."""
        sets = project_update_columns(name, limits)
        with self._write_lock, _transaction(self._write()) as conn:
            _require_project(conn, project_id, param="id")
            if sets:
                assignments = ", ".join(f"{column} = ?" for column in sets)
                conn.execute(
                    f"UPDATE projects SET {assignments} WHERE id = ?", (*sets.values(), project_id)
                )
        return self._existing_project(project_id)

    def _existing(self, key_id: str) -> admin_pb2.GatewayKey:
        record = self.get_sync(key_id)
        if record is None:
            raise key_not_found(key_id)
        return record

    def _existing_project(self, project_id: str) -> admin_pb2.Project:
        project = self.get_project_sync(project_id)
        if project is None:
            raise project_not_found(project_id, "id")
        return project

    def _write(self) -> sqlite3.Connection:
        # Every statement on this store's own connection starts here: the next lookup asks
        # SQLite again, even within the loop iteration that read the version.
        self._version_read = False
        if self._writer is None:
            self._writer = store.connect(self.data_dir, store.KEYS)
        return self._writer

    def close(self) -> None:
        """Closes both connections."""
        with self._write_lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        with self._read_lock:
            self._reader.close()


class _transaction:
    """``with``: one ``BEGIN IMMEDIATE`` transaction, committed unless the block raises."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        self.conn.execute("ROLLBACK" if exc is not None else "COMMIT")


def _require_project(conn: sqlite3.Connection, project_id: str, param: str = "project_id") -> None:
    if not conn.execute("SELECT 1 FROM projects WHERE id = ?", (project_id,)).fetchone():
        raise project_not_found(project_id, param)
