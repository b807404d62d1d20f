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
# Per-message framing tokens (role markers), a typical tool-use prompt and a flat guess per
# image, for the typical estimate.
_MESSAGE_OVERHEAD = 4
_TOOLS_PROMPT = 300
_IMAGE_TOKENS = 800
# The same for the upper bound: what a provider may add around the request's own bytes (role
# markers per message, per tool, Anthropic's tool-use system prompt of ~350-500 tokens) and the
# most tokens one image is billed at (OpenAI's high-detail tiles and patches stay under 2,500;
# Anthropic resizes images to ~1,600; Gemini bills 258 per 768-pixel tile, so only an image of
# more than 24 tiles, about 3,800 pixels square, could pass it).
MESSAGE_FRAMING_BOUND = 16
TOOL_FRAMING_BOUND = 32
TOOLS_PROMPT_BOUND = 1024
REQUEST_FRAMING_BOUND = 64
IMAGE_TOKENS_BOUND = 6400


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


def _content_size(request: chat_pb2.ChatRequest) -> tuple[int, int]:
    """The request's encoded size without its images, and how many images it holds."""
    size = request.ByteSize()
    images = 0
    for message in request.messages:
        for part in message.content:
            if part.WhichOneof("part") == "image":
                images += 1
                size -= part.ByteSize()
    return size, images


def estimate_input_tokens(request: chat_pb2.ChatRequest) -> int:
    """A typical prompt size: a token per four bytes of the encoded request (messages, system
    prompt, tool definitions, schemas, passthrough fields alike), plus per-message framing and
    a flat guess per image. For billing what an upstream did not report; for reservations see
    ``input_token_bound``."""
    size, images = _content_size(request)
    framing = len(request.messages) * _MESSAGE_OVERHEAD + (_TOOLS_PROMPT if request.tools else 0)
    return size // 4 + framing + images * _IMAGE_TOKENS


def input_token_bound(request: chat_pb2.ChatRequest) -> int:
    """An upper bound on the input tokens any provider bills for this request.

    A byte-level tokenizer (every major provider's) makes no token of less than one byte of
    what it reads, and what a provider reads of a request (messages, system prompt, tool
    definitions, response schemas, passthrough fields) is no longer, in bytes, than the
    request's protobuf encoding, which spends at least two bytes of framing on every field.
    So the encoded size bounds them; on top come what providers add themselves: role markers
    per message, the tool-use prompt they wrap tool definitions in, and per image at most
    ``IMAGE_TOKENS_BOUND`` (an image's bytes say nothing of its tokens)."""
    size, images = _content_size(request)
    framing = len(request.messages) * MESSAGE_FRAMING_BOUND
    if request.tools:
        framing += len(request.tools) * TOOL_FRAMING_BOUND + TOOLS_PROMPT_BOUND
    return size + framing + images * IMAGE_TOKENS_BOUND + REQUEST_FRAMING_BOUND


def embed_token_bound(request: chat_pb2.EmbedRequest) -> int:
    """An upper bound on an embedding request's input tokens: a token per byte of text, one per
    given token id, plus a little framing per input (as ``input_token_bound`` argues)."""
    total = REQUEST_FRAMING_BOUND
    for item in request.inputs:
        if item.WhichOneof("input") == "tokens":
            total += len(item.tokens.ids)
        else:
            total += len(item.text.encode())
        total += MESSAGE_FRAMING_BOUND
    return total


def estimate_embed_tokens(request: chat_pb2.EmbedRequest) -> int:
    """A typical count (a token per four bytes of text) for upstreams that report no usage."""
    total = 0
    for item in request.inputs:
        if item.WhichOneof("input") == "tokens":
            total += len(item.tokens.ids)
        else:
            total += -(-len(item.text.encode()) // 4)
    return total


def output_token_bound(request: chat_pb2.ChatRequest, model_max_output: int) -> int:
    """At most the caller's max_tokens, else the model's own output limit."""
    return request.max_tokens if request.HasField("max_tokens") else model_max_output


def estimate_cost(price: Price | None, input_tokens: int, output_tokens: int) -> float | None:
    """Expected USD for a request of this size at a price; None when the price is unknown."""
    if price is None:
        return None
    return (input_tokens * price.input + output_tokens * price.output) / _PER


def output_estimate(request: chat_pb2.ChatRequest) -> int:
    """max_tokens when the caller set it, else a typical answer length."""
    return request.max_tokens if request.HasField("max_tokens") else DEFAULT_OUTPUT_ESTIMATE
