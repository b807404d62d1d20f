"""The dashboard's usage figures: the ledger's totals of a window per UTC day and per key,
project, model and provider (``UsageReader.usage_by``, summed by the store)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from server.core.money import nanos_to_usd
from server.core.state import UsageReader, UsageTotals

# The groups shown, in order; "day" feeds the charts and its own table.
GROUPS = ("key", "project", "model", "provider")


@dataclass(frozen=True, slots=True)
class Totals:
    """What a table row or a chart bar shows of one group of ledger rows."""

    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    nanousd: int = 0

    @classmethod
    def of(cls, t: UsageTotals) -> Totals:
        return cls(t.requests, t.errors, t.input_tokens, t.output_tokens, t.total_nanousd)

    @property
    def cost_usd(self) -> float:
        return nanos_to_usd(self.nanousd)


@dataclass(frozen=True, slots=True)
class Row:
    """One group: what to call it, the id behind that name ("" when it is the name), totals."""

    label: str
    ident: str
    totals: Totals


@dataclass(frozen=True, slots=True)
class Usage:
    """One window's figures: every UTC day of it (oldest first) and each group's rows."""

    days: dict[str, Totals]
    by: dict[str, list[Row]]
    total: Totals

    @property
    def day_rows(self) -> list[Row]:
        return [Row(day, "", totals) for day, totals in self.days.items()]


def window(days: int, now: float | None = None) -> tuple[float, float, list[str]]:
    """[start, end) covering the last ``days`` UTC days (today included), and their dates."""
    now = time.time() if now is None else now
    today = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    first = today - timedelta(days=days - 1)
    dates = [(first + timedelta(days=i)).strftime("%Y-%m-%d") for i in range(days)]
    return first.timestamp(), (today + timedelta(days=1)).timestamp(), dates


async def load(
    ledger: UsageReader,
    days: int,
    names: Mapping[str, Mapping[str, str]],
    now: float | None = None,
) -> Usage:
    """The last ``days`` UTC days of usage; ``names[group]`` turns ids into names (keys,
    projects)."""
    start, end, dates = window(days, now)
    per_group = await asyncio.gather(
        *(ledger.usage_by(group, start, end) for group in ("day", *GROUPS))
    )
    by_day = {t.group: Totals.of(t) for t in per_group[0]}
    day_totals = {d: by_day.get(d, Totals()) for d in dates}
    by: dict[str, list[Row]] = {}
    for group, totals in zip(GROUPS, per_group[1:], strict=True):
        known = names.get(group, {})
        by[group] = [_row(t, known) for t in totals]
    total = Totals(*(sum(getattr(t, f) for t in day_totals.values()) for f in Totals.__slots__))
    return Usage(day_totals, by, total)


def _row(t: UsageTotals, names: Mapping[str, str]) -> Row:
    if not t.group:
        return Row("(none)", "", Totals.of(t))
    name = names.get(t.group)
    return Row(name, t.group, Totals.of(t)) if name else Row(t.group, "", Totals.of(t))
