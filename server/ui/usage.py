"""The dashboard's usage figures: ledger rows of a window folded into totals per day and per
key, project, model and provider."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from server.core.money import nanos_to_usd
from server.core.state import UsageRow

DAY = 86400.0
# Rows folded per page view at most: a window with more shows the newest ones, and says so.
MAX_ROWS = 200_000


@dataclass(slots=True)
class Totals:
    """Requests, errors, tokens and cost of one group of ledger rows."""

    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    nanousd: int = 0

    def add(self, row: UsageRow) -> None:
        self.requests += 1
        self.errors += row.outcome != "success"
        self.input_tokens += row.input_tokens
        self.output_tokens += row.output_tokens
        self.nanousd += row.total_nanousd

    @property
    def cost_usd(self) -> float:
        return nanos_to_usd(self.nanousd)


@dataclass(slots=True)
class Usage:
    """One window's figures: per UTC day (every day of the window, oldest first) and per group."""

    days: dict[str, Totals]
    by: dict[str, dict[str, Totals]]
    total: Totals = field(default_factory=Totals)
    truncated: bool = False


def window(days: int, now: float | None = None) -> tuple[float, float, list[str]]:
    """[start, end) covering the last ``days`` UTC days (today included), and their dates."""
    now = time.time() if now is None else now
    today = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    first = today - timedelta(days=days - 1)
    dates = [(first + timedelta(days=i)).strftime("%Y-%m-%d") for i in range(days)]
    return first.timestamp(), (today + timedelta(days=1)).timestamp(), dates


def fold(
    rows: Iterable[UsageRow],
    dates: list[str],
    groups: Mapping[str, Callable[[UsageRow], str]],
    *,
    truncated: bool = False,
) -> Usage:
    """Totals of ``rows`` per day of ``dates`` and per value of each group's key function."""
    usage = Usage(
        days={d: Totals() for d in dates}, by={g: {} for g in groups}, truncated=truncated
    )
    for row in rows:
        day = datetime.fromtimestamp(row.time, UTC).strftime("%Y-%m-%d")
        if day in usage.days:
            usage.days[day].add(row)
        usage.total.add(row)
        for name, key_of in groups.items():
            bucket = usage.by[name]
            key = key_of(row) or "(none)"
            totals = bucket.get(key)
            if totals is None:
                totals = bucket[key] = Totals()
            totals.add(row)
    for name, bucket in usage.by.items():
        usage.by[name] = dict(sorted(bucket.items(), key=lambda kv: (-kv[1].nanousd, kv[0])))
    return usage
