"""The exact response cache: which requests it serves, their keys, and the store protocol.

An answer is reused only for the very same request: the key is a SHA-256 of the request as
protobuf's deterministic encoding writes it (map and ``Struct`` entries in key order, so the
order of a JSON body's fields never matters) with only ``routing`` cleared (how to route is no
part of what is asked). Model or route name, messages, tools, tool choice, response format and
every sampling field (temperature, top_p, max_tokens, stop, seed, penalties, n, reasoning
effort) are in it, as are ``user``, ``metadata`` and passthrough fields, which an upstream may
act on. Keys are scoped to the calling gateway key unless the operator makes the cache shared,
so one key never reads another key's answers.

A stateful request (``store``, ``previous_response_id``, ``instructions``) is never cached: its
answer depends on stored state and its result must be stored as a new response.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

from switchboard.v1 import chat_pb2, types_pb2

from server.core.context import CallContext

SKIP = types_pb2.CACHE_MODE_SKIP
REFRESH = types_pb2.CACHE_MODE_REFRESH
HIT = types_pb2.CACHE_STATUS_HIT
MISS = types_pb2.CACHE_STATUS_MISS
SKIPPED = types_pb2.CACHE_STATUS_SKIP
# A CacheStatus as it reads in headers, metrics, logs and traces.
CACHE_RESULTS: dict[int, str] = {HIT: "hit", MISS: "miss", SKIPPED: "skip"}
# Bumped when what a key covers changes, so old entries are never read as new ones.
_KEY_VERSION = b"switchboard-cache-v1\0"


class ResponseCache(Protocol):
    """Stored answers by key (``store.embedded.cache``, ``store.distributed.redis_cache``).
    Values are encoded ``ChatResponse`` messages; an entry lives ``ttl`` seconds at most."""

    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, value: bytes, ttl: float) -> None: ...

    async def aclose(self) -> None: ...


def cache_key(request: chat_pb2.ChatRequest, scope: str) -> str:
    """The hex key of ``request`` within ``scope`` (a key id, or ``*`` when shared)."""
    normalized = chat_pb2.ChatRequest()
    normalized.CopyFrom(request)
    normalized.ClearField("routing")
    digest = hashlib.sha256(_KEY_VERSION)
    digest.update(scope.encode())
    digest.update(b"\0")
    digest.update(normalized.SerializeToString(deterministic=True))
    return digest.hexdigest()


def cacheable(request: chat_pb2.ChatRequest) -> bool:
    """False for stateful requests (module docstring)."""
    return not (request.previous_response_id or request.store or request.instructions)


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """Which requests the cache serves and how long it keeps their answers.

    ``routes``: route names (as resolved, or the ``provider/model`` asked for) whose requests
    are cached, ``*`` for all; ``keys``: gateway key ids or names whose requests are cached
    whatever their route. A request is cached when either matches and it did not ask to skip."""

    store: ResponseCache
    ttl: float
    routes: Collection[str] = ()
    keys: Collection[str] = ()
    shared: bool = False

    def applies(self, ctx: CallContext, route: str) -> bool:
        """True when the operator turned the cache on for this key or route."""
        if "*" in self.routes or route in self.routes:
            return True
        principal = ctx.principal
        return principal.key_id in self.keys or principal.name in self.keys

    def key(self, request: chat_pb2.ChatRequest, ctx: CallContext) -> str:
        return cache_key(request, "*" if self.shared else ctx.principal.key_id)


def replay(
    response: chat_pb2.ChatResponse,
) -> list[chat_pb2.StreamChatResponse]:
    """A cached answer as the content frames of a stream (reasoning, text, tool calls), in the
    order a provider streams them; the caller adds the start and end frames."""
    frames: list[chat_pb2.StreamChatResponse] = []
    index = 0
    for part in response.message.content:
        kind = part.WhichOneof("part")
        if kind == "reasoning":
            r = part.reasoning
            frames.append(
                chat_pb2.StreamChatResponse(
                    reasoning=chat_pb2.ReasoningDelta(
                        text=r.text, signature=r.signature, redacted_data=r.redacted_data
                    )
                )
            )
        elif kind == "text":
            frames.append(chat_pb2.StreamChatResponse(text=chat_pb2.TextDelta(text=part.text)))
        elif kind == "tool_call":
            call = part.tool_call
            frames.append(
                chat_pb2.StreamChatResponse(
                    tool_call=chat_pb2.ToolCallDelta(
                        index=index,
                        id=call.id,
                        name=call.name,
                        arguments=call.arguments,
                        signature=call.signature,
                    )
                )
            )
            index += 1
    return frames
