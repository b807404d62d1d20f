"""The response cache's key normalisation, its stream replay and the in-memory LRU."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from switchboard.v1 import chat_pb2, types_pb2

from server.core.accumulate import StreamAccumulator
from server.core.cache import CachePolicy, cache_key, cacheable, replay
from server.core.context import CallContext, Principal
from server.http_shim.openai_dialect import OpenAIDialect
from server.store.embedded.cache import MemoryCache

BODY = {
    "model": "openai/gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "what is 2+2?"},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "add",
                "parameters": {
                    "type": "object",
                    "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                },
            },
        }
    ],
    "response_format": {"type": "json_object"},
    "temperature": 0.2,
    "top_p": 0.9,
    "max_tokens": 50,
    "stop": ["\n\n"],
    "seed": 7,
    "presence_penalty": 0.1,
    "frequency_penalty": 0.3,
    "metadata": {"team": "a", "app": "b"},
}


def _parse(body: dict[str, object]) -> chat_pb2.ChatRequest:
    parsed = OpenAIDialect().parse(orjson.dumps(body))
    assert isinstance(parsed.request, chat_pb2.ChatRequest)
    return parsed.request


def _reordered(value: object) -> object:
    """The same JSON value with every object's keys in reverse order."""
    if isinstance(value, dict):
        return {k: _reordered(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reordered(v) for v in value]
    return value


def test_the_same_request_in_another_field_order_has_the_same_key() -> None:
    reordered = _reordered(BODY)
    assert orjson.dumps(reordered) != orjson.dumps(BODY)
    assert cache_key(_parse(BODY), "key-1") == cache_key(_parse(reordered), "key-1")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("model", "openai/gpt-4o"),
        ("temperature", 0.3),
        ("top_p", 0.8),
        ("max_tokens", 51),
        ("stop", ["\n"]),
        ("seed", 8),
        ("presence_penalty", 0.0),
        ("frequency_penalty", 0.0),
        ("response_format", {"type": "text"}),
        ("tool_choice", "none"),
        ("parallel_tool_calls", False),
        ("n", 2),
        ("reasoning_effort", "low"),
        ("metadata", {"team": "a"}),
        ("messages", [{"role": "user", "content": "what is 2+3?"}]),
        ("tools", []),
    ],
)
def test_any_field_that_shapes_the_answer_changes_the_key(field: str, value: object) -> None:
    changed = {**BODY, field: value}
    assert cache_key(_parse(changed), "key-1") != cache_key(_parse(BODY), "key-1")


def test_routing_options_do_not_change_the_key_and_scope_does() -> None:
    request = _parse(BODY)
    other = chat_pb2.ChatRequest()
    other.CopyFrom(request)
    other.routing.strategy = types_pb2.ROUTE_STRATEGY_CHEAPEST
    other.routing.cache = types_pb2.CACHE_MODE_REFRESH
    assert cache_key(other, "key-1") == cache_key(request, "key-1")
    assert cache_key(request, "key-2") != cache_key(request, "key-1")


def test_stateful_requests_are_not_cached() -> None:
    request = _parse(BODY)
    assert cacheable(request)
    for stateful in (
        chat_pb2.ChatRequest(store=True),
        chat_pb2.ChatRequest(previous_response_id="resp_1"),
        chat_pb2.ChatRequest(instructions="be brief"),
    ):
        stateful.MergeFrom(request)
        assert not cacheable(stateful)


def test_policy_turns_on_by_route_or_key_and_scopes_unless_shared() -> None:
    store = MemoryCache(1 << 20)
    alice = CallContext("r1", Principal(key_id="k1", name="alice"))
    bob = CallContext("r2", Principal(key_id="k2", name="bob"))
    by_route = CachePolicy(store, 60.0, routes={"fast"})
    assert by_route.applies(alice, "fast") and not by_route.applies(alice, "slow")
    by_key = CachePolicy(store, 60.0, keys={"alice"})
    assert by_key.applies(alice, "slow") and not by_key.applies(bob, "slow")
    request = _parse(BODY)
    assert by_route.key(request, alice) != by_route.key(request, bob)
    shared = CachePolicy(store, 60.0, routes={"*"}, shared=True)
    assert shared.key(request, alice) == shared.key(request, bob)


def test_replay_folds_back_into_the_same_message() -> None:
    message = types_pb2.Message(role=types_pb2.ROLE_ASSISTANT)
    message.content.add().reasoning.CopyFrom(types_pb2.ReasoningPart(text="hmm", signature="s"))
    message.content.add().text = "Let me add."
    message.content.add().tool_call.CopyFrom(
        types_pb2.ToolCall(id="call_1", name="add", arguments='{"a":2,"b":2}')
    )
    message.content.add().tool_call.CopyFrom(
        types_pb2.ToolCall(id="call_2", name="add", arguments='{"a":1,"b":1}')
    )
    frames = replay(chat_pb2.ChatResponse(message=message))
    kinds = [f.WhichOneof("frame") for f in frames]
    assert kinds == ["reasoning", "text", "tool_call", "tool_call"]
    folded = StreamAccumulator()
    for frame in frames:
        folded.add(frame)
    assert folded.message() == message


async def test_lru_is_bounded_by_bytes_and_evicts_the_least_recently_used() -> None:
    cache = MemoryCache(max_bytes=300)
    await cache.put("a", b"x" * 100, 60)
    await cache.put("b", b"y" * 100, 60)
    await cache.put("c", b"z" * 100, 60)
    assert await cache.get("a") == b"x" * 100  # a is now the most recently used
    await cache.put("d", b"w" * 100, 60)
    assert await cache.get("b") is None
    assert [await cache.get(k) is not None for k in "acd"] == [True, True, True]
    assert cache.size == 300
    await cache.put("big", b"q" * 301, 60)  # larger than the whole cache: not kept
    assert await cache.get("big") is None
    assert cache.size == 300
    await cache.put("a", b"v" * 10, 60)  # replacing an entry frees its old bytes
    assert cache.size == 210


async def test_lru_entries_expire_after_their_ttl() -> None:
    cache = MemoryCache(max_bytes=1000)
    await cache.put("short", b"1", 0.05)
    await cache.put("long", b"2", 60)
    await asyncio.sleep(0.1)
    assert await cache.get("short") is None
    assert await cache.get("long") == b"2"
    assert len(cache) == 1
