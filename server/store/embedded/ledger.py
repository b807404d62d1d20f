"""The embedded usage ledger: one row per request in ``<data_dir>/usage.db`` (SQLite, WAL).

``SqliteLedger`` is both the ``UsageSink`` the policy records into and the ``UsageReader`` the
CLI and the budgets read from (``server.core.state``).

A file of its own, not ``keys.db``: the key cache reloads whenever ``keys.db``'s
``PRAGMA data_version`` moves, which every ledger commit would otherwise cause.

Requests never wait on the database: ``record`` appends the row to an in-memory buffer and one
line to this process's journal file (``usage-journal.<pid>.<id>.<n>.jsonl``, a single unbuffered
append: once it returns the row survives the process being killed, since the kernel holds it),
and one background task writes the buffer in a single transaction, in a worker thread, every
``flush_interval`` seconds (0.2) or as soon as ``batch_size`` (1024) rows wait. Taking a batch
starts the next journal file; a committed batch deletes the files it covered. A failed write
keeps its rows (and their journal) and is retried with backoff. ``aclose`` (awaited by the
server's graceful stop) writes everything still buffered; a row recorded after that is written
at once. Whatever is left in the journal of a process that is gone (SIGKILL, a crash, a failed
write at shutdown) is imported by the next ledger that opens the data dir; a row's ``row_id`` is
unique, so a row that was committed before its journal was deleted is not imported twice.
So a SIGKILL loses no row of a request that finished, only the requests still in flight.

Each batch costs the event loop a fixed amount (a journal file created and deleted, a hand-off to
the thread and back, the GIL passed a few times): at 1024 rows rather than 256 a saturated shim
served the same requests with 6% less CPU each (``bench/run.py --tests c64``, 2026-12-07).

Money is integer nano-USD (1e-9 USD): each cost component of the response (a double) rounded to
the nearest nano-dollar, and ``total_nanousd`` the exact sum of the four components.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import sqlite3
import threading
from itertools import chain
from pathlib import Path

import orjson

from server.core.context import project_name
from server.core.money import month_bounds
from server.core.state import KeyTotals, UsageRow, UsageTotals
from server.store.embedded import sqlite as store
from server.store.usage_sql import key_totals, usage_by_sql, usage_totals

log = logging.getLogger(__name__)

JOURNAL_GLOB = "usage-journal.*.jsonl"

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
        # Rows carry a unique id so a journal is imported idempotently.
        """
        ALTER TABLE usage ADD COLUMN row_id TEXT;
        CREATE UNIQUE INDEX usage_row_id ON usage (row_id);
        """,
        # Issue 9: the key's project at request time (project budgets, usage by project).
        """
        ALTER TABLE usage ADD COLUMN project_id TEXT;
        CREATE INDEX usage_project_time ON usage (project_id, time);
        """,
    ),
)


COLUMNS = UsageRow._fields
_INTO = f"INSERT OR IGNORE INTO usage ({', '.join(COLUMNS)})"
_ROW = f"({', '.join('?' * len(COLUMNS))})"
# A batch is written by multi-row INSERT statements of up to _CHUNK rows, in chunks whose sizes
# are powers of two, so a few cached statements cover any batch. Not ``executemany``: it takes the
# GIL back after every row's step, and under a saturated event loop each of those waits out a
# switch interval (5 ms), so the writer fell behind at a few thousand rows a second. Not one
# JSON array through ``json_each`` either (the code before): extracting every column with
# ``->>`` cost 4.4 ms of CPU per 256 rows, the chunks 1.0 ms. 64 rows bind 1,728 parameters,
# about 0.15 ms with the GIL held; 256 rows held it long enough to delay the loop by 0.6 ms.
_CHUNK = 64
_INSERTS = {
    size: f"{_INTO} VALUES {', '.join([_ROW] * size)}"
    for size in (2**power for power in range(_CHUNK.bit_length()))
}


def _insert(conn: sqlite3.Connection, rows: list[UsageRow]) -> None:
    """Inserts ``rows`` with one statement per chunk (see ``_CHUNK``)."""
    start, size = 0, _CHUNK
    while start < len(rows):
        while len(rows) - start < size:
            size //= 2
        conn.execute(_INSERTS[size], tuple(chain.from_iterable(rows[start : start + size])))
        start += size


class SqliteLedger:
    """Buffers usage rows and writes them in batches off the event loop (module docstring)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        flush_interval: float = 0.2,
        batch_size: int = 1024,
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
        self._import_journals()
        # This process's journal: the file rows are appended to, and the earlier files whose
        # rows are buffered or being written (deleted once committed).
        self._journal_id = f"{os.getpid()}.{secrets.token_hex(4)}"
        _OPEN_JOURNALS.add(self._journal_id)
        self._journal_seq = 0
        self._journal_fd = -1
        self._journal_path: Path | None = None
        self._journal_done: list[Path] = []

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
        """Buffers one row and journals it (one append); the flusher writes it within
        ``flush_interval``."""
        if self._closed:
            # A request that finished after the graceful stop: write it now rather than lose it.
            self._journal(row)
            self._write_or_keep([row])
            return
        self._journal(row)
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
            covered = self._rotate()
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
                    self._forget(covered)
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
                _insert(conn, rows)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _write_or_keep(self, rows: list[UsageRow]) -> None:
        """Writes rows now; when that fails they stay in the journal for the next start."""
        try:
            self._write(rows)
        except sqlite3.Error as exc:
            log.error(
                "writing %d usage rows failed at shutdown (%s); the journal keeps them for the "
                "next start",
                len(rows),
                exc,
            )
        else:
            self._forget(self._rotate())
        finally:
            if self._closed:
                self._close_journal()
                self._close_conn()
                _OPEN_JOURNALS.discard(self._journal_id)

    def _close_conn(self) -> None:
        with self._io_lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # --- the journal -------------------------------------------------------------------------

    def _journal(self, row: UsageRow) -> None:
        line = orjson.dumps(tuple(row), option=orjson.OPT_APPEND_NEWLINE)
        try:
            if self._journal_fd < 0:
                self._open_journal()
            os.write(self._journal_fd, line)
        except OSError as exc:
            # The buffer still holds the row; only its protection against a kill is gone.
            log.error("cannot append to the usage journal: %s", exc)

    def _open_journal(self) -> None:
        self._journal_seq += 1
        path = self.data_dir / f"usage-journal.{self._journal_id}.{self._journal_seq}.jsonl"
        self._journal_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._journal_path = path

    def _rotate(self) -> list[Path]:
        """Starts a new journal file; returns every file whose rows are now taken (buffered
        rows that failed to write stay covered by theirs until a later batch commits)."""
        self._close_journal()
        return list(self._journal_done)

    def _close_journal(self) -> None:
        if self._journal_fd >= 0:
            os.close(self._journal_fd)
            self._journal_fd = -1
            assert self._journal_path is not None
            self._journal_done.append(self._journal_path)
            self._journal_path = None

    def _forget(self, paths: list[Path]) -> None:
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            self._journal_done.remove(path)

    def _import_journals(self) -> None:
        """Writes the rows journaled by processes that are gone, then deletes their files."""
        rows: list[UsageRow] = []
        imported: list[Path] = []
        for path in sorted(self.data_dir.glob(JOURNAL_GLOB)):
            _, pid, token = path.name.split(".")[:3]
            if f"{pid}.{token}" in _OPEN_JOURNALS or (pid.isdigit() and _alive(int(pid))):
                continue
            for line in path.read_bytes().splitlines():
                with contextlib.suppress(orjson.JSONDecodeError, TypeError):
                    # A line cut short by the kill is the only one that can fail to parse.
                    rows.append(UsageRow(*orjson.loads(line)))
            imported.append(path)
        if not imported:
            return
        self._write(rows)
        for path in imported:
            path.unlink()
        log.info("imported %d journaled usage rows of an earlier process", len(rows))

    async def flush(self) -> None:
        """Writes every buffered row now (tests, and callers that need the rows on disk)."""
        rows, self._rows = self._rows, []
        covered = self._rotate()
        if rows:
            try:
                await asyncio.to_thread(self._write, rows)
            except sqlite3.Error:
                self._rows[:0] = rows
                raise
        self._forget(covered)

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
            await asyncio.to_thread(self._write_or_keep, rows)
        else:
            self._forget(self._rotate())
            self._close_conn()
            _OPEN_JOURNALS.discard(self._journal_id)

    # --- reads --------------------------------------------------------------------------------

    async def month_spend(self, start: float, end: float) -> dict[str, int]:
        """Total cost per key and per project of the rows in [start, end), nano-USD (loaded
        at startup)."""
        return month_spend(self.data_dir, start, end)

    async def usage_by(
        self,
        group: str,
        start: float,
        end: float,
        *,
        key_id: str | None = None,
        project_id: str | None = None,
    ) -> list[UsageTotals]:
        """Totals of the rows in [start, end) grouped by key, project, model, provider or day."""
        return await asyncio.to_thread(
            usage_by, self.data_dir, group, start, end, key_id=key_id, project_id=project_id
        )

    async def month_totals(
        self, year: int, month: int, *, key_id: str | None = None
    ) -> list[KeyTotals]:
        """Per-key totals of one UTC month, highest cost first."""
        return await asyncio.to_thread(month_totals, self.data_dir, year, month, key_id=key_id)

    async def rows(self, start: float, end: float, *, limit: int) -> list[UsageRow]:
        """The newest ``limit`` rows in [start, end), newest first."""
        return await asyncio.to_thread(recent_rows, self.data_dir, start, end, limit)

    def _connect(self) -> sqlite3.Connection:
        conn = store.connect(self.data_dir, USAGE)
        if self._busy_timeout_ms is not None:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        return conn


