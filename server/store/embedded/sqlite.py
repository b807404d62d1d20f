"""The embedded store: SQLite files in the data dir, shared by the server and the CLI.

WAL mode lets the CLI write while the server reads; a busy timeout turns short write contention
into a wait instead of an error. Each schema is versioned with ``PRAGMA user_version`` and
migrated inside one ``BEGIN IMMEDIATE`` transaction, so a server and a CLI that start at the same
moment never both apply a migration.

Gateway keys live in a file of their own: the server notices CLI writes through
``PRAGMA data_version``, which changes on *any* commit to the file, so keeping busy tables (the
usage ledger) elsewhere keeps the key cache from being reloaded on every request.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# Milliseconds a connection waits on another writer's lock before giving up.
BUSY_TIMEOUT_MS = 5000


@dataclass(frozen=True, slots=True)
class Schema:
    """One database file and its migrations (entry i takes user_version i to i + 1)."""

    filename: str
    # Append-only: never edit a migration that has shipped.
    migrations: Sequence[str]

    def path(self, data_dir: Path) -> Path:
        return data_dir / self.filename


KEYS = Schema(
    filename="keys.db",
    migrations=(
        """
        CREATE TABLE gateway_keys (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            prefix TEXT NOT NULL,
            key_hash TEXT NOT NULL UNIQUE,
            create_time REAL NOT NULL,
            revoke_time REAL,
            requests_per_minute INTEGER,
            tokens_per_minute INTEGER,
            monthly_budget_usd REAL
        );
        CREATE INDEX gateway_keys_create_time ON gateway_keys (create_time);
        """,
        # Issue 9: environments, model scoping, concurrency, expiry, rotation and projects.
        # allowed_models is a JSON array ('' for any). key_secrets holds secrets replaced by a
        # rotation until their grace ends; projects sit in this file so that a project change
        # reloads the key cache (their limits are part of each key's principal).
        """
        ALTER TABLE gateway_keys ADD COLUMN env TEXT NOT NULL DEFAULT '';
        ALTER TABLE gateway_keys ADD COLUMN project_id TEXT;
        ALTER TABLE gateway_keys ADD COLUMN allowed_models TEXT NOT NULL DEFAULT '';
        ALTER TABLE gateway_keys ADD COLUMN max_concurrent INTEGER;
        ALTER TABLE gateway_keys ADD COLUMN expire_time REAL;
        ALTER TABLE gateway_keys ADD COLUMN rotate_time REAL;
        CREATE TABLE key_secrets (
            key_hash TEXT PRIMARY KEY,
            key_id TEXT NOT NULL REFERENCES gateway_keys (id),
            expire_time REAL NOT NULL
        );
        CREATE INDEX key_secrets_key_id ON key_secrets (key_id);
        CREATE TABLE projects (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            create_time REAL NOT NULL,
            requests_per_minute INTEGER,
            tokens_per_minute INTEGER,
            monthly_budget_usd REAL
        );
        CREATE INDEX projects_create_time ON projects (create_time);
        """,
    ),
)


RESPONSES = Schema(
    filename="responses.db",
    migrations=(
        """
        CREATE TABLE responses (
            id TEXT PRIMARY KEY,
            key_id TEXT NOT NULL,
            create_time REAL NOT NULL,
            body BLOB NOT NULL
        );
        CREATE INDEX responses_create_time ON responses (create_time);
        """,
    ),
)


def ensure_data_dir(data_dir: Path) -> Path:
    """Creates the data dir (owner-only: it holds the master key and key hashes)."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return data_dir


def connect(data_dir: Path, schema: Schema) -> sqlite3.Connection:
    """An autocommit connection in WAL mode with a busy timeout, its schema migrated.

    Autocommit (``isolation_level=None``) so callers open explicit transactions and a plain read
    never holds a snapshot open that would hide other processes' commits. ``check_same_thread``
    is off because the server hands writes to a worker thread; callers serialise use.
    """
    ensure_data_dir(data_dir)
    path = schema.path(data_dir)
    new_file = not path.exists()
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
    )
    try:
        if new_file:
            os.chmod(path, 0o600)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _ensure_wal(conn)
        conn.execute("PRAGMA synchronous = NORMAL")
        apply_migrations(conn, schema)
    except BaseException:
        conn.close()
        raise
    return conn


def _ensure_wal(conn: sqlite3.Connection) -> None:
    """Switches a new file to WAL (the mode is stored in the file, so once is enough).

    Switching needs an exclusive lock and SQLite answers "database is locked" at once, without
    the busy handler, when another process is opening the same new file: retry until the busy
    timeout instead."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
            if str(mode).lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def apply_migrations(conn: sqlite3.Connection, schema: Schema) -> int:
    """Brings the file to ``len(schema.migrations)``; returns the version found before."""
    (found,) = conn.execute("PRAGMA user_version").fetchone()
    target = len(schema.migrations)
    if found >= target:
        return int(found)
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Re-read under the write lock: another process may have migrated meanwhile.
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        for index in range(version, target):
            for statement in _statements(schema.migrations[index]):
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {target}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return int(found)


def _statements(script: str) -> list[str]:
    # executescript() would COMMIT our transaction first; split instead (no ';' inside literals).
    return [s.strip() for s in script.split(";") if s.strip()]
