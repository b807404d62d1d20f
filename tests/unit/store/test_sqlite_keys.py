"""server.policy.keys: the SQLite key store, its data_version-validated cache, the master key."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.core.context import KeyLimits
from server.core.errors import InvalidRequestError, NotFoundError
from server.core.ids import hash_key
from server.policy.keys import MASTER_KEY_ENV, load_master_key
from server.store.embedded import sqlite as store
from server.store.embedded.keys import SqliteKeyStore


@pytest.fixture
def keys(tmp_path: Path) -> Iterator[SqliteKeyStore]:
    ks = SqliteKeyStore(tmp_path)
    yield ks
    ks.close()


def test_create_then_lookup(keys: SqliteKeyStore, tmp_path: Path) -> None:
    record, secret = keys.create_sync(
        "svc", KeyLimits(requests_per_minute=10, monthly_budget_usd=2.5)
    )
    principal = keys.lookup_sync(secret)
    assert principal is not None
    assert (principal.key_id, principal.name, principal.is_admin) == (record.id, "svc", False)
    assert principal.limits == KeyLimits(10, None, 2.5)
    assert record.limits.requests_per_minute == 10
    assert not record.limits.HasField("tokens_per_minute")
    assert keys.lookup_sync(secret + "x") is None and keys.lookup_sync("") is None
    assert secret not in repr(keys) and secret not in str(record)


def test_only_the_hash_is_stored(keys: SqliteKeyStore, tmp_path: Path) -> None:
    _, secret = keys.create_sync("svc")
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("keys.db"))
    assert secret.encode() not in raw
    assert hash_key(secret).encode() in raw


def test_other_connections_writes_are_seen_on_the_next_lookup(
    keys: SqliteKeyStore, tmp_path: Path
) -> None:
    # `cli` stands for the `switchboard keys` command: another connection to the same file.
    cli = SqliteKeyStore(tmp_path)
    try:
        assert keys.lookup_sync("sb-unknown") is None  # warms the cache
        record, secret = cli.create_sync("from-cli")
        assert keys.lookup_sync(secret) is not None
        cli.revoke_sync(record.id)
        assert keys.lookup_sync(secret) is None
    finally:
        cli.close()


def test_unchanged_database_costs_one_pragma_per_lookup(keys: SqliteKeyStore) -> None:
    _, secret = keys.create_sync("svc")
    assert keys.lookup_sync(secret) is not None
    statements: list[str] = []
    keys._reader.set_trace_callback(statements.append)
    for _ in range(5):
        assert keys.lookup_sync(secret) is not None
    assert statements == ["PRAGMA data_version"] * 5


async def test_on_the_loop_the_version_is_read_once_per_loop_iteration(
    keys: SqliteKeyStore, tmp_path: Path
) -> None:
    _, secret = keys.create_sync("svc")
    assert keys.lookup_sync(secret) is not None  # loads the cache
    await asyncio.sleep(0)
    statements: list[str] = []
    keys._reader.set_trace_callback(statements.append)
    for _ in range(5):  # one loop iteration: no await here suspends
        assert await keys.lookup(secret) is not None
    assert statements == ["PRAGMA data_version"]
    await asyncio.sleep(0)  # the next iteration reads it again
    assert await keys.lookup(secret) is not None
    assert statements == ["PRAGMA data_version"] * 2


async def test_a_revoke_committed_before_a_later_iteration_is_seen_by_it(
    keys: SqliteKeyStore, tmp_path: Path
) -> None:
    cli = SqliteKeyStore(tmp_path)
    try:
        record, secret = cli.create_sync("from-cli")
        assert await keys.lookup(secret) is not None
        # The CLI commits in another process; a request that arrives after that is started
        # by a later callback than the lookup above (its drop of the version comes first).
        await asyncio.to_thread(cli.revoke_sync, record.id)
        assert await keys.lookup(secret) is None
    finally:
        cli.close()


async def test_the_stores_own_write_is_seen_within_the_same_iteration(
    keys: SqliteKeyStore,
) -> None:
    record, secret = keys.create_sync("svc")
    assert await keys.lookup(secret) is not None
    keys.revoke_sync(record.id)  # no await between: the same loop iteration
    assert await keys.lookup(secret) is None


def test_list_and_revoke(keys: SqliteKeyStore) -> None:
    first, _ = keys.create_sync("a")
    second, _ = keys.create_sync("b")
    assert [k.id for k in keys.list_sync()] == [first.id, second.id]
    revoked = keys.revoke_sync(first.id)
    assert revoked.revoked and revoked.revoke_time.seconds > 0
    assert keys.revoke_sync(first.id).revoke_time == revoked.revoke_time  # idempotent
    assert [k.id for k in keys.list_sync()] == [second.id]
    assert [k.id for k in keys.list_sync(include_revoked=True)] == [first.id, second.id]
    with pytest.raises(NotFoundError):
        keys.revoke_sync("key_nope")


def test_validation(keys: SqliteKeyStore) -> None:
    with pytest.raises(InvalidRequestError) as info:
        keys.create_sync("   ")
    assert [v.field for v in info.value.field_violations] == ["name"]
    with pytest.raises(InvalidRequestError) as info:
        keys.create_sync("x", KeyLimits(requests_per_minute=0, tokens_per_minute=-5))
    assert [v.field for v in info.value.field_violations] == [
        "limits.requests_per_minute",
        "limits.tokens_per_minute",
    ]


def test_concurrent_openers_and_writers(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    secrets: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        try:
            ks = SqliteKeyStore(tmp_path)  # races the schema migration with the others
            try:
                for i in range(10):
                    _, secret = ks.create_sync(f"w{n}-{i}")
                    with lock:
                        secrets.append(secret)
            finally:
                ks.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    reader = SqliteKeyStore(tmp_path)
    try:
        assert len(reader.list_sync()) == 40
        assert all(reader.lookup_sync(s) is not None for s in secrets)
    finally:
        reader.close()
    conn = sqlite3.connect(tmp_path / "keys.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(store.KEYS.migrations)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_master_key_from_env_wins(tmp_path: Path) -> None:
    master = load_master_key(tmp_path, {MASTER_KEY_ENV: "sb-from-env"})
    assert (master.secret, master.source) == ("sb-from-env", "env")
    assert not (tmp_path / "master.key").exists()
    assert "sb-from-env" not in repr(master)


def test_master_key_generated_once_and_private(tmp_path: Path) -> None:
    first = load_master_key(tmp_path / "data", {})
    assert first.source == "generated" and first.secret.startswith("sb-")
    assert first.path is not None
    assert stat.S_IMODE(first.path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700
    again = load_master_key(tmp_path / "data", {})
    assert (again.secret, again.source) == (first.secret, "file")
    assert first.secret not in repr(first)


def test_concurrent_first_starts_agree_on_one_master_key(tmp_path: Path) -> None:
    found: list[str] = []
    threads = [
        threading.Thread(target=lambda: found.append(load_master_key(tmp_path, {}).secret))
        for _ in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(found) == 6 and len(set(found)) == 1
    assert (tmp_path / "master.key").read_text().strip() == found[0]
    assert [p.name for p in tmp_path.iterdir()] == ["master.key"]
