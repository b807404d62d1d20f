"""The usage ledger on a real SQLite file: buffered writes, batching, close, failures, reads."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.core.money import month_bounds
from server.store.embedded import sqlite as store
from server.store.embedded.keys import SqliteKeyStore
from server.store.embedded.ledger import (
    JOURNAL_GLOB,
    USAGE,
    SqliteLedger,
    UsageRow,
    month_totals,
)

NOV = datetime(2026, 11, 10, tzinfo=UTC).timestamp()
OCT = datetime(2026, 10, 31, 23, 59, tzinfo=UTC).timestamp()


def row(n: int, *, key: str = "key_a", at: float = NOV, outcome: str = "success") -> UsageRow:
    return UsageRow(
        time=at,
        request_id=f"req-{n}",
        key_id=key,
        transport="grpc",
        model="cheap",
        route="cheap",
        provider="openai",
        upstream_model="gpt-4o-mini",
        deployment="openai/gpt-4o-mini",
        stream=n % 2 == 0,
        outcome=outcome,
        status=200 if outcome == "success" else 429,
        attempts=1,
        input_tokens=10 + n,
        output_tokens=5,
        cached_input_tokens=2,
        cache_write_tokens=1,
        reasoning_tokens=3,
        input_nanousd=1000,
        output_nanousd=2000,
        cached_input_nanousd=30,
        cache_write_nanousd=4,
        total_nanousd=3034,
        latency_ms=12.5,
    )


def stored(data_dir: Path) -> list[UsageRow]:
    conn = sqlite3.connect(data_dir / "usage.db")
    try:
        cols = ", ".join(UsageRow._fields)
        rows = conn.execute(f"SELECT {cols} FROM usage ORDER BY id").fetchall()
    finally:
        conn.close()
    return [UsageRow._make((*r[:9], bool(r[9]), *r[10:])) for r in rows]


def journals(data_dir: Path) -> list[Path]:
    return sorted(data_dir.glob(JOURNAL_GLOB))


async def eventually(check: Callable[[], bool], within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """Another writer holding usage.db's write lock until the test commits it."""
    store.connect(tmp_path, USAGE).close()  # creates the file and its schema
    conn = sqlite3.connect(tmp_path / "usage.db", isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    yield conn
    if conn.in_transaction:
        conn.execute("COMMIT")
    conn.close()


async def test_rows_are_written_in_the_background_and_round_trip(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path, flush_interval=0.05)
    rows = [row(i) for i in range(3)]
    for r in rows:
        ledger.record(r)
    # Recording did no I/O: the rows wait in memory for the flusher.
    assert ledger.buffered == 3
    assert stored(tmp_path) == []
    await eventually(lambda: len(stored(tmp_path)) == 3)
    assert stored(tmp_path) == rows
    assert ledger.buffered == 0
    await ledger.aclose()


texts = st.text(st.characters(codec="utf-8"), max_size=40)
money = st.integers(min_value=0, max_value=2**62)
rows_strategy = st.builds(
    UsageRow,
    time=st.floats(min_value=0, max_value=4e9, allow_nan=False),
    request_id=texts,
    key_id=texts,
    transport=texts,
    model=texts,
    route=texts,
    provider=texts,
    upstream_model=texts,
    deployment=texts,
    stream=st.booleans(),
    outcome=texts,
    status=st.integers(min_value=0, max_value=599),
    attempts=st.integers(min_value=0, max_value=100),
    input_tokens=money,
    output_tokens=money,
    cached_input_tokens=money,
    cache_write_tokens=money,
    reasoning_tokens=money,
    input_nanousd=money,
    output_nanousd=money,
    cached_input_nanousd=money,
    cache_write_nanousd=money,
    total_nanousd=money,
    latency_ms=st.floats(min_value=0, max_value=1e9, allow_nan=False),
    row_id=st.none() | st.uuids().map(str),
    project_id=st.none() | texts,
)


@settings(max_examples=60, deadline=None)
@given(st.lists(rows_strategy, max_size=150, unique_by=lambda r: r.row_id or id(r)))
def test_a_batch_is_stored_exactly_as_recorded(rows: list[UsageRow]) -> None:
    # A batch goes to SQLite in multi-row INSERTs of 64, 32, ... 1 rows: every value must come
    # back bit for bit and in order (floats, 62-bit integers, any text with NULs, None). The
    # chunk boundaries themselves are the next test's.
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)

        async def record_all() -> None:
            ledger = SqliteLedger(data_dir, flush_interval=30.0)
            for r in rows:
                ledger.record(r)
            await ledger.flush()
            await ledger.aclose()

        asyncio.run(record_all())
        assert stored(data_dir) == rows


@pytest.mark.parametrize("count", [1, 63, 64, 65, 64 * 2 + 32 + 8 + 1, 1000])
async def test_batches_of_any_size_are_stored_in_order(tmp_path: Path, count: int) -> None:
    # Chunk boundaries: one row; 63 takes every smaller chunk once; at and just over a full
    # chunk; several full chunks with a remainder.
    ledger = SqliteLedger(tmp_path, flush_interval=30.0, batch_size=10**6)
    rows = [row(n)._replace(row_id=f"r{n}") for n in range(count)]
    for r in rows:
        ledger.record(r)
    await ledger.flush()
    assert stored(tmp_path) == rows
    await ledger.aclose()


