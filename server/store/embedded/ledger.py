"""The embedded usage ledger: one row per request in ``<data_dir>/usage.db`` (SQLite, WAL).

``SqliteLedger`` is both the ``UsageSink`` the policy records into and the ``UsageReader`` the
CLI and the budgets read from (``server.core.state``).

A file of its own, not ``keys.db``: the key cache reloads whenever ``keys.db``'s
``PRAGMA data_version`` moves, which every ledger commit would otherwise cause.

Requests never touch the disk: ``record`` appends the row to an in-memory buffer, and one
background task writes the buffer in a single transaction, in a worker thread, every
``flush_interval`` seconds (0.2) or as soon as ``batch_size`` (256) rows wait. A failed write
keeps its rows and is retried with backoff. ``aclose`` (awaited by the server's graceful stop)
writes everything still buffered; a row recorded after that is written at once. Rows that still
cannot be written at close are appended to ``usage-pending.jsonl`` beside the database and
imported by the next ``UsageLedger`` that opens it, so an accepted request's usage is not lost
on shutdown (a SIGKILL loses at most the last ``flush_interval`` of rows).

Money is integer nano-USD (1e-9 USD): each cost component of the response (a double) rounded to
the nearest nano-dollar, and ``total_nanousd`` the exact sum of the four components.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from pathlib import Path

import orjson

from server.core.money import month_bounds
from server.core.state import KeyTotals, UsageRow
from server.store.embedded import sqlite as store

log = logging.getLogger(__name__)

PENDING_FILENAME = "usage-pending.jsonl"

USAGE = store.Schema(
    filename="usage.db",
    migrations=(
        """
        CREATE TABLE usage (
            id INTEGER PRIMARY KEY,
            time REAL NOT NULL,
            request_id TEXT NOT NULL,
            key_id TEXT NOT NULL,
            transport TEXT NOT NULL,
            model TEXT NOT NULL,
            route TEXT NOT NULL,
            provider TEXT NOT NULL,
            upstream_model TEXT NOT NULL,
            deployment TEXT NOT NULL,
            stream INTEGER NOT NULL,
            outcome TEXT NOT NULL,
            status INTEGER NOT NULL,
            attempts INTEGER NOT NULL,
            input_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            cached_input_tokens INTEGER NOT NULL,
            cache_write_tokens INTEGER NOT NULL,
            reasoning_tokens INTEGER NOT NULL,
            input_nanousd INTEGER NOT NULL,
            output_nanousd INTEGER NOT NULL,
            cached_input_nanousd INTEGER NOT NULL,
            cache_write_nanousd INTEGER NOT NULL,
            total_nanousd INTEGER NOT NULL,
            latency_ms REAL NOT NULL
        );
        CREATE INDEX usage_time ON usage (time);
        CREATE INDEX usage_key_time ON usage (key_id, time);
        """,
    ),
)


COLUMNS = UsageRow._fields
_INSERT = f"INSERT INTO usage ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"


class SqliteLedger:
    """Buffers usage rows and writes them in batches off the event loop (module docstring)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        flush_interval: float = 0.2,
        batch_size: int = 256,
        busy_timeout_ms: int | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self._busy_timeout_ms = busy_timeout_ms
        self._rows: list[UsageRow] = []
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._full: asyncio.Event | None = None
        self._closing = False
        self._closed = False
        # Serialises writer threads (the flusher, flush(), close) on the one connection.
        self._io_lock = threading.Lock()
        self._conn: sqlite3.Connection | None = self._connect()
        self._import_pending()

    def __repr__(self) -> str:
        return f"SqliteLedger({str(self.data_dir)!r}, buffered={len(self._rows)})"

    @property
    def path(self) -> Path:
        return USAGE.path(self.data_dir)

    @property
    def buffered(self) -> int:
        """Rows recorded but not written yet."""
        return len(self._rows)

    # --- the request path ---------------------------------------------------------------------

    def record(self, row: UsageRow) -> None:
        """Buffers one row (no I/O); the flusher writes it within ``flush_interval``."""
        if self._closed:
            # A request that finished after the graceful stop: write it now rather than lose it.
            self._write_or_spill([row])
            return
        rows = self._rows
        rows.append(row)
        if self._wake is None:
            self._start()
        n = len(rows)
        if n == 1:
            if self._wake is not None:
                self._wake.set()
        elif n >= self.batch_size and self._full is not None:
            self._full.set()

    def _start(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (sync callers): rows wait for flush() / aclose()
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        if self._rows:
            self._wake.set()
        self._task = loop.create_task(self._run(), name="usage-ledger-flush")

    # --- the flusher --------------------------------------------------------------------------

    async def _run(self) -> None:
        wake, full = self._wake, self._full
        assert wake is not None and full is not None
        failures = 0
        while True:
            await wake.wait()
            if not self._closing and len(self._rows) < self.batch_size:
                delay = self.flush_interval * (2**failures if failures else 1)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(full.wait(), min(delay, 5.0))
            wake.clear()
            full.clear()
            rows, self._rows = self._rows, []
            if rows:
                try:
                    await asyncio.to_thread(self._write, rows)
                except sqlite3.Error as exc:
                    failures = min(failures + 1, 6)
                    log.error("writing %d usage rows failed (will retry): %s", len(rows), exc)
                    self._rows[:0] = rows
                    if self._closing:
                        return
                else:
                    failures = 0
            if self._rows:
                wake.set()
            elif self._closing:
                return

    def _write(self, rows: list[UsageRow]) -> None:
        with self._io_lock:
            conn = self._conn
            if conn is None:
                conn = self._conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_INSERT, rows)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _write_or_spill(self, rows: list[UsageRow]) -> None:
        try:
            self._write(rows)
        except sqlite3.Error as exc:
            path = self.data_dir / PENDING_FILENAME
            log.error(
                "writing %d usage rows failed at shutdown (%s); kept in %s", len(rows), exc, path
            )
            try:
                with open(path, "ab") as fh:
                    fh.write(b"".join(orjson.dumps(list(r)) + b"\n" for r in rows))
            except OSError as err:
                log.critical("%d usage rows are lost: cannot write %s: %s", len(rows), path, err)
        finally:
            if self._closed:
                self._close_conn()

    def _close_conn(self) -> None:
        with self._io_lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _import_pending(self) -> None:
        path = self.data_dir / PENDING_FILENAME
        try:
            lines = path.read_bytes().splitlines()
        except FileNotFoundError:
            return
        rows = [UsageRow(*orjson.loads(line)) for line in lines if line.strip()]
        self._write(rows)
        path.unlink()
        log.info("imported %d usage rows kept from an earlier shutdown", len(rows))

    async def flush(self) -> None:
        """Writes every buffered row now (tests, and callers that need the rows on disk)."""
        rows, self._rows = self._rows, []
        if rows:
            try:
                await asyncio.to_thread(self._write, rows)
            except sqlite3.Error:
                self._rows[:0] = rows
                raise

    async def aclose(self) -> None:
        """Writes everything buffered and closes the file; later rows are written at once."""
        if self._closed:
            return
        self._closing = True
        if self._task is not None and self._wake is not None and self._full is not None:
            self._wake.set()
            self._full.set()
            with contextlib.suppress(Exception):
                await self._task
        self._closed = True
        rows, self._rows = self._rows, []
        if rows:
            await asyncio.to_thread(self._write_or_spill, rows)
        else:
            self._close_conn()

    # --- reads --------------------------------------------------------------------------------

    async def month_spend(self, start: float, end: float) -> dict[str, int]:
        """Total cost per key of the rows in [start, end), nano-USD (loaded at startup)."""
        return month_spend(self.data_dir, start, end)

    async def month_totals(
        self, year: int, month: int, *, key_id: str | None = None
    ) -> list[KeyTotals]:
        """Per-key totals of one UTC month, highest cost first."""
        return await asyncio.to_thread(month_totals, self.data_dir, year, month, key_id=key_id)

    def _connect(self) -> sqlite3.Connection:
        conn = store.connect(self.data_dir, USAGE)
        if self._busy_timeout_ms is not None:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        return conn


