"""The usage ledger's totals query as every SQL ledger runs it (``UsageReader.usage_by``),
for SQLite (``?`` parameters) and PostgreSQL (``$n``); only the UTC day expression differs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from server.core.state import USAGE_GROUPS, KeyTotals, UsageTotals

# A cache hit is a success answered without an upstream call: not an error.
TOTALS_SQL = (
    "COUNT(*), COUNT(*) FILTER (WHERE outcome NOT IN ('success', 'cache_hit')), "
    "SUM(input_tokens), SUM(output_tokens), SUM(cached_input_tokens), SUM(cache_write_tokens), "
    "SUM(reasoning_tokens), SUM(input_nanousd), SUM(output_nanousd), "
    "SUM(cached_input_nanousd), SUM(cache_write_nanousd), SUM(total_nanousd)"
)


def usage_by_sql(
    group: str,
    start: float,
    end: float,
    *,
    key_id: str | None,
    project_id: str | None,
    day_sql: str,
    param: Callable[[int], str],
) -> tuple[str, list[object]]:
    """The SQL and parameters of ``usage_by``: ``day_sql`` is the dialect's UTC day of
    ``time`` (YYYY-MM-DD), ``param(n)`` its n-th placeholder (from 1)."""
    column = {
        "key": "key_id",
        "project": "COALESCE(project_id, '')",
        "model": "model",
        "provider": "provider",
        "day": day_sql,
    }.get(group)
    if column is None:
        raise ValueError(f"cannot group usage by {group!r}; one of {', '.join(USAGE_GROUPS)}")
    where = f"time >= {param(1)} AND time < {param(2)}"
    params: list[object] = [start, end]
    if key_id is not None:
        params.append(key_id)
        where += f" AND key_id = {param(len(params))}"
    if project_id is not None:
        params.append(project_id)
        where += f" AND project_id = {param(len(params))}"
    order = "1" if group == "day" else "SUM(total_nanousd) DESC, 1"
    sql = f"SELECT {column}, {TOTALS_SQL} FROM usage WHERE {where} GROUP BY 1 ORDER BY {order}"
    return sql, params


def usage_totals(rows: Iterable[Sequence[Any]]) -> list[UsageTotals]:
    """``UsageTotals`` of the rows ``usage_by_sql`` selects (SUMs of no rows read as 0)."""
    return [UsageTotals(str(row[0]), *(int(v or 0) for v in row[1:])) for row in rows]


def key_totals(per_key: Iterable[UsageTotals]) -> list[KeyTotals]:
    """``month_totals``' rows from ``usage_by("key", ...)``'s."""
    return [KeyTotals(t.group, *dataclasses.astuple(t)[1:]) for t in per_key]
