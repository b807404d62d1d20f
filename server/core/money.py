"""Money and months: integer nano-USD (1e-9 USD) and UTC calendar-month bounds.

Money is integer nano-USD throughout accounting, so sums are exact and in-memory spend equals
the ledger's ``SUM(total_nanousd)``; budgets renew at the start of each UTC month.
"""

from __future__ import annotations

from datetime import UTC, datetime

from switchboard.v1 import types_pb2

NANOS_PER_USD = 1_000_000_000


def usd_to_nanos(usd: float) -> int:
    """US dollars as integer nano-USD, rounded to the nearest nano-dollar."""
    return round(usd * NANOS_PER_USD)


def nanos_to_usd(nanos: int) -> float:
    """Integer nano-USD as US dollars."""
    return nanos / NANOS_PER_USD


def cost_nanos(cost: types_pb2.Cost) -> tuple[int, int, int, int, int]:
    """(input, output, cached input, cache write, total) nano-USD of a response's cost: each
    component rounded, the total their exact sum."""
    input_n = usd_to_nanos(cost.input_usd)
    output_n = usd_to_nanos(cost.output_usd)
    cached_n = usd_to_nanos(cost.cached_input_usd)
    write_n = usd_to_nanos(cost.cache_write_usd)
    return input_n, output_n, cached_n, write_n, input_n + output_n + cached_n + write_n


def month_bounds(year: int, month: int) -> tuple[float, float]:
    """Unix seconds of the first instant of this UTC month and of the next one."""
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC) if month == 12 else start.replace(month=month + 1)
    return start.timestamp(), end.timestamp()


def month_of(ts: float) -> tuple[int, int]:
    """The UTC (year, month) of a unix time."""
    d = datetime.fromtimestamp(ts, UTC)
    return d.year, d.month


def format_usd(nanos: int) -> str:
    """``$1.25``, ``$0.000123``: dollars with as many decimals as needed (at most 9)."""
    text = f"{nanos_to_usd(nanos):.9f}".rstrip("0")
    if text.endswith("."):
        text += "00"
    elif len(text.partition(".")[2]) == 1:
        text += "0"
    return "$" + text
