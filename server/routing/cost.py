"""Prices, the cost of one request from its usage, and the cheap pre-call cost estimate."""

from __future__ import annotations

from dataclasses import dataclass

from switchboard.v1 import chat_pb2, types_pb2

_PER = 1_000_000.0
# Output tokens assumed when the caller gives no max_tokens: a typical chat answer. Only the
# relative order of deployments matters for `cheapest`, so this need not be precise.
DEFAULT_OUTPUT_ESTIMATE = 512
# Streamed output billed by estimate (no usage arrived): one token per this many characters.
DELIVERED_CHARS_PER_TOKEN = 4
# Per-message framing tokens (role markers) and a flat guess per image.
_MESSAGE_OVERHEAD = 4
_IMAGE_TOKENS = 800


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per million tokens (mirrors ``switchboard.v1.Pricing``)."""

    input: float = 0.0
    output: float = 0.0
    # None means "same as input" (providers without a cache discount / cache-write charge).
    cached_input: float | None = None
    cache_write: float | None = None

    def to_proto(self) -> types_pb2.Pricing:
        """The contract's ``Pricing`` message."""
        return types_pb2.Pricing(
            input_per_mtok=self.input,
            output_per_mtok=self.output,
            cached_input_per_mtok=self.input if self.cached_input is None else self.cached_input,
            cache_write_per_mtok=self.input if self.cache_write is None else self.cache_write,
        )


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


def estimate_input_tokens(request: chat_pb2.ChatRequest) -> int:
    """A cheap estimate of the prompt size: characters / 4 plus small per-part overheads."""
    chars = 0
    images = 0
    for message in request.messages:
        chars += _MESSAGE_OVERHEAD * 4
        for part in message.content:
            kind = part.WhichOneof("part")
            if kind == "text":
                chars += len(part.text)
            elif kind == "tool_result":
                chars += len(part.tool_result.content)
            elif kind == "tool_call":
                chars += len(part.tool_call.arguments) + len(part.tool_call.name)
            elif kind == "image":
                images += 1
            elif kind == "reasoning":
                chars += len(part.reasoning.text)
    for tool in request.tools:
        # Schemas are sent as JSON; their serialized size is a fair proxy without encoding it.
        chars += len(tool.name) + len(tool.description) + 40 * len(tool.parameters.fields)
    return chars // 4 + images * _IMAGE_TOKENS


def estimate_cost(price: Price | None, input_tokens: int, output_tokens: int) -> float | None:
    """Expected USD for a request of this size at a price; None when the price is unknown."""
    if price is None:
        return None
    return (input_tokens * price.input + output_tokens * price.output) / _PER


def output_estimate(request: chat_pb2.ChatRequest) -> int:
    """max_tokens when the caller set it, else a typical answer length."""
    return request.max_tokens if request.HasField("max_tokens") else DEFAULT_OUTPUT_ESTIMATE
