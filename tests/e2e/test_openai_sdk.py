"""The official ``openai`` SDK against a running gateway and a fake OpenAI upstream.

Everything crosses real sockets: SDK → gateway HTTP shim (uvicorn) → openai_compat adapter →
FakeOpenAI (aiohttp) and back. The SDK runs with ``max_retries=0`` so each error is seen as the
gateway sent it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest
import pytest_asyncio

from tests.e2e.conftest import MODEL, UPSTREAM_KEY
from tests.fakes.openai_upstream import (
    CutStream,
    Delay,
    Disconnect,
    FakeOpenAI,
    Reply,
    Status,
    ToolCall,
    Usage,
)
from tests.support.server import RunningGateway

pytestmark = pytest.mark.asyncio(loop_scope="module")

ISOLATED_MODEL = "openai/gpt-4o"

WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}


@pytest_asyncio.fixture(loop_scope="module")
async def client(gateway: RunningGateway, app_key: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=f"{gateway.http_url}/v1", api_key=app_key, max_retries=0, timeout=20.0
    ) as c:
        yield c


async def raw_post(
    gateway: RunningGateway, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, str], Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{gateway.http_url}/v1/chat/completions", data=body, headers=headers
        ) as response,
    ):
        headers = {k.lower(): v for k, v in response.headers.items()}
        return response.status, headers, await response.json()


async def test_chat_completion(client: openai.AsyncOpenAI, upstream: FakeOpenAI) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "Hello there"}], temperature=0.2
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "Fake reply to: Hello there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.object == "chat.completion"
    assert completion.model == MODEL
    request_id = raw.headers["x-request-id"]
    assert completion.id == f"chatcmpl-{request_id}"
    assert raw.headers["x-switchboard-provider"] == "openai"
    assert raw.headers["x-switchboard-model"] == "gpt-4o-mini"
    assert raw.headers["x-switchboard-attempts"] == "1"
    assert float(raw.headers["x-switchboard-cost-usd"]) >= 0
    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (2, 5, 7)
    # The upstream saw the upstream model, the provider key (not the gateway key), the params.
    sent = upstream.last
    assert sent.json["model"] == "gpt-4o-mini"
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert sent.json["temperature"] == 0.2
    assert sent.json["messages"] == [{"role": "user", "content": "Hello there"}]


async def test_route_alias_and_strategy_header(
    client: openai.AsyncOpenAI, upstream: FakeOpenAI
) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model="chat",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-switchboard-route": "cheapest"},
    )
    assert raw.parse().model == "chat"
    assert raw.headers["x-switchboard-model"] == "gpt-4o-mini"
    assert upstream.last.json["model"] == "gpt-4o-mini"


async def test_streaming_with_usage(client: openai.AsyncOpenAI, upstream: FakeOpenAI) -> None:
    upstream.script(Reply(text="one two three", usage=Usage(11, 3, cached_tokens=4)))
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "count"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    first, *_, finish, last = chunks
    assert first.choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "one two three"
    )
    assert finish.choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks[:-1])
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (11, 3)
    assert last.usage.total_tokens == 14
    assert last.usage.prompt_tokens_details is not None
    assert last.usage.prompt_tokens_details.cached_tokens == 4
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    # The gateway always asks the upstream for usage, whatever the client asked.
    assert upstream.last.json["stream_options"] == {"include_usage": True}


async def test_streaming_without_usage_and_stream_helper(
    client: openai.AsyncOpenAI, upstream: FakeOpenAI
) -> None:
    stream = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "plain"}], stream=True
    )
    chunks = [chunk async for chunk in stream]
    assert all(c.choices for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Fake reply to: plain"
    # The SDK's accumulating helper builds the same completion.
    async with client.chat.completions.stream(
        model=MODEL, messages=[{"role": "user", "content": "helper"}]
    ) as helper:
        final = await helper.get_final_completion()
    assert final.choices[0].message.content == "Fake reply to: helper"
    assert final.choices[0].finish_reason == "stop"


async def test_tool_call_round_trip(client: openai.AsyncOpenAI, upstream: FakeOpenAI) -> None:
    upstream.script(
        Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris", "days": 2}, id="call_w1")]),
        Reply(text="Sunny in Paris"),
    )
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    first = await client.chat.completions.create(
        model=MODEL, messages=messages, tools=[WEATHER_TOOL], tool_choice="auto"
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.id == "call_w1" and call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris", "days": 2}
    sent = upstream.last.json
    assert sent["tools"] == [WEATHER_TOOL]
    assert sent["tool_choice"] == "auto"
    # Send the SDK's own message object back, as applications do (it carries null fields).
    messages += [choice.message, {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    second = await client.chat.completions.create(
        model=MODEL, messages=messages, tools=[WEATHER_TOOL]
    )
    assert second.choices[0].message.content == "Sunny in Paris"
    sent = upstream.last.json["messages"]
    assert sent[1]["role"] == "assistant"
    assert sent[1]["tool_calls"] == [
        {
            "id": "call_w1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": call.function.arguments},
        }
    ]
    assert sent[2] == {"role": "tool", "tool_call_id": "call_w1", "content": "sunny"}


async def test_streamed_tool_call_round_trip(
    client: openai.AsyncOpenAI, upstream: FakeOpenAI
) -> None:
    upstream.script(
        Reply(
            tool_calls=[
                ToolCall("get_weather", {"city": "Paris"}, id="call_a"),
                ToolCall("get_weather", {"city": "Oslo"}, id="call_b"),
            ]
        ),
        Reply(text="Paris sunny, Oslo snowy"),
    )
    messages: list[Any] = [{"role": "user", "content": "Paris and Oslo?"}]
    async with client.chat.completions.stream(
        model=MODEL, messages=messages, tools=[WEATHER_TOOL]
    ) as stream:
        final = await stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name) for c in calls] == [
        ("call_a", "get_weather"),
        ("call_b", "get_weather"),
    ]
    assert [json.loads(c.function.arguments) for c in calls] == [
        {"city": "Paris"},
        {"city": "Oslo"},
    ]
    messages.append(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": c.id, "type": "function", "function": c.function.model_dump()} for c in calls
            ],
        }
    )
    messages += [
        {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_b", "content": "snowy"},
    ]
    stream2 = await client.chat.completions.create(
        model=MODEL, messages=messages, tools=[WEATHER_TOOL], stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream2 if c.choices])
    assert text == "Paris sunny, Oslo snowy"
    sent = upstream.last.json["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool"]
    assert [m["tool_call_id"] for m in sent[2:]] == ["call_a", "call_b"]


async def test_json_mode(client: openai.AsyncOpenAI, upstream: FakeOpenAI) -> None:
    upstream.script(Reply(text='{"answer": 42}'))
    completion = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Answer in JSON"}],
        response_format={"type": "json_object"},
    )
    assert json.loads(completion.choices[0].message.content or "") == {"answer": 42}
    assert upstream.last.json["response_format"] == {"type": "json_object"}


async def test_unknown_fields_pass_through_unchanged(
    client: openai.AsyncOpenAI, upstream: FakeOpenAI
) -> None:
    extra = {
        "logit_bias": {"50256": -100},
        "reasoning_effort": "low",
        "metadata": {"team": "search", "nested": {"on": True, "list": [1, "two", None]}},
        "top_logprobs": 2,
        "logprobs": True,
        "x_vendor_knob": 0.5,
    }
    await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], extra_body=extra
    )
    sent = upstream.last.json
    for name, value in extra.items():
        assert sent[name] == value, name
        assert type(sent[name]) is type(value), name


async def test_models_list(client: openai.AsyncOpenAI) -> None:
    page = await client.models.list()
    ids = [m.id for m in page.data]
    assert "chat" in ids and MODEL in ids
    assert all(m.object == "model" for m in page.data)


async def test_models_retrieve_by_id_with_slashes_routes_and_404(
    client: openai.AsyncOpenAI,
) -> None:
    model = await client.models.retrieve(MODEL)
    assert (model.id, model.object, model.owned_by) == (MODEL, "model", MODEL.split("/")[0])
    route = await client.models.retrieve("chat")
    assert route.id == "chat"
    with pytest.raises(openai.NotFoundError) as info:
        await client.models.retrieve("nope/never")
    assert info.value.code == "model_not_found"


async def test_bad_key_is_401(gateway: RunningGateway) -> None:
    async with openai.AsyncOpenAI(
        base_url=f"{gateway.http_url}/v1", api_key="sb-not-a-key", max_retries=0
    ) as bad:
        with pytest.raises(openai.AuthenticationError) as info:
            await bad.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}]
            )
    assert info.value.status_code == 401
    assert info.value.code == "invalid_api_key"
    assert "sb-not-a-key" not in str(info.value)


async def test_missing_key_is_401(gateway: RunningGateway) -> None:
    status, headers, body = await raw_post(
        gateway, b'{"model": "x", "messages": []}', {"content-type": "application/json"}
    )
    assert status == 401
    assert body["error"]["code"] == "invalid_api_key"
    assert headers["x-request-id"]


async def test_unknown_model_is_404(client: openai.AsyncOpenAI, upstream: FakeOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        await client.chat.completions.create(
            model="nobody/nothing", messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.code == "model_not_found"
    assert info.value.param == "model"
    assert upstream.requests == []


async def test_malformed_json_is_400(gateway: RunningGateway, app_key: str) -> None:
    status, _, body = await raw_post(
        gateway,
        b'{"model": "openai/gpt-4o-mini", "messages": [',
        {"authorization": f"Bearer {app_key}", "content-type": "application/json"},
    )
    assert status == 400
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert "JSON" in error["message"] and "Traceback" not in error["message"]


async def test_bad_schema_is_400_naming_the_field(
    client: openai.AsyncOpenAI, upstream: FakeOpenAI
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}],
        )
    assert info.value.status_code == 400
    assert info.value.param == "messages[0].content[0].image_url.url"
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], temperature="hot"
        )
    assert info.value.param == "temperature"
    assert upstream.requests == []


async def test_upstream_500_is_502(client: openai.AsyncOpenAI, upstream: FakeOpenAI) -> None:
    upstream.script(Status(500, message="upstream exploded: sk-secret-in-body"))
    with pytest.raises(openai.InternalServerError) as info:
        await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.status_code == 502
    body = info.value.body
    assert isinstance(body, dict) and set(body) == {"message", "type", "param", "code"}
    assert body["type"] == "server_error"


async def test_upstream_connection_drop_is_503(
    client: openai.AsyncOpenAI, upstream: FakeOpenAI
) -> None:
    upstream.script(Disconnect())
    with pytest.raises(openai.InternalServerError) as info:
        await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.status_code == 503
    assert info.value.code == "upstream_unavailable"


async def test_upstream_500_before_a_stream_is_a_json_error(
    client: openai.AsyncOpenAI, upstream: FakeOpenAI
) -> None:
    upstream.script(Status(503))
    with pytest.raises(openai.InternalServerError) as info:
        await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
        )
    assert info.value.status_code == 502
    assert info.value.response.headers["content-type"] == "application/json"


async def test_stream_cut_after_start_ends_with_an_error_event(
    client: openai.AsyncOpenAI, upstream: FakeOpenAI
) -> None:
    upstream.script(CutStream(after_chunks=3))
    stream = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "a b c d e f g"}], stream=True
    )
    received: list[str] = []
    with pytest.raises(openai.APIError) as info:
        async for chunk in stream:
            if chunk.choices:
                received.append(chunk.choices[0].delta.content or "")
    assert "".join(received)  # some text arrived before the cut
    assert isinstance(info.value.body, dict)
    assert info.value.body["code"] == "upstream_stream_error"


async def test_rate_limit_is_429_with_retry_after(
    client: openai.AsyncOpenAI, upstream: FakeOpenAI
) -> None:
    upstream.script(Status(429, headers={"retry-after": "7"}, code="rate_limit_exceeded"))
    with pytest.raises(openai.RateLimitError) as info:
        # A deployment of its own: the executor rests a rate-limited key for its Retry-After.
        await client.chat.completions.create(
            model=ISOLATED_MODEL, messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.response.headers["retry-after"] == "7"
    assert info.value.code == "rate_limit_exceeded"


async def test_timeout_header_gives_504(client: openai.AsyncOpenAI, upstream: FakeOpenAI) -> None:
    upstream.script(Delay(5.0, then=Reply(text="too late")))
    with pytest.raises(openai.APIStatusError) as info:
        await client.chat.completions.create(
            model="openai/gpt-4.1-nano",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-switchboard-timeout": "0.3"},
        )
    assert info.value.status_code == 504


async def test_client_disconnect_cancels_the_upstream_stream(
    client: openai.AsyncOpenAI, upstream: FakeOpenAI
) -> None:
    upstream.script(Reply(text=" ".join(["word"] * 40), chunk_delay=0.2))
    before = upstream.cancelled
    stream = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "long"}], stream=True
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    await stream.close()
    # The upstream handler is cancelled when the gateway drops its connection; poll briefly.
    for _ in range(250):
        if upstream.cancelled > before:
            break
        await asyncio.sleep(0.02)
    assert upstream.cancelled == before + 1


async def test_healthz(gateway: RunningGateway) -> None:
    async with aiohttp.ClientSession() as session, session.get(f"{gateway.http_url}/healthz") as r:
        assert r.status == 200 and await r.json() == {"status": "ok"}
