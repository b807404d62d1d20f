"""Gateway keys: stored hashed in SQLite, looked up from an in-memory cache.

The server and the ``switchboard keys`` CLI share the database file. The server must see a key
the CLI created or revoked at once, without disk I/O per request: each lookup asks SQLite for
``PRAGMA data_version`` (which changes whenever another connection commits to the file; it reads
the WAL index in shared memory, not the disk) and reloads the cache of active key hashes only
when it moved. Secrets are never stored, logged or put in a repr; only their SHA-256 is.
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from switchboard.v1 import admin_pb2

from server.core.context import KeyLimits, Principal
from server.core.errors import FieldViolation, InvalidRequestError, NotFoundError
from server.core.ids import hash_key, new_gateway_key
from server.store import sqlite as store

log = logging.getLogger(__name__)

MASTER_KEY_ENV = "SWITCHBOARD_MASTER_KEY"
MASTER_KEY_FILENAME = "master.key"
# Characters of the secret kept in clear to tell keys apart (`sb-` + 8 of 43 random chars).
PREFIX_CHARS = 11
MAX_NAME_CHARS = 100

_COLUMNS = (
    "id, name, prefix, create_time, revoke_time, "
    "requests_per_minute, tokens_per_minute, monthly_budget_usd"
)


class KeyStore:
    """Creates, lists and revokes gateway keys; resolves a secret to its ``Principal``."""

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
        return f"KeyStore({str(self.data_dir)!r}, cached={len(self._by_hash)})"

    # --- lookups (hot path) -------------------------------------------------------------------

    def lookup(self, secret: str) -> Principal | None:
        """The principal of an active key, or None for an unknown or revoked one."""
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

    def create(
        self, name: str, limits: KeyLimits | None = None
    ) -> tuple[admin_pb2.GatewayKey, str]:
        """A new key and its secret; the secret is returned only here and stored hashed."""
        name = name.strip()
        if not name or len(name) > MAX_NAME_CHARS:
            raise InvalidRequestError(
                f"Invalid request: name must be 1-{MAX_NAME_CHARS} characters",
                param="name",
                field_violations=[
                    FieldViolation("name", f"name must be 1-{MAX_NAME_CHARS} characters")
                ],
            )
        limits = limits or KeyLimits()
        _check_limits(limits)
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
        record = self.get(key_id)
        assert record is not None
        return record, secret

    def get(self, key_id: str) -> admin_pb2.GatewayKey | None:
        """One key by id, revoked or not."""
        with self._write_lock:
            row = (
                self._write()
                .execute(f"SELECT {_COLUMNS} FROM gateway_keys WHERE id = ?", (key_id,))
                .fetchone()
            )
        return _record(row) if row else None

    def list(self, *, include_revoked: bool = False) -> list[admin_pb2.GatewayKey]:
        """Keys, oldest first."""
        where = "" if include_revoked else " WHERE revoke_time IS NULL"
        with self._write_lock:
            rows = (
                self._write()
                .execute(f"SELECT {_COLUMNS} FROM gateway_keys{where} ORDER BY create_time, id")
                .fetchall()
            )
        return [_record(row) for row in rows]

    def revoke(self, key_id: str) -> admin_pb2.GatewayKey:
        """Revokes a key (idempotent); NotFoundError for an unknown id."""
        with self._write_lock:
            self._write().execute(
                "UPDATE gateway_keys SET revoke_time = ? WHERE id = ? AND revoke_time IS NULL",
                (time.time(), key_id),
            )
        record = self.get(key_id)
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


def _check_limits(limits: KeyLimits) -> None:
    violations = [
        FieldViolation(f"limits.{name}", f"{name} must be positive")
        for name in ("requests_per_minute", "tokens_per_minute", "monthly_budget_usd")
        if (value := getattr(limits, name)) is not None and value <= 0
    ]
    if violations:
        raise InvalidRequestError(
            f"Invalid request: {violations[0].field}: {violations[0].description}",
            param=violations[0].field,
            field_violations=violations,
        )


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


def limits_from_proto(limits: admin_pb2.KeyLimits) -> KeyLimits:
    """The core's KeyLimits from the contract's (unset fields stay unlimited)."""
    return KeyLimits(
        requests_per_minute=limits.requests_per_minute
        if limits.HasField("requests_per_minute")
        else None,
        tokens_per_minute=limits.tokens_per_minute
        if limits.HasField("tokens_per_minute")
        else None,
        monthly_budget_usd=limits.monthly_budget_usd
        if limits.HasField("monthly_budget_usd")
        else None,
    )


# --- the master key ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MasterKey:
    """The admin key and where it came from: ``env``, ``file`` or ``generated`` (new file)."""

    secret: str
    source: str
    path: Path | None = None

    def __repr__(self) -> str:
        return f"MasterKey(source={self.source!r}, path={self.path!r})"


def load_master_key(data_dir: Path, env: Mapping[str, str] = os.environ) -> MasterKey:
    """``SWITCHBOARD_MASTER_KEY``, else the key stored in the data dir, else a new stored one.

    A new key is written to a private temp file and hard-linked into place, so two processes
    starting together agree on one key and nobody reads a half-written file.
    """
    from_env = env.get(MASTER_KEY_ENV, "").strip()
    if from_env:
        return MasterKey(from_env, "env")
    store.ensure_data_dir(data_dir)
    path = data_dir / MASTER_KEY_FILENAME
    existing = _read_key_file(path)
    if existing:
        return MasterKey(existing, "file", path)
    secret = new_gateway_key()
    tmp = data_dir / f".{MASTER_KEY_FILENAME}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secret + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            existing = _read_key_file(path)
            if not existing:
                raise RuntimeError(f"{path} exists but holds no key") from None
            return MasterKey(existing, "file", path)
    finally:
        tmp.unlink(missing_ok=True)
    return MasterKey(secret, "generated", path)


def _read_key_file(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    if path.stat().st_mode & 0o077:
        log.warning("%s is readable by other users; chmod 600 it", path)
    return text or None