# Journals of the ledgers open in this process (a closed one's may be imported).
_OPEN_JOURNALS: set[str] = set()


def _alive(pid: int) -> bool:
    """Whether another process with this id runs (its journal is then still in use)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def month_spend(data_dir: Path, start: float, end: float) -> dict[str, int]:
    """Total cost of the rows in [start, end), nano-USD, per key id and, for rows with a
    project, per ``project_name(id)`` (the budgets' names)."""
    conn = store.connect(data_dir, USAGE)
    try:
        by_key = conn.execute(
            "SELECT key_id, SUM(total_nanousd) FROM usage WHERE time >= ? AND time < ? "
            "GROUP BY key_id",
            (start, end),
        ).fetchall()
        by_project = conn.execute(
            "SELECT project_id, SUM(total_nanousd) FROM usage WHERE time >= ? AND time < ? "
            "AND project_id IS NOT NULL GROUP BY project_id",
            (start, end),
        ).fetchall()
    finally:
        conn.close()
    spent = {key_id: int(total) for key_id, total in by_key if total}
    spent.update((project_name(p), int(total)) for p, total in by_project if total)
    return spent


def usage_by(
    data_dir: Path,
    group: str,
    start: float,
    end: float,
    *,
    key_id: str | None = None,
    project_id: str | None = None,
) -> list[UsageTotals]:
    """``UsageReader.usage_by`` (reads while the server writes)."""
    sql, params = usage_by_sql(
        group,
        start,
        end,
        key_id=key_id,
        project_id=project_id,
        day_sql="strftime('%Y-%m-%d', time, 'unixepoch')",
        param=lambda _: "?",
    )
    conn = store.connect(data_dir, USAGE)
    try:
        rows = conn.execute(sql, params).fetchall()
    finally:
        conn.close()
    return usage_totals(rows)


def month_totals(
    data_dir: Path, year: int, month: int, *, key_id: str | None = None
) -> list[KeyTotals]:
    """Per-key totals of one UTC month, highest cost first (reads while the server writes)."""
    return key_totals(usage_by(data_dir, "key", *month_bounds(year, month), key_id=key_id))


def recent_rows(data_dir: Path, start: float, end: float, limit: int) -> list[UsageRow]:
    """The newest ``limit`` rows in [start, end), newest first (the ``usage_time`` index)."""
    conn = store.connect(data_dir, USAGE)
    try:
        rows = conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM usage WHERE time >= ? AND time < ? "
            "ORDER BY time DESC, id DESC LIMIT ?",
            (start, end, limit),
        ).fetchall()
    finally:
        conn.close()
    return [UsageRow(*row)._replace(stream=bool(row[COLUMNS.index("stream")])) for row in rows]
