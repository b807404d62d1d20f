"""The distributed usage ledger: one row per request in PostgreSQL's ``usage`` table.

``PgLedger`` is the ``UsageSink`` the policy records into and the ``UsageReader`` the CLI, the
budgets and the dashboard read from (``server.core.state``), with the embedded ledger's
semantics (``server/store/embedded/ledger.py``).

``record`` does no I/O: it appends the row to an in-memory buffer. One background task writes
the buffer every ``flush_interval`` seconds (0.2), or as soon as ``batch_size`` rows wait, with
one multi-row ``INSERT ... SELECT FROM unnest(...) ON CONFLICT (row_id) DO NOTHING`` per batch.
Every row has a ``row_id`` (the caller's, or one generated at record time), so a batch retried
after a lost reply is counted once.

PostgreSQL unreachable: rows stay buffered and the writer retries with backoff (to 2 s), so
they are written when it returns, without a restart. The buffer is bounded (``max_buffered``,
100,000 rows); past it the oldest rows are dropped, counted, logged and reported by
``problems()`` (what ``/healthz`` shows). A batch PostgreSQL refuses for its content (not for
being unreachable) is retried row by row and only the rows it refuses are dropped, so one bad
row cannot block the ledger. ``flush`` writes everything now; ``aclose`` does so with a bounded
wait (``close_timeout``), logging what it could not write.

Unlike the embedded ledger there is no journal file: a SIGKILL loses the rows still buffered
(at most ``flush_interval`` seconds' worth, or one batch).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence

import asyncpg

from server.core.context import project_name
from server.core.ids import new_row_id
from server.core.money import month_bounds
from server.core.state import KeyTotals, UsageRow, UsageTotals
from server.store import usage_sql
from server.store.distributed import pg_pool
from server.store.distributed.pg_pool import PoolHandle, reachable

log = logging.getLogger(__name__)

STORE = "the usage ledger"
COLUMNS = UsageRow._fields
# unnest()'s array type of each column, in ``COLUMNS`` order, then ``row_id_generated``.
_TYPES = (
    "float8", "text", "text", "text", "text", "text", "text", "text", "text", "bool", "text",
    "int4", "int4", "int8", "int8", "int8", "int8", "int8", "int8", "int8", "int8", "int8",
    "int8", "float8", "text", "text", "bool",
)  # fmt: skip
assert len(_TYPES) == len(COLUMNS) + 1
_INSERT = (
    f"INSERT INTO usage ({', '.join(COLUMNS)}, row_id_generated) "
    f"SELECT * FROM unnest({', '.join(f'${i}::{t}[]' for i, t in enumerate(_TYPES, 1))}) "
    "ON CONFLICT (row_id) DO NOTHING"
)
_ROW_ID = COLUMNS.index("row_id")
# A buffered row and whether its row_id was generated here (read back as None).
_Buffered = tuple[UsageRow, bool]

# How long a drop of buffered rows stays among ``problems()``.
DROP_REPORT_SECONDS = 300.0


class PgLedger:
    """Buffers usage rows and writes them to PostgreSQL in idempotent batches (module
    docstring)."""

    def __init__(
        self,
        handle: PoolHandle,
        *,
        flush_interval: float = 0.2,
        batch_size: int = 500,
        max_buffered: int = 100_000,
        close_timeout: float = 5.0,
    ) -> None:
        self._handle = handle
        self._pool = handle.pool
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.max_buffered = max_buffered
        self.close_timeout = close_timeout
        self._rows: deque[_Buffered] = deque()
        # The batch being written (taken off ``_rows``; put back in front if the write fails).
        self._writing: list[_Buffered] = []
        self._io = asyncio.Lock()
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False
        self._down_since: float | None = None
        self.dropped = 0
        self._last_drop = 0.0

    def __repr__(self) -> str:
        return f"PgLedger({self._handle!r}, buffered={self.buffered})"

    @property
    def buffered(self) -> int:
        """Rows recorded but not written yet."""
        return len(self._rows) + len(self._writing)

    def problems(self) -> list[str]:
        """What keeps the ledger from being healthy, for ``/healthz`` (empty when healthy)."""
        out = []
        if self._down_since is not None:
            waited = time.monotonic() - self._down_since
            out.append(
                f"ledger: {self.buffered} rows waiting, PostgreSQL unreachable since {waited:.1f} s"
            )
        if self.dropped and time.monotonic() - self._last_drop < DROP_REPORT_SECONDS:
            out.append(
                f"ledger: {self.dropped} rows dropped (buffer of {self.max_buffered} rows full)"
            )
        return out

    # --- the request path ---------------------------------------------------------------------

    def record(self, row: UsageRow) -> None:
        """Buffers one row (no I/O); the writer sends it within ``flush_interval``."""
        generated = row.row_id is None
        if generated:
            row = row._replace(row_id=new_row_id())
        if self._closed:
            log.error("a usage row recorded after the ledger closed was dropped")
            self._drop(1)
            return
        if self.buffered >= self.max_buffered:
            if self._rows:
                self._rows.popleft()
            self._drop(1)
            if not self._rows:
                return  # only the batch in flight is older: keep it, drop this one
        self._rows.append((row, generated))
        if self._task is None:
            self._start()
        n = len(self._rows)
        if n == 1:
            self._wake.set()
        elif n >= self.batch_size:
            self._wake.set()
            self._full.set()

    def _drop(self, n: int) -> None:
        if self.dropped == 0 or time.monotonic() - self._last_drop >= DROP_REPORT_SECONDS:
            log.error(
                "usage ledger buffer full (%d rows, PostgreSQL unreachable): dropping the "
                "oldest rows",
                self.max_buffered,
            )
        self.dropped += n
        self._last_drop = time.monotonic()

    def _start(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (sync callers): rows wait for flush() / aclose()
        self._task = loop.create_task(self._run(), name="pg-usage-ledger-flush")

    # --- the writer ---------------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while not self._closed:
            await self._wake.wait()
            if failures:
                await asyncio.sleep(min(self.flush_interval * 2**failures, 2.0))
            elif len(self._rows) < self.batch_size and not self._closing:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self.flush_interval)
            self._wake.clear()
            self._full.clear()
            try:
                await self._write_all()
            except pg_pool.UNREACHABLE:
                failures = min(failures + 1, 6)
                self._wake.set()
            else:
                failures = 0
                if self._rows:
                    self._wake.set()

    async def _write_all(self) -> None:
        """Writes batches until the buffer is empty; raises when PostgreSQL is unreachable
        (the rows stay buffered, oldest first)."""
        async with self._io:
            while self._rows:
                n = min(len(self._rows), self.batch_size)
                self._writing = [self._rows.popleft() for _ in range(n)]
                try:
                    try:
                        await self._insert(self._writing)
                    except pg_pool.UNREACHABLE:
                        raise
                    except asyncpg.PostgresError as exc:
                        # The batch's content was refused: find and drop the rows at fault.
                        log.error("a usage batch was refused (%s); writing it row by row", exc)
                        await self._insert_one_by_one(self._writing)
                except pg_pool.UNREACHABLE as exc:
                    self._requeue(exc)
                    raise
                except BaseException:
                    # Cancelled (a bounded close): the batch waits again; if it was committed
                    # after all, writing it again counts nothing twice.
                    self._rows.extendleft(reversed(self._writing))
                    self._writing = []
                    raise
                self._writing = []
                if self._down_since is not None:
                    log.info("usage ledger: PostgreSQL reachable again; buffered rows written")
                    self._down_since = None

    def _requeue(self, exc: BaseException) -> None:
        self._rows.extendleft(reversed(self._writing))
        self._writing = []
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning(
                "usage ledger: PostgreSQL unreachable (%s); %d rows buffered, retrying",
                type(exc).__name__,
                len(self._rows),
            )
        over = len(self._rows) - self.max_buffered
        if over > 0:
            for _ in range(over):
                self._rows.popleft()
            self._drop(over)

    async def _insert(self, rows: Sequence[_Buffered]) -> None:
        columns = [list(c) for c in zip(*((*r, g) for r, g in rows), strict=True)]
        await self._pool.execute(_INSERT, *columns)

    async def _insert_one_by_one(self, rows: Sequence[_Buffered]) -> None:
        for row in rows:
            try:
                await self._insert([row])
            except pg_pool.UNREACHABLE:
                raise
            except asyncpg.PostgresError as exc:
                log.error(
                    "usage row %s of request %s refused (%s); dropped",
                    row[0].row_id,
                    row[0].request_id,
                    type(exc).__name__,
                )
                self._drop(1)

    async def flush(self) -> None:
        """Writes every buffered row now; ``StoreUnavailableError`` when PostgreSQL is
        unreachable (the rows stay buffered)."""
        with reachable(STORE):
            await self._write_all()

    async def aclose(self) -> None:
        """Writes everything buffered (waiting at most ``close_timeout``), stops the writer
        and releases the shared pool."""
        if self._closed:
            return
        self._closing = True
        deadline = time.monotonic() + self.close_timeout
        while self._rows or self._writing:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                await asyncio.wait_for(self._write_all(), left)
            except pg_pool.UNREACHABLE:
                await asyncio.sleep(min(0.1, max(deadline - time.monotonic(), 0)))
        self._closed = True
        if self.buffered:
            log.error(
                "usage ledger closed with %d rows unwritten (PostgreSQL unreachable)",
                self.buffered,
            )
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._handle.release()

    # --- reads --------------------------------------------------------------------------------

    async def month_spend(self, start: float, end: float) -> dict[str, int]:
        """Total cost per key and per project of the rows in [start, end), nano-USD."""
        with reachable(STORE):
            by_key = await self._pool.fetch(
                "SELECT key_id, SUM(total_nanousd) FROM usage WHERE time >= $1 AND time < $2 "
                "GROUP BY key_id",
                start,
                end,
            )
            by_project = await self._pool.fetch(
                "SELECT project_id, SUM(total_nanousd) FROM usage WHERE time >= $1 AND time < $2 "
                "AND project_id IS NOT NULL GROUP BY project_id",
                start,
                end,
            )
        spent = {key_id: int(total) for key_id, total in by_key if total}
        spent.update((project_name(p), int(total)) for p, total in by_project if total)
        return spent

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
        sql, params = usage_by_sql(group, start, end, key_id=key_id, project_id=project_id)
        with reachable(STORE):
            rows = await self._pool.fetch(sql, *params)
        return usage_sql.usage_totals(rows)

    async def month_totals(
        self, year: int, month: int, *, key_id: str | None = None
    ) -> list[KeyTotals]:
        """Per-key totals of one UTC month, highest cost first."""
        per_key = await self.usage_by("key", *month_bounds(year, month), key_id=key_id)
        return usage_sql.key_totals(per_key)

    async def rows(self, start: float, end: float, *, limit: int) -> list[UsageRow]:
        """The newest ``limit`` rows in [start, end), newest first."""
        with reachable(STORE):
            rows = await self._pool.fetch(
                f"SELECT {', '.join(COLUMNS)}, row_id_generated FROM usage "
                "WHERE time >= $1 AND time < $2 ORDER BY time DESC, id DESC LIMIT $3",
                start,
                end,
                limit,
            )
        out = []
        for row in rows:
            values = list(row)
            if values.pop():  # generated here: the caller gave none
                values[_ROW_ID] = None
            out.append(UsageRow(*values))
        return out


def usage_by_sql(
    group: str,
    start: float,
    end: float,
    *,
    key_id: str | None = None,
    project_id: str | None = None,
) -> tuple[str, list[object]]:
    """The SQL and parameters of ``PgLedger.usage_by`` (tests EXPLAIN it)."""
    return usage_sql.usage_by_sql(
        group,
        start,
        end,
        key_id=key_id,
        project_id=project_id,
        day_sql="to_char(to_timestamp(time) AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
        param=lambda n: f"${n}",
    )
