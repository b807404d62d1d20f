"""Cost of one request from its usage and the deployment's prices."""

from __future__ import annotations

from switchboard.v1 import types_pb2

from server.routing.catalog import Price

_PER = 1_000_000.0


def compute_cost(usage: types_pb2.Usage, price: Price | None) -> types_pb2.Cost:
    """Input tokens are billed at three rates: cache reads, cache writes and the rest."""
    if price is None:
        return types_pb2.Cost()
    cached = usage.cached_input_tokens
    written = usage.cache_write_input_tokens
    fresh = max(usage.input_tokens - cached - written, 0)
    cached_rate = price.input if price.cached_input is None else price.cached_input
    write_rate = price.input if price.cache_write is None else price.cache_write
    input_usd = fresh * price.input / _PER
    cached_usd = cached * cached_rate / _PER
    write_usd = written * write_rate / _PER
    output_usd = usage.output_tokens * price.output / _PER
    return types_pb2.Cost(
        input_usd=input_usd,
        output_usd=output_usd,
        cached_input_usd=cached_usd,
        cache_write_usd=write_usd,
        total_usd=input_usd + cached_usd + write_usd + output_usd,
    )