async def test_a_full_batch_is_written_without_waiting_for_the_interval(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path, flush_interval=30.0, batch_size=5)
    for i in range(4):
        ledger.record(row(i))
    await asyncio.sleep(0.1)
    assert stored(tmp_path) == []
    ledger.record(row(4))
    await eventually(lambda: len(stored(tmp_path)) == 5, within=2.0)
    await ledger.aclose()


async def test_close_writes_what_is_buffered_and_later_rows_at_once(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path, flush_interval=30.0)
    for i in range(10):
        ledger.record(row(i))
    await asyncio.sleep(0.05)  # the flusher is now waiting out its interval
    started = time.monotonic()
    await ledger.aclose()
    assert time.monotonic() - started < 1.0
    assert [r.request_id for r in stored(tmp_path)] == [f"req-{i}" for i in range(10)]
    # A request that settles after the graceful stop is not lost either.
    ledger.record(row(10))
    assert len(stored(tmp_path)) == 11


async def test_a_failed_write_keeps_its_rows_and_retries(
    tmp_path: Path, locked: sqlite3.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = SqliteLedger(tmp_path, flush_interval=0.02, busy_timeout_ms=10)
    for i in range(3):
        ledger.record(row(i))
    await eventually(lambda: "will retry" in caplog.text)
    assert ledger.buffered == 3
    ledger.record(row(3))
    locked.execute("COMMIT")
    await eventually(lambda: len(stored(tmp_path)) == 4)
    assert sorted(r.request_id for r in stored(tmp_path)) == [f"req-{i}" for i in range(4)]
    await ledger.aclose()


async def test_rows_that_cannot_be_written_at_close_are_kept_and_imported_next_time(
    tmp_path: Path, locked: sqlite3.Connection
) -> None:
    ledger = SqliteLedger(tmp_path, flush_interval=30.0, busy_timeout_ms=10)
    rows = [row(i) for i in range(3)]
    for r in rows:
        ledger.record(r)
    await ledger.aclose()
    assert journals(tmp_path)
    locked.execute("COMMIT")
    assert stored(tmp_path) == []
    reopened = SqliteLedger(tmp_path)
    assert stored(tmp_path) == rows
    assert not journals(tmp_path)
    await reopened.aclose()


async def test_every_recorded_row_is_journaled_until_committed_and_imported_once(
    tmp_path: Path,
) -> None:
    ledger = SqliteLedger(tmp_path, flush_interval=30.0)
    rows = [row(i)._replace(row_id=f"r{i}") for i in range(5)]
    for r in rows:
        ledger.record(r)
    # Not written yet, but on disk: a killed process leaves them in its journal.
    journaled = b"".join(p.read_bytes() for p in journals(tmp_path))
    assert journaled.count(b"\n") == 5 and stored(tmp_path) == []
    await ledger.flush()
    assert stored(tmp_path) == rows and not journals(tmp_path)
    # A journal replayed over rows already committed (killed between commit and unlink)
    # imports nothing twice.
    (tmp_path / "usage-journal.999999999.dead.1.jsonl").write_bytes(journaled + b'[1.0, "cut')
    other = SqliteLedger(tmp_path)
    assert stored(tmp_path) == rows
    await other.aclose()
    await ledger.aclose()


async def test_month_spend_and_monthly_totals(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path)
    ledger.record(row(1, key="key_a"))
    ledger.record(row(2, key="key_a", outcome="RATE_LIMITED"))
    ledger.record(row(3, key="key_b"))
    ledger.record(row(4, key="key_a", at=OCT))
    await ledger.flush()
    nov = month_bounds(2026, 11)
    assert await ledger.month_spend(*nov) == {"key_a": 2 * 3034, "key_b": 3034}
    assert await ledger.month_spend(*month_bounds(2026, 10)) == {"key_a": 3034}
    totals = month_totals(tmp_path, 2026, 11)
    assert [t.key_id for t in totals] == ["key_a", "key_b"]
    a = totals[0]
    assert (a.requests, a.errors) == (2, 1)
    assert a.input_tokens == 11 + 12 and a.output_tokens == 10 and a.reasoning_tokens == 6
    assert (a.cached_input_tokens, a.cache_write_tokens) == (4, 2)
    assert (a.input_nanousd, a.output_nanousd, a.total_nanousd) == (2000, 4000, 6068)
    assert a.to_json()["cost_usd"] == pytest.approx(6068e-9)
    assert month_totals(tmp_path, 2026, 11, key_id="key_b")[0].requests == 1
    assert month_totals(tmp_path, 2026, 9) == []
    await ledger.aclose()


async def test_ledger_writes_do_not_touch_the_key_database(tmp_path: Path) -> None:
    # keys.db's data_version moves on any commit to it; the ledger must not cause reloads.
    keys = SqliteKeyStore(tmp_path)
    _, secret = keys.create_sync("k")
    assert keys.lookup_sync(secret) is not None
    (version,) = keys._reader.execute("PRAGMA data_version").fetchone()
    ledger = SqliteLedger(tmp_path)
    for i in range(5):
        ledger.record(row(i))
    await ledger.flush()
    assert len(stored(tmp_path)) == 5
    assert keys._reader.execute("PRAGMA data_version").fetchone() == (version,)
    await ledger.aclose()
    keys.close()