def month_spend(data_dir: Path, start: float, end: float) -> dict[str, int]:
    """Total cost per key of the rows in [start, end), nano-USD."""
    conn = store.connect(data_dir, USAGE)
    try:
        rows = conn.execute(
            "SELECT key_id, SUM(total_nanousd) FROM usage WHERE time >= ? AND time < ? "
            "GROUP BY key_id",
            (start, end),
        ).fetchall()
    finally:
        conn.close()
    return {key_id: int(total) for key_id, total in rows if total}


def month_totals(
    data_dir: Path, year: int, month: int, *, key_id: str | None = None
) -> list[KeyTotals]:
    """Per-key totals of one UTC month, highest cost first (reads while the server writes)."""
    start, end = month_bounds(year, month)
    where = "time >= ? AND time < ?"
    params: tuple[object, ...] = (start, end)
    if key_id is not None:
        where += " AND key_id = ?"
        params += (key_id,)
    conn = store.connect(data_dir, USAGE)
    try:
        rows = conn.execute(
            "SELECT key_id, COUNT(*), SUM(outcome != 'success'), SUM(input_tokens), "
            "SUM(output_tokens), SUM(cached_input_tokens), SUM(cache_write_tokens), "
            "SUM(reasoning_tokens), SUM(input_nanousd), SUM(output_nanousd), "
            "SUM(cached_input_nanousd), SUM(cache_write_nanousd), SUM(total_nanousd) "
            f"FROM usage WHERE {where} GROUP BY key_id ORDER BY SUM(total_nanousd) DESC, key_id",
            params,
        ).fetchall()
    finally:
        conn.close()
    return [KeyTotals(row[0], *(int(v or 0) for v in row[1:])) for row in rows]
