"""The PostgreSQL stores against the machine's real server: migrations racing, ledger
idempotency and buffering, an outage through a loopback proxy that is cut and restored, key
revocation reaching another store through LISTEN/NOTIFY, the usage indexes, and secrets kept
out of reprs, errors and logs.

Every test works in a fresh schema (``tests/support/postgres.py``), dropped afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from server.core.errors import StoreUnavailableError
from server.core.state import UsageRow
from server.store.distributed import pg_pool
from server.store.distributed.pg_keys import FAIL_FAST_SECONDS
from server.store.distributed.pg_ledger import PgLedger, usage_by_sql
from server.store.distributed.pg_pool import PoolHandle
from server.store.distributed.pg_schema import MIGRATIONS, migrate
from server.store.distributed.postgres import PgStores, open_postgres
from tests.fakes.tcp_proxy import TcpProxy
from tests.support.postgres import fresh_schema, postgres_url, with_port

pytestmark = pytest.mark.postgres

PASSWORD = "hunter2-not-for-logs"


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    async with fresh_schema(postgres_url()) as name:
        yield name


@pytest.fixture
async def opened() -> AsyncIterator[list[PgStores]]:
    stores: list[PgStores] = []
    yield stores
    for pg in stores:
        await pg.aclose()


def usage_row(key_id: str, *, row_id: str | None, nanos: int = 10, when: float = 0.0) -> UsageRow:
    return UsageRow(
        when or time.time(), uuid.uuid4().hex, key_id, "http", "m", "m", "p", "um", "d", False,
        "success", 200, 1, 10, 5, 0, 0, 0, nanos, 0, 0, 0, nanos, 1.5, row_id, None,
    )  # fmt: skip


async def eventually(check: Callable[[], Awaitable[bool] | bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def key_total(url: str, schema: str, key_id: str) -> tuple[int, int]:
    conn = await asyncpg.connect(url, server_settings={"search_path": schema})
    try:
        row = await conn.fetchrow(
            "SELECT COUNT(*), COALESCE(SUM(total_nanousd), 0) FROM usage WHERE key_id = $1", key_id
        )
    finally:
        await conn.close()
    assert row is not None
    return int(row[0]), int(row[1])


# --- migrations ---------------------------------------------------------------------------


async def test_three_processes_opening_an_empty_schema_at_once_migrate_it_once(
    schema: str, opened: list[PgStores]
) -> None:
    url = postgres_url()
    opened.extend(await asyncio.gather(*(open_postgres(url, schema) for _ in range(3))))
    conn = await asyncpg.connect(url)
    try:
        versions = await conn.fetch(f"SELECT version FROM {schema}.schema_migrations")
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
        )
        # Racing migrate() directly: exactly one caller applies, the others find it done.
        fresh = schema + "_b"
        conns = [await asyncpg.connect(url, server_settings={"search_path": fresh}) for _ in "abc"]
        try:
            applied = await asyncio.gather(*(migrate(c, fresh) for c in conns))
        finally:
            for c in conns:
                await c.close()
            await conn.execute(f"DROP SCHEMA IF EXISTS {fresh} CASCADE")
    finally:
        await conn.close()
    assert sorted(v[0] for v in versions) == list(range(1, len(MIGRATIONS) + 1))
    assert sorted(t[0] for t in tables) == [
        "gateway_keys", "key_secrets", "projects", "responses", "schema_migrations", "usage",
    ]  # fmt: skip
    assert sorted(applied) == [[], [], list(range(1, len(MIGRATIONS) + 1))]
    # All three work on the one schema.
    _, secret = await opened[0].keys.create("k")
    assert (await opened[2].keys.lookup(secret)) is not None


# --- the ledger ---------------------------------------------------------------------------


async def test_a_row_written_twice_counts_once(schema: str, opened: list[PgStores]) -> None:
    url = postgres_url()
    pg = await open_postgres(url, schema)
    opened.append(pg)
    key = "key_" + uuid.uuid4().hex[:12]
    same = usage_row(key, row_id="r-" + uuid.uuid4().hex, nanos=7)
    pg.ledger.record(same)
    pg.ledger.record(same)  # twice in one batch
    await pg.ledger.flush()
    pg.ledger.record(same)  # and again in a later one (a retried batch)
    await pg.ledger.flush()
    assert await key_total(url, schema, key) == (1, 7)
    # Rows without a row_id get one each at record time: two records are two requests.
    pg.ledger.record(usage_row(key, row_id=None, nanos=1))
    pg.ledger.record(usage_row(key, row_id=None, nanos=1))
    await pg.ledger.flush()
    assert await key_total(url, schema, key) == (3, 9)
    newest = await pg.ledger.rows(time.time() - 60, time.time() + 1, limit=10)
    assert [r.row_id for r in newest] == [None, None, same.row_id]  # generated ids stay hidden


async def test_the_writer_batches_in_the_background_and_aclose_writes_the_rest(
    schema: str,
) -> None:
    url = postgres_url()
    pg = await open_postgres(url, schema)
    key = "key_" + uuid.uuid4().hex[:12]
    for _ in range(30):
        pg.ledger.record(usage_row(key, row_id=None))
    await eventually(lambda: pg.ledger.buffered == 0, within=2.0)  # no flush() called
    assert await key_total(url, schema, key) == (30, 300)
    for _ in range(1200):  # more than one batch, closed at once
        pg.ledger.record(usage_row(key, row_id=None))
    await pg.aclose()
    assert await key_total(url, schema, key) == (1230, 12300)


async def test_the_usage_queries_use_their_indexes(schema: str, opened: list[PgStores]) -> None:
    url = postgres_url()
    opened.append(await open_postgres(url, schema))
    conn = await asyncpg.connect(url, server_settings={"search_path": schema})
    try:
        # 100,000 rows over ~100 days, 500 keys, 20 projects: enough for the planner to prefer
        # an index to a scan wherever one applies.
        await conn.execute(
            "INSERT INTO usage (time, request_id, key_id, transport, model, route, provider, "
            "upstream_model, deployment, stream, outcome, status, attempts, input_tokens, "
            "output_tokens, cached_input_tokens, cache_write_tokens, reasoning_tokens, "
            "input_nanousd, output_nanousd, cached_input_nanousd, cache_write_nanousd, "
            "total_nanousd, latency_ms, row_id, project_id) "
            "SELECT 1.7e9 + i * 86.4, 'r' || i, 'key_' || (i % 500), 'http', 'm', 'm', 'p', "
            "'um', 'd', false, 'success', 200, 1, 1, 1, 0, 0, 0, 1, 1, 0, 0, 2, 1.0, "
            "'row' || i, 'proj_' || (i % 20) FROM generate_series(1, 100000) AS i"
        )
        await conn.execute("ANALYZE usage")
        day = 1.7e9 + 50 * 86400.0
        plans = {}
        for name, (sql, params) in {
            "by key of one key": usage_by_sql("model", day, day + 86400, key_id="key_7"),
            "by project of one project": usage_by_sql("key", day, day + 86400, project_id="proj_3"),
            "by model of one day": usage_by_sql("model", day, day + 86400),
            "newest rows": (
                "SELECT * FROM usage WHERE time >= $1 AND time < $2 "
                "ORDER BY time DESC, id DESC LIMIT $3",
                [day, day + 86400 * 30, 100],
            ),
        }.items():
            rows = await conn.fetch(f"EXPLAIN {sql}", *params)
            plans[name] = "\n".join(r[0] for r in rows)
    finally:
        await conn.close()
    assert "usage_key_time" in plans["by key of one key"], plans
    assert "usage_project_time" in plans["by project of one project"], plans
    assert "usage_time" in plans["by model of one day"], plans
    assert "usage_time" in plans["newest rows"], plans
    assert not any("Seq Scan" in plan for plan in plans.values()), plans


# --- outages --------------------------------------------------------------------------------


async def test_an_outage_fails_lookups_closed_buffers_rows_and_recovers_without_restart(
    schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = postgres_url()
    direct = await open_postgres(url, schema, local_peers=False)
    async with TcpProxy("127.0.0.1", 5432) as proxy:
        proxied_url = with_port(url.replace("postgres@", f"postgres:{PASSWORD}@"), proxy.port)
        pg = await open_postgres(proxied_url, schema, local_peers=False)
        try:
            _, cached = await pg.keys.create("cached")
            uncached_record, uncached = await pg.keys.create("uncached")
            assert await pg.keys.lookup(cached) is not None
            key = "key_" + uuid.uuid4().hex[:12]

            proxy.cut()
            # Within its TTL a cached answer is still served; anything else fails closed.
            assert await pg.keys.lookup(cached) is not None
            with pytest.raises(StoreUnavailableError) as info:
                await pg.keys.lookup(uncached)
            message = info.value.message
            assert "key store (PostgreSQL) is unreachable" in message
            for _ in range(25):
                pg.ledger.record(usage_row(key, row_id=None))
            await eventually(lambda: bool(pg.ledger.problems()), within=3.0)
            assert pg.ledger.buffered == 25
            (problem,) = pg.ledger.problems()
            assert problem.startswith("ledger: 25 rows waiting, PostgreSQL unreachable since")
            with pytest.raises(StoreUnavailableError) as flush_info:
                await pg.ledger.flush()
            await eventually(lambda: not pg.keys.listening, within=7.0)
            # Past its TTL even a cached answer fails closed.
            await asyncio.sleep(pg.keys.cache_ttl)
            with pytest.raises(StoreUnavailableError):
                await pg.keys.lookup(cached)
            texts = [
                message,
                flush_info.value.message,
                repr(pg),
                repr(pg.keys),
                repr(pg.ledger),
                repr(pg.responses),
                *pg.ledger.problems(),
                *(r.getMessage() for r in caplog.records),
            ]

            proxy.restore()
            await eventually(lambda: pg.ledger.buffered == 0, within=5.0)
            assert pg.ledger.problems() == []
            assert await key_total(url, schema, key) == (25, 250)
            # Lookups fail fast for FAIL_FAST_SECONDS after a failure, then reach it again.
            await asyncio.sleep(FAIL_FAST_SECONDS)
            assert (await pg.keys.lookup(uncached)) is not None
            # The listener is back: a revocation elsewhere reaches this store's cache.
            await eventually(lambda: pg.keys.listening, within=5.0)
            await direct.keys.revoke(uncached_record.id)
            await eventually(lambda: _refused(pg, uncached), within=0.5)
            texts.extend(r.getMessage() for r in caplog.records)
        finally:
            await pg.aclose()
            await direct.aclose()
    assert not [t for t in texts if PASSWORD in t or proxied_url in t]
    assert "unreachable" in " ".join(texts)


async def _refused(pg: PgStores, secret: str) -> bool:
    return await pg.keys.lookup(secret) is None


async def test_open_fails_with_store_unavailable_when_nothing_listens(schema: str) -> None:
    async with TcpProxy("127.0.0.1", 5432) as proxy:
        proxy.cut()
        url = with_port(postgres_url().replace("postgres@", f"postgres:{PASSWORD}@"), proxy.port)
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError) as info:
            await open_postgres(url, schema)
    assert time.monotonic() - started < 5.0
    assert PASSWORD not in info.value.message and "PostgreSQL" in info.value.message


async def test_a_full_buffer_drops_the_oldest_rows_and_says_so(schema: str) -> None:
    url = postgres_url()
    (await open_postgres(url, schema)).pool.terminate()  # migrated
    async with TcpProxy("127.0.0.1", 5432) as proxy:
        proxied = with_port(url, proxy.port)
        pool = await pg_pool.create_pool(proxied, schema)
        ledger = PgLedger(
            PoolHandle(pool, proxied, schema, holders=1), max_buffered=5, close_timeout=0.3
        )
        key = "key_" + uuid.uuid4().hex[:12]
        proxy.cut()
        rows = [usage_row(key, row_id=f"{key}-{i}", nanos=i) for i in range(8)]
        for r in rows:
            ledger.record(r)
        assert ledger.buffered == 5 and ledger.dropped == 3
        await eventually(lambda: len(ledger.problems()) == 2, within=3.0)
        assert "3 rows dropped" in ledger.problems()[1]
        proxy.restore()
        await eventually(lambda: ledger.buffered == 0, within=5.0)
        # Closing with PostgreSQL gone waits no longer than close_timeout.
        ledger.record(usage_row(key, row_id=None))
        proxy.cut()
        started = time.monotonic()
        await ledger.aclose()
        assert time.monotonic() - started < 3.0
    # The five newest were kept and written.
    assert await key_total(url, schema, key) == (5, sum(range(3, 8)))


# --- revocation across stores ---------------------------------------------------------------


async def test_a_revocation_reaches_another_store_within_a_second(
    schema: str, opened: list[PgStores]
) -> None:
    url = postgres_url()
    # local_peers off: B learns of A's writes only through PostgreSQL, as another process does.
    a = await open_postgres(url, schema, local_peers=False)
    b = await open_postgres(url, schema, local_peers=False)
    opened.extend((a, b))
    assert a.keys.listening and b.keys.listening
    seen: list[float] = []
    for _ in range(50):
        record, secret = await a.keys.create("timed")
        assert await b.keys.lookup(secret) is not None  # cached in B now
        started = time.perf_counter()
        await a.keys.revoke(record.id)
        while await b.keys.lookup(secret) is not None:
            assert time.perf_counter() - started < 2.0
            await asyncio.sleep(0.001)
        seen.append(time.perf_counter() - started)
    median, worst = statistics.median(seen), max(seen)
    print(f"revocation visible in B: median {median * 1000:.1f} ms, max {worst * 1000:.1f} ms")
    assert worst <= 1.0
    # Without the notification (B not listening) the cache TTL still bounds it.
    b.keys._listener_task.cancel()  # type: ignore[union-attr]
    await eventually(lambda: not b.keys.listening, within=2.0)
    record, secret = await a.keys.create("ttl")
    assert await b.keys.lookup(secret) is not None
    started = time.perf_counter()
    await a.keys.revoke(record.id)
    while await b.keys.lookup(secret) is not None:
        assert time.perf_counter() - started <= b.keys.cache_ttl + 0.1
        await asyncio.sleep(0.01)
