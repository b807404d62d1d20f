"""The embedded ``KeyStore``: gateway keys stored hashed in SQLite, looked up from a cache.

The server and the ``switchboard keys`` CLI share the database file. The server must see a key
the CLI created or revoked at once, without disk I/O per request: each lookup asks SQLite for
``PRAGMA data_version`` (which changes whenever another connection commits to the file; it reads
the WAL index in shared memory, not the disk) and reloads the cache of active key hashes only
when it moved. Secrets are never stored, logged or put in a repr; only their SHA-256 is.
"""

from __future__ import annotations

import asyncio
import builtins
import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from switchboard.v1 import admin_pb2

from server.core.context import KeyLimits, Principal
from server.core.errors import NotFoundError
from server.core.ids import hash_key, new_gateway_key
from server.policy.keys import PREFIX_CHARS, check_new_key
from server.store.embedded import sqlite as store

_COLUMNS = (
    "id, name, prefix, create_time, revoke_time, "
    "requests_per_minute, tokens_per_minute, monthly_budget_usd"
)


class SqliteKeyStore:
    """Creates, lists and revokes gateway keys; resolves a secret to its ``Principal``.

    Implements ``server.core.state.KeyStore``; the management calls run their SQLite work in a
    thread (a CLI holding the write lock must not stall the event loop), and the synchronous
    ``*_sync`` forms serve the CLI."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        # The reader serves lookups (event loop thread); writes use their own connection so a
        # writer waiting on the CLI's lock never blocks a lookup.
        self._reader = store.connect(data_dir, store.KEYS)
        self._writer: sqlite3.Connection | None = None
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._version: int | None = None
        self._by_hash: dict[str, Principal] = {}

    def __repr__(self) -> str:
        return f"SqliteKeyStore({str(self.data_dir)!r}, cached={len(self._by_hash)})"

    # --- lookups (hot path) -------------------------------------------------------------------

    async def lookup(self, secret: str) -> Principal | None:
        """The principal of an active key, or None for an unknown or revoked one."""
        return self.lookup_sync(secret)

    def lookup_sync(self, secret: str) -> Principal | None:
        """``lookup`` without a coroutine (no disk I/O unless another process committed)."""
        with self._read_lock:
            (version,) = self._reader.execute("PRAGMA data_version").fetchone()
            if version != self._version:
                self._reload(version)
            return self._by_hash.get(hash_key(secret))

    def _reload(self, version: int) -> None:
        # The version is read before the rows: a commit in between only costs one more reload.
        rows = self._reader.execute(
            "SELECT id, name, key_hash, requests_per_minute, tokens_per_minute, "
            "monthly_budget_usd FROM gateway_keys WHERE revoke_time IS NULL"
        ).fetchall()
        self._by_hash = {
            row[2]: Principal(key_id=row[0], name=row[1], limits=KeyLimits(row[3], row[4], row[5]))
            for row in rows
        }
        self._version = version

    # --- management (admin RPCs and the CLI) ------------------------------------------------------

    async def create(
        self, name: str, limits: KeyLimits | None = None
    ) -> tuple[admin_pb2.GatewayKey, str]:
        """A new key and its secret; the secret is returned only here and stored hashed."""
        return await asyncio.to_thread(self.create_sync, name, limits)

    async def get(self, key_id: str) -> admin_pb2.GatewayKey | None:
        """One key by id, revoked or not."""
        return await asyncio.to_thread(self.get_sync, key_id)

    async def list(self, *, include_revoked: bool = False) -> list[admin_pb2.GatewayKey]:
        """Keys, oldest first."""
        return await asyncio.to_thread(self.list_sync, include_revoked=include_revoked)

    async def revoke(self, key_id: str) -> admin_pb2.GatewayKey:
        """Revokes a key (idempotent); NotFoundError for an unknown id."""
        return await asyncio.to_thread(self.revoke_sync, key_id)

    async def aclose(self) -> None:
        """Closes both connections."""
        self.close()

    def create_sync(
        self, name: str, limits: KeyLimits | None = None
    ) -> tuple[admin_pb2.GatewayKey, str]:
        """``create`` for synchronous callers (the CLI)."""
        name, limits = check_new_key(name, limits)
        secret = new_gateway_key()
        key_id = "key_" + secrets.token_hex(8)
        now = time.time()
        with self._write_lock:
            self._write().execute(
                "INSERT INTO gateway_keys (id, name, prefix, key_hash, create_time, "
                "requests_per_minute, tokens_per_minute, monthly_budget_usd) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key_id,
                    name,
                    secret[:PREFIX_CHARS],
                    hash_key(secret),
                    now,
                    limits.requests_per_minute,
                    limits.tokens_per_minute,
                    limits.monthly_budget_usd,
                ),
            )
        record = self.get_sync(key_id)
        assert record is not None
        return record, secret

    def get_sync(self, key_id: str) -> admin_pb2.GatewayKey | None:
        """``get`` for synchronous callers."""
        with self._write_lock:
            row = (
                self._write()
                .execute(f"SELECT {_COLUMNS} FROM gateway_keys WHERE id = ?", (key_id,))
                .fetchone()
            )
        return _record(row) if row else None

    def list_sync(self, *, include_revoked: bool = False) -> builtins.list[admin_pb2.GatewayKey]:
        """``list`` for synchronous callers."""
        where = "" if include_revoked else " WHERE revoke_time IS NULL"
        with self._write_lock:
            rows = (
                self._write()
                .execute(f"SELECT {_COLUMNS} FROM gateway_keys{where} ORDER BY create_time, id")
                .fetchall()
            )
        return [_record(row) for row in rows]

    def revoke_sync(self, key_id: str) -> admin_pb2.GatewayKey:
        """``revoke`` for synchronous callers."""
        with self._write_lock:
            self._write().execute(
                "UPDATE gateway_keys SET revoke_time = ? WHERE id = ? AND revoke_time IS NULL",
                (time.time(), key_id),
            )
        record = self.get_sync(key_id)
        if record is None:
            raise NotFoundError(f"No gateway key has the id {key_id!r}.", param="id")
        return record

    def _write(self) -> sqlite3.Connection:
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


def _timestamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def _record(row: tuple[Any, ...]) -> admin_pb2.GatewayKey:
    key_id, name, prefix, created, revoked, rpm, tpm, budget = row
    record = admin_pb2.GatewayKey(
        id=key_id, name=name, prefix=prefix, create_time=_timestamp(created)
    )
    if revoked is not None:
        record.revoked = True
        record.revoke_time.CopyFrom(_timestamp(revoked))
    if rpm is not None:
        record.limits.requests_per_minute = rpm
    if tpm is not None:
        record.limits.tokens_per_minute = tpm
    if budget is not None:
        record.limits.monthly_budget_usd = budget
    return record
