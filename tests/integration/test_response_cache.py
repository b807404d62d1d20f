"""The exact response cache through a real gateway process: the OpenAI SDK over the shim
(completions and streams), gRPC Chat and StreamChat, skip and refresh, per-key scoping, TTL, the
ledger ($0 cache hits), metrics, and Redis shared by two gateway processes."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import grpc.aio
import httpx
import openai
import pytest
import pytest_asyncio
from switchboard.v1 import chat_pb2, chat_pb2_grpc, types_pb2

from tests.e2e.test_stream_billing import wait_row
from tests.fakes.openai_upstream import FakeOpenAI, Reply, ToolCall, Usage
from tests.support.server import RunningGateway, running_gateway

pytestmark = pytest.mark.asyncio(loop_scope="module")

MODEL = "openai/gpt-4o-mini"
PRICE = {"input": 1.0, "output": 2.0}
CONFIG = {
    "deployments": [
        {"provider": "openai", "model": "gpt-4o-mini", "price": PRICE},
        {"provider": "openai", "model": "uncached", "price": PRICE},
    ],
    "routes": [{"name": "cached-route", "deployments": ["openai/gpt-4o-mini"]}],
    # Every request of the `gpt-4o-mini` deployment and of the route; `uncached` only for the
    # key named `always`.
    "cache": {"routes": ["openai/gpt-4o-mini", "cached-route"], "keys": ["always"], "ttl": 60},
    "logging": {"requests": False},
}
UPSTREAM_KEY = "sk-cache-test-0123456789abcdef"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env() -> AsyncIterator[tuple[FakeOpenAI, RunningGateway]]:
    async with (
        FakeOpenAI() as up,
        running_gateway(
            env={"OPENAI_API_KEY": UPSTREAM_KEY, "OPENAI_BASE_URL": up.base_url}, config=CONFIG
        ) as gw,
    ):
        yield up, gw


def _client(gw: RunningGateway, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=key, base_url=f"{gw.http_url}/v1", max_retries=0)


def _unique(text: str) -> str:
    # Each test asks something no other test (nor an earlier run against a shared Redis) did.
    return f"{text} {uuid.uuid4().hex}"


async def _chat(client: openai.AsyncOpenAI, prompt: str, **extra: object) -> tuple[str, object]:
    raw = await client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": prompt}],
        **extra,  # type: ignore[arg-type]
    )
    completion = raw.parse()
    # The request id, by which the ledger knows it.
    completion.request_id = raw.headers["x-request-id"]  # type: ignore[attr-defined]
    return raw.headers.get("x-switchboard-cache", ""), completion


def _fresh(
    env: tuple[FakeOpenAI, RunningGateway], key_name: str, question: str
) -> tuple[FakeOpenAI, RunningGateway, openai.AsyncOpenAI, str]:
    """The upstream (its record cleared), the gateway, a client with a new key, a new prompt."""
    up, gw = env
    up.clear()
    return up, gw, _client(gw, gw.create_key(key_name)), _unique(question)


def raw_cost(completion: object) -> float:
    return float(completion.usage.model_extra["cost_usd"])  # type: ignore[attr-defined]


async def test_a_repeated_completion_is_answered_from_the_cache_for_nothing(
    env: tuple[FakeOpenAI, RunningGateway],
) -> None:
    up, gw, client, prompt = _fresh(env, "sdk", "what is the capital of France?")
    first_status, first = await _chat(client, prompt, temperature=0.0)
    second_status, second = await _chat(client, prompt, temperature=0.0)
    assert (first_status, second_status) == ("miss", "hit")
    assert len(up.requests) == 1, "a hit must not reach the upstream"
    assert second.choices[0].message.content == first.choices[0].message.content  # type: ignore[attr-defined]
    # The same usage as the answer it repeats, but nothing paid for it.
    assert second.usage.prompt_tokens == first.usage.prompt_tokens  # type: ignore[attr-defined]
    assert second.usage.completion_tokens == first.usage.completion_tokens  # type: ignore[attr-defined]
    assert raw_cost(second) == 0.0 < raw_cost(first)
    assert second.id != first.id  # type: ignore[attr-defined]
    # Any sampling field that differs is another request.
    status, _ = await _chat(client, prompt, temperature=0.5)
    assert status == "miss"
    assert len(up.requests) == 2
    # The ledger: the hit is a row of its own, a cache hit, with no cost and no tokens.
    hit = await wait_row(gw, second.request_id)  # type: ignore[attr-defined]
    assert hit["outcome"] == "cache_hit"
    assert hit["status"] == 200
    assert hit["total_nanousd"] == 0
    assert hit["input_tokens"] == hit["output_tokens"] == 0
    miss = await wait_row(gw, first.request_id)  # type: ignore[attr-defined]
    assert miss["outcome"] == "success"
    assert miss["total_nanousd"] > 0
    # And the metrics count both.
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"{gw.http_url}/metrics")).text
    assert 'switchboard_cache_lookups_total{result="hit",route="openai/gpt-4o-mini"}' in metrics
    assert 'switchboard_cache_lookups_total{result="miss",route="openai/gpt-4o-mini"}' in metrics


async def test_a_stream_is_replayed_from_the_cache_with_the_same_chunks(
    env: tuple[FakeOpenAI, RunningGateway],
) -> None:
    up, _, client, prompt = _fresh(env, "streams", "count to five")
    up.script(
        Reply(
            text="one two three",
            tool_calls=[ToolCall("lookup", '{"q": "five"}', id="call_abc")],
            usage=Usage(7, 5),
        )
    )

    async def stream() -> tuple[str, list[dict[str, object]]]:
        raw = await client.chat.completions.with_raw_response.create(
            model=MODEL,
            messages=[{"role": "user", "content": prompt}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk.model_dump(exclude={"id", "created"}) async for chunk in raw.parse()]
        return raw.headers.get("x-switchboard-cache", ""), chunks

    first_status, first = await stream()
    second_status, second = await stream()
    assert (first_status, second_status) == ("miss", "hit")
    assert len(up.requests) == 1
    text = "".join(
        c["choices"][0]["delta"]["content"] or ""  # type: ignore[index]
        for c in second
        if c["choices"]
    )
    assert text == "one two three"
    calls = [
        call
        for c in second
        if c["choices"]
        for call in c["choices"][0]["delta"]["tool_calls"] or ()  # type: ignore[index]
    ]
    assert calls[0]["id"] == "call_abc"
    assert second[-1]["usage"]["prompt_tokens"] == 7  # type: ignore[index]
    assert first[-1]["usage"]["completion_tokens"] == second[-1]["usage"]["completion_tokens"]  # type: ignore[index]
    # The same framing: same chunk kinds, finish reason and usage chunk (the upstream's chunks
    # come word by word, the replay's content in one chunk per part).
    finish = [c["choices"][0]["finish_reason"] for c in second if c["choices"]]  # type: ignore[index]
    assert finish[-1] == "tool_calls"
    assert [c["choices"][0]["finish_reason"] for c in first if c["choices"]][-1] == "tool_calls"  # type: ignore[index]
    # A non-streamed request for the same thing is answered from the streamed answer.
    status, answer = await _chat(client, prompt)
    assert status == "hit"
    assert answer.choices[0].message.tool_calls[0].function.name == "lookup"  # type: ignore[attr-defined]
    assert len(up.requests) == 1


async def test_skip_and_refresh(env: tuple[FakeOpenAI, RunningGateway]) -> None:
    up, _, client, prompt = _fresh(env, "modes", "tell me a joke")
    up.script(Reply(text="first answer"), Reply(text="skipped answer"), Reply(text="fresh answer"))
    assert (await _chat(client, prompt))[0] == "miss"
    status, skipped = await _chat(client, prompt, extra_headers={"x-switchboard-cache": "skip"})
    assert status == "skip"
    assert skipped.choices[0].message.content == "skipped answer"  # type: ignore[attr-defined]
    # A skipped request stored nothing: the first answer is still the cached one.
    status, cached = await _chat(client, prompt)
    assert (status, cached.choices[0].message.content) == ("hit", "first answer")  # type: ignore[attr-defined]
    status, fresh = await _chat(client, prompt, extra_headers={"x-switchboard-cache": "refresh"})
    assert (status, fresh.choices[0].message.content) == ("miss", "fresh answer")  # type: ignore[attr-defined]
    status, cached = await _chat(client, prompt)
    assert (status, cached.choices[0].message.content) == ("hit", "fresh answer")  # type: ignore[attr-defined]
    assert len(up.requests) == 3
    with pytest.raises(openai.BadRequestError) as info:
        await _chat(client, prompt, extra_headers={"x-switchboard-cache": "sometimes"})
    assert "x-switchboard-cache" in info.value.message


async def test_answers_are_scoped_per_key_and_only_where_turned_on(
    env: tuple[FakeOpenAI, RunningGateway],
) -> None:
    up, gw = env
    alice, bob = _client(gw, gw.create_key("alice")), _client(gw, gw.create_key("bob"))
    prompt = _unique("a private question")
    up.clear()
    assert (await _chat(alice, prompt))[0] == "miss"
    assert (await _chat(bob, prompt))[0] == "miss", "one key must not read another's answers"
    assert (await _chat(alice, prompt))[0] == "hit"
    assert len(up.requests) == 2
    # Through the route: the route's own name turns it on.
    raw = await alice.chat.completions.with_raw_response.create(
        model="cached-route", messages=[{"role": "user", "content": prompt}]
    )
    assert raw.headers["x-switchboard-cache"] == "miss"
    # A deployment the cache is not on for: no header, nothing stored...
    for _ in range(2):
        raw = await alice.chat.completions.with_raw_response.create(
            model="openai/uncached", messages=[{"role": "user", "content": prompt}]
        )
        assert "x-switchboard-cache" not in raw.headers
    # ...except for the key the config names.
    always = _client(gw, gw.create_key("always"))
    statuses = []
    for _ in range(2):
        raw = await always.chat.completions.with_raw_response.create(
            model="openai/uncached", messages=[{"role": "user", "content": prompt}]
        )
        statuses.append(raw.headers.get("x-switchboard-cache"))
    assert statuses == ["miss", "hit"]


async def test_grpc_chat_and_stream_chat_use_the_cache(
    env: tuple[FakeOpenAI, RunningGateway],
) -> None:
    up, gw = env
    key = gw.create_key("grpc")
    metadata = (("authorization", f"Bearer {key}"),)
    request = chat_pb2.ChatRequest(
        model=MODEL,
        messages=[
            types_pb2.Message(
                role=types_pb2.ROLE_USER, content=[types_pb2.ContentPart(text=_unique("grpc"))]
            )
        ],
        max_tokens=20,
    )
    up.clear()
    async with grpc.aio.insecure_channel(gw.grpc_target) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        first = await stub.Chat(request, metadata=metadata)
        second = await stub.Chat(request, metadata=metadata)
        assert first.route.cache == types_pb2.CACHE_STATUS_MISS
        assert second.route.cache == types_pb2.CACHE_STATUS_HIT
        assert second.message == first.message
        assert second.cost.total_usd == 0 and first.cost.total_usd > 0
        assert len(second.route.attempts) == 0
        frames = [
            f
            async for f in stub.StreamChat(
                chat_pb2.StreamChatRequest(chat=request), metadata=metadata
            )
        ]
        assert [f.WhichOneof("frame") for f in frames] == ["start", "text", "end"]
        assert frames[0].start.route.cache == types_pb2.CACHE_STATUS_HIT
        assert frames[1].text.text == first.message.content[0].text
        assert frames[2].end.usage == first.usage
        assert len(up.requests) == 1
        # The contract's routing options: skip.
        skipping = chat_pb2.ChatRequest()
        skipping.CopyFrom(request)
        skipping.routing.cache = types_pb2.CACHE_MODE_SKIP
        skipped = await stub.Chat(skipping, metadata=metadata)
        assert skipped.route.cache == types_pb2.CACHE_STATUS_SKIP
        assert len(up.requests) == 2


async def test_entries_expire_after_the_ttl() -> None:
    config = {**CONFIG, "cache": {"routes": ["*"], "ttl": 0.3}}
    async with (
        FakeOpenAI() as up,
        running_gateway(
            env={"OPENAI_API_KEY": UPSTREAM_KEY, "OPENAI_BASE_URL": up.base_url}, config=config
        ) as gw,
    ):
        import asyncio

        client = _client(gw, gw.create_key("ttl"))
        prompt = _unique("short-lived")
        assert (await _chat(client, prompt))[0] == "miss"
        assert (await _chat(client, prompt))[0] == "hit"
        await asyncio.sleep(0.5)
        assert (await _chat(client, prompt))[0] == "miss"
        assert len(up.requests) == 2


REDIS_URL = os.environ.get("SWITCHBOARD_TEST_REDIS_URL")


@pytest.mark.redis
@pytest.mark.skipif(not REDIS_URL, reason="SWITCHBOARD_TEST_REDIS_URL is not set")
async def test_two_gateways_share_answers_through_redis() -> None:
    prefix = f"sbtest:cache:{uuid.uuid4().hex}:"
    config = {
        **CONFIG,
        "cache": {
            "routes": ["*"],
            "shared": True,
            "backend": "redis",
            "redis_url": REDIS_URL,
            "redis_prefix": prefix,
        },
    }
    env = {"OPENAI_API_KEY": UPSTREAM_KEY}
    async with FakeOpenAI() as up:
        env["OPENAI_BASE_URL"] = up.base_url
        async with (
            running_gateway(env=env, config=config) as one,
            running_gateway(env=env, config=config) as two,
        ):
            prompt = _unique("shared")
            first = await _chat(_client(one, one.create_key("a")), prompt)
            second = await _chat(_client(two, two.create_key("b")), prompt)
            assert (first[0], second[0]) == ("miss", "hit")
            assert len(up.requests) == 1
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
        assert len(keys) == 1
        assert 0 < await client.pttl(keys[0]) <= 300_000
        await client.delete(*keys)
    finally:
        await client.aclose()


async def test_the_anthropic_dialect_is_cached_too(env: tuple[FakeOpenAI, RunningGateway]) -> None:
    import anthropic

    up, gw = env
    client = anthropic.AsyncAnthropic(
        api_key=gw.create_key("anthropic-sdk"), base_url=gw.http_url, max_retries=0
    )
    prompt = _unique("bonjour")
    up.clear()
    statuses, texts = [], []
    for stream in (False, True):
        if stream:
            async with client.messages.stream(
                model=MODEL, max_tokens=30, messages=[{"role": "user", "content": prompt}]
            ) as events:
                texts.append("".join([t async for t in events.text_stream]))
                statuses.append(events.response.headers.get("x-switchboard-cache"))
        else:
            raw = await client.messages.with_raw_response.create(
                model=MODEL, max_tokens=30, messages=[{"role": "user", "content": prompt}]
            )
            texts.append((await raw.parse()).content[0].text)  # type: ignore[union-attr]
            statuses.append(raw.headers.get("x-switchboard-cache"))
    assert statuses == ["miss", "hit"]
    assert texts[0] == texts[1] != ""
    assert len(up.requests) == 1
