"""The official ``anthropic`` SDK against a running gateway's ``POST /v1/messages``.

One gateway per module, with three upstreams: the offline ``demo`` provider, a fake OpenAI and a
fake Anthropic (real aiohttp servers on 127.0.0.1 speaking their wire formats). Every test goes
through real HTTP: SDK → gateway shim → core → adapter → fake upstream and back.

The gateway is the real ``python -m server serve`` subprocess (tests/support/server.py).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

import anthropic
import httpx
import pytest
import pytest_asyncio
from anthropic.types import Message

from tests.fakes import anthropic_upstream as fa
from tests.fakes import openai_upstream as fo
from tests.fakes.common import CutStream, Stall, Status
from tests.support.server import running_gateway

pytestmark = pytest.mark.asyncio(loop_scope="module")

CONFIG: dict[str, Any] = {
    # One try per request and no circuit tripping: each test sees exactly the upstream answer
    # it scripted, whatever the tests before it did.
    "retry": {"max_attempts_per_deployment": 1, "initial_delay": 0},
    "circuit": {"consecutive_failures": 1000, "min_requests": 1000},
    "timeouts": {"attempt": 20, "request": 30},
}
OPENAI_MODEL = "openai/gpt-4o-mini"
ANTHROPIC_MODEL = "anthropic/claude-sonnet-4-5"
MODELS = ["demo/echo", OPENAI_MODEL, ANTHROPIC_MODEL]
WEATHER_TOOL: dict[str, Any] = {
    "name": "get_weather",
    "description": "Current weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@dataclass
class Stack:
    """The running gateway and its fake upstreams."""

    url: str
    key: str
    openai: fo.FakeOpenAI
    anthropic: fa.FakeAnthropic

    def client(self, **kwargs: Any) -> anthropic.AsyncAnthropic:
        options: dict[str, Any] = {"api_key": self.key, "base_url": self.url, "max_retries": 0}
        options.update(kwargs)
        return anthropic.AsyncAnthropic(**options)

    def reset(self) -> None:
        self.openai.clear()
        self.anthropic.clear()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stack() -> AsyncIterator[Stack]:
    async with fo.FakeOpenAI() as openai_up, fa.FakeAnthropic() as anthropic_up:
        env = {
            "OPENAI_API_KEY": "sk-test-openai",
            "OPENAI_BASE_URL": openai_up.base_url,
            "ANTHROPIC_API_KEY": "sk-ant-test",
            "ANTHROPIC_BASE_URL": anthropic_up.base_url,
        }
        async with running_gateway(env=env, config=CONFIG) as gw:
            key = gw.create_key("anthropic-e2e")
            yield Stack(gw.http_url, key, openai_up, anthropic_up)


@pytest.fixture
def gw(stack: Stack) -> Stack:
    stack.reset()
    return stack


def expected_text(model: str, prompt: str) -> str:
    return f"Echo: {prompt}" if model.startswith("demo/") else f"Fake reply to: {prompt}"


# --- create -------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
async def test_create(gw: Stack, model: str) -> None:
    client = gw.client()
    raw = await client.messages.with_raw_response.create(
        model=model,
        max_tokens=100,
        system="Be brief.",
        messages=[{"role": "user", "content": "Hello there friend"}],
    )
    message = await raw.parse()
    assert isinstance(message, Message)
    text = expected_text(model, "Hello there friend")
    assert [(b.type, getattr(b, "text", None)) for b in message.content] == [("text", text)]
    assert message.role == "assistant"
    assert message.model == model
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    assert message.usage.output_tokens == len(text.split())
    assert message.usage.input_tokens > 0
    # Anthropic's request-id header, read by the SDK, names the same request as the message id.
    assert message.id == f"msg_{raw.headers['request-id']}"
    assert raw.headers["x-request-id"] == raw.headers["request-id"]
    assert raw.headers["x-switchboard-provider"] == model.split("/")[0]
    assert raw.headers["x-switchboard-model"] == model.split("/", 1)[1]
    assert raw.headers["x-switchboard-attempts"] == "1"
    if model == OPENAI_MODEL:
        sent = gw.openai.last.json
        assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
        assert sent["max_completion_tokens"] == 100
    elif model == ANTHROPIC_MODEL:
        sent = gw.anthropic.last.json
        assert sent["system"] == "Be brief."
        assert sent["model"] == "claude-sonnet-4-5"
        assert sent["max_tokens"] == 100


async def test_bearer_auth_and_sampling_fields_reach_upstream(gw: Stack) -> None:
    client = gw.client(api_key=None, auth_token=gw.key)
    message = await client.messages.create(
        model=ANTHROPIC_MODEL,
        max_tokens=50,
        stop_sequences=["END"],
        metadata={"user_id": "user-42"},
        messages=[{"role": "user", "content": "hi"}],
        # This SDK version no longer lists the sampling fields; the API still takes them.
        extra_body={"temperature": 0.3, "top_p": 0.9, "top_k": 20},
    )
    assert message.content[0].type == "text"
    sent = gw.anthropic.last.json
    assert sent["temperature"] == 0.3
    assert sent["top_p"] == 0.9
    assert sent["top_k"] == 20
    assert sent["stop_sequences"] == ["END"]
    assert sent["metadata"] == {"user_id": "user-42"}
    # The gateway's own key never travels upstream; the provider key does.
    assert gw.anthropic.last.headers["x-api-key"] == "sk-ant-test"


async def test_usage_follows_anthropic_cache_convention(gw: Stack) -> None:
    client = gw.client()
    gw.openai.script(
        fo.Reply(
            text="cached answer",
            usage=fo.Usage(prompt_tokens=100, completion_tokens=2, cached_tokens=30),
        )
    )
    message = await client.messages.create(
        model=OPENAI_MODEL, max_tokens=20, messages=[{"role": "user", "content": "hi"}]
    )
    # OpenAI counts cached tokens inside prompt_tokens; Anthropic lists them separately.
    assert message.usage.input_tokens == 70
    assert message.usage.cache_read_input_tokens == 30
    assert message.usage.output_tokens == 2
    usage = fa.Usage(
        input_tokens=10, output_tokens=3, cache_read_input_tokens=30, cache_creation_input_tokens=20
    )
    gw.anthropic.script(fa.Reply(text="also cached", usage=usage))
    async with client.messages.stream(
        model=ANTHROPIC_MODEL, max_tokens=20, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        final = await stream.get_final_message()
    assert (final.usage.input_tokens, final.usage.output_tokens) == (10, 3)
    assert final.usage.cache_read_input_tokens == 30
    assert final.usage.cache_creation_input_tokens == 20


async def test_max_tokens_stop_reason(gw: Stack) -> None:
    message = await gw.client().messages.create(
        model="demo/echo",
        max_tokens=2,
        messages=[{"role": "user", "content": "one two three four"}],
    )
    assert message.stop_reason == "max_tokens"
    assert message.content[0].text == "Echo: one"


async def test_images(gw: Stack) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(32))
    content: list[Any] = [
        {"type": "text", "text": "what is this?"},
        {
            "type": "image",
            "source": {
                "type": "base64",
                "media_type": "image/png",
                "data": base64.b64encode(png).decode(),
            },
        },
    ]
    client = gw.client()
    message = await client.messages.create(
        model="demo/echo", max_tokens=50, messages=[{"role": "user", "content": content}]
    )
    assert message.content[0].text == "Echo: what is this? [image]"
    await client.messages.create(
        model=OPENAI_MODEL, max_tokens=50, messages=[{"role": "user", "content": content}]
    )
    parts = gw.openai.last.json["messages"][-1]["content"]
    image_url = next(p for p in parts if p["type"] == "image_url")["image_url"]["url"]
    assert image_url == "data:image/png;base64," + base64.b64encode(png).decode()


async def test_thinking_blocks_from_anthropic(gw: Stack) -> None:
    client = gw.client()
    reply = fa.Reply(text="42", thinking="Let me think about it.", signature="sig-1")
    gw.anthropic.script(reply, reply)
    message = await client.messages.create(
        model=ANTHROPIC_MODEL, max_tokens=50, messages=[{"role": "user", "content": "answer?"}]
    )
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == "Let me think about it."
    assert message.content[0].signature == "sig-1"
    async with client.messages.stream(
        model=ANTHROPIC_MODEL, max_tokens=50, messages=[{"role": "user", "content": "answer?"}]
    ) as stream:
        final = await stream.get_final_message()
    assert final.content[0].model_dump() == message.content[0].model_dump()
    assert final.content[1].text == "42"
    # Sent back in the next turn, the signed thinking block reaches Anthropic unchanged.
    await client.messages.create(
        model=ANTHROPIC_MODEL,
        max_tokens=50,
        messages=[
            {"role": "user", "content": "answer?"},
            {"role": "assistant", "content": [b.model_dump() for b in message.content]},
            {"role": "user", "content": "why?"},
        ],
    )
    sent = gw.anthropic.last.json["messages"][1]["content"]
    assert sent[0] == {
        "type": "thinking",
        "thinking": "Let me think about it.",
        "signature": "sig-1",
    }


# --- streaming ----------------------------------------------------------------------------------

RAW_EVENTS = {
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
}


@pytest.mark.parametrize("model", MODELS)
async def test_stream(gw: Stack, model: str) -> None:
    # Paced like a model's tokens, so the deltas reach the gateway one by one (what arrives
    # together is merged into one delta).
    # Two streams below: both paced.
    if model.startswith("openai/"):
        gw.openai.script(fo.Reply(chunk_delay=0.01), fo.Reply(chunk_delay=0.01))
    else:
        gw.anthropic.script(fa.Reply(chunk_delay=0.01), fa.Reply(chunk_delay=0.01))
    client = gw.client()
    prompt = "stream me some words"
    kwargs: dict[str, Any] = {
        "model": model,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": prompt}],
    }
    types: list[str] = []
    async with client.messages.stream(**kwargs) as stream:
        async for event in stream:
            if event.type in RAW_EVENTS:
                types.append(event.type)
        final = await stream.get_final_message()
    deltas = types.count("content_block_delta")
    assert deltas >= 2
    assert types == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    text = expected_text(model, prompt)
    assert [(b.type, b.text) for b in final.content] == [("text", text)]  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert final.model == model
    assert final.usage.output_tokens == len(text.split())

    async with client.messages.stream(**kwargs) as stream:
        pieces = [piece async for piece in stream.text_stream]
    assert len(pieces) >= 2 and "".join(pieces) == text

    # The same request not streamed gives the same message.
    created = await client.messages.create(**kwargs)
    assert created.content[0].model_dump() == final.content[0].model_dump()
    assert created.usage.input_tokens == final.usage.input_tokens
    assert created.usage.output_tokens == final.usage.output_tokens


async def test_stream_headers(gw: Stack) -> None:
    async with (
        httpx.AsyncClient(base_url=gw.url, timeout=10) as http,
        http.stream(
            "POST",
            "/v1/messages",
            headers={"x-api-key": gw.key, "anthropic-version": "2023-06-01"},
            json={
                "model": OPENAI_MODEL,
                "max_tokens": 20,
                "stream": True,
                "messages": [{"role": "user", "content": "hi"}],
            },
        ) as response,
    ):
        body = b"".join([chunk async for chunk in response.aiter_bytes()])
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-switchboard-provider"] == "openai"
    assert response.headers["request-id"]
    assert body.startswith(b"event: message_start\ndata: ")
    assert body.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')


# --- tools --------------------------------------------------------------------------------------


def tool_script(gw: Stack, model: str) -> None:
    if model == OPENAI_MODEL:
        gw.openai.script(
            fo.Reply(tool_calls=[fo.ToolCall("get_weather", {"city": "Paris"}, id="call_1")]),
            fo.Reply(text="It is 18C in Paris."),
        )
    elif model == ANTHROPIC_MODEL:
        gw.anthropic.script(
            fa.Reply(tool_calls=[fa.ToolCall("get_weather", {"city": "Paris"}, id="toolu_1")]),
            fa.Reply(text="It is 18C in Paris."),
        )


@pytest.mark.parametrize("stream_first", [False, True], ids=["create", "stream"])
@pytest.mark.parametrize("model", MODELS)
async def test_tool_use_round_trip(gw: Stack, model: str, stream_first: bool) -> None:
    client = gw.client()
    tool_script(gw, model)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Paris"}]
    kwargs: dict[str, Any] = {"model": model, "max_tokens": 200, "tools": [WEATHER_TOOL]}
    if stream_first:
        async with client.messages.stream(messages=messages, **kwargs) as stream:
            first = await stream.get_final_message()
    else:
        first = await client.messages.create(messages=messages, **kwargs)
    assert first.stop_reason == "tool_use"
    calls = [b for b in first.content if b.type == "tool_use"]
    assert len(calls) == 1
    call = calls[0]
    assert call.name == "get_weather"
    assert call.input == {"city": "Paris"}
    assert call.id
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": call.id, "content": "18C and sunny"}
            ],
        },
    ]
    final = await client.messages.create(messages=messages, **kwargs)
    assert final.stop_reason == "end_turn"
    answer = final.content[0].text  # type: ignore[union-attr]
    if model == "demo/echo":
        assert answer == "The tool get_weather returned: 18C and sunny"
    else:
        assert answer == "It is 18C in Paris."
    if model == OPENAI_MODEL:
        sent = gw.openai.last.json["messages"]
        assert sent[1]["tool_calls"][0]["id"] == "call_1"
        assert sent[1]["tool_calls"][0]["function"]["name"] == "get_weather"
        assert sent[2] == {"role": "tool", "tool_call_id": "call_1", "content": "18C and sunny"}
    elif model == ANTHROPIC_MODEL:
        sent = gw.anthropic.last.json["messages"]
        assert sent[1]["content"][-1] == {
            "type": "tool_use",
            "id": "toolu_1",
            "name": "get_weather",
            "input": {"city": "Paris"},
        }
        assert sent[2]["content"] == [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C and sunny"}
        ]


@pytest.mark.parametrize("model", [OPENAI_MODEL, ANTHROPIC_MODEL])
async def test_parallel_tool_calls_stream_as_sequential_blocks(gw: Stack, model: str) -> None:
    cities = ["Paris", "Rome", "Oslo"]
    if model == OPENAI_MODEL:
        # FakeOpenAI interleaves the argument fragments of parallel calls.
        calls = [fo.ToolCall("get_weather", {"city": c}, id=f"call_{c}") for c in cities]
        gw.openai.script(fo.Reply(text="Checking.", tool_calls=calls))
    else:
        calls = [fa.ToolCall("get_weather", {"city": c}, id=f"toolu_{c}") for c in cities]
        gw.anthropic.script(fa.Reply(text="Checking.", tool_calls=calls))
    events: list[Any] = []
    async with gw.client().messages.stream(
        model=model,
        max_tokens=200,
        tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "weather?"}],
    ) as stream:
        async for event in stream:
            if event.type in RAW_EVENTS:
                events.append(event)
        final = await stream.get_final_message()
    open_index = None
    starts = []
    for event in events:
        if event.type == "content_block_start":
            assert open_index is None
            open_index = event.index
            starts.append((event.index, event.content_block.type))
        elif event.type == "content_block_delta":
            assert event.index == open_index
        elif event.type == "content_block_stop":
            assert event.index == open_index
            open_index = None
    assert starts == [(0, "text"), (1, "tool_use"), (2, "tool_use"), (3, "tool_use")]
    assert final.content[0].text == "Checking."  # type: ignore[union-attr]
    assert [(b.id, b.input) for b in final.content[1:]] == [  # type: ignore[union-attr]
        (f"{'call' if model == OPENAI_MODEL else 'toolu'}_{c}", {"city": c}) for c in cities
    ]
    assert final.stop_reason == "tool_use"


# --- errors -------------------------------------------------------------------------------------


def error_of(exc: anthropic.APIStatusError) -> dict[str, Any]:
    body = exc.body
    assert isinstance(body, dict) and body["type"] == "error", body
    return cast(dict[str, Any], body["error"])


async def test_bad_key_is_authentication_error(gw: Stack) -> None:
    client = gw.client(api_key="sb-not-a-real-key")
    with pytest.raises(anthropic.AuthenticationError) as info:
        await client.messages.create(
            model="demo/echo", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.status_code == 401
    assert error_of(info.value)["type"] == "authentication_error"
    assert "sb-not-a-real-key" not in str(info.value.body)
    assert info.value.request_id


async def test_missing_key(gw: Stack) -> None:
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as http:
        response = await http.post(
            "/v1/messages",
            json={
                "model": "demo/echo",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
            },
        )
    assert response.status_code == 401
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "authentication_error"
    assert "x-api-key" in body["error"]["message"]


async def test_unknown_model_is_not_found(gw: Stack) -> None:
    with pytest.raises(anthropic.NotFoundError) as info:
        await gw.client().messages.create(
            model="nope/model", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert error_of(info.value)["type"] == "not_found_error"
    assert "nope/model" in error_of(info.value)["message"]
    # Also for a stream: the error comes before any event, as an HTTP error.
    with pytest.raises(anthropic.NotFoundError):
        async with gw.client().messages.stream(
            model="nope/model", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            await stream.get_final_message()


async def test_missing_max_tokens_is_bad_request(gw: Stack) -> None:
    client = gw.client()
    with pytest.raises(anthropic.BadRequestError) as info:
        # The SDK's create() insists on max_tokens, so post the body as a raw request.
        await client.post(
            "/v1/messages",
            body={"model": "demo/echo", "messages": [{"role": "user", "content": "hi"}]},
            cast_to=Message,
        )
    error = error_of(info.value)
    assert error["type"] == "invalid_request_error"
    assert "max_tokens" in error["message"]
    with pytest.raises(anthropic.BadRequestError):
        await client.messages.create(
            model="demo/echo",
            max_tokens=10,
            messages=[{"role": "user", "content": [{"type": "document", "source": {}}]}],  # type: ignore[list-item]
        )


async def test_invalid_json_is_bad_request(gw: Stack) -> None:
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as http:
        response = await http.post(
            "/v1/messages",
            headers={"x-api-key": gw.key, "content-type": "application/json"},
            content=b"{not json",
        )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("model", "behaviour", "exc_type", "status", "kind"),
    [
        (OPENAI_MODEL, Status(500), anthropic.InternalServerError, 502, "api_error"),
        (
            OPENAI_MODEL,
            Status(429, headers={"retry-after": "1"}),
            anthropic.RateLimitError,
            429,
            "rate_limit_error",
        ),
        (ANTHROPIC_MODEL, Status(529), anthropic.InternalServerError, 502, "api_error"),
        (
            ANTHROPIC_MODEL,
            Status(400, message="bad thing"),
            anthropic.BadRequestError,
            400,
            "invalid_request_error",
        ),
    ],
    ids=["openai-500", "openai-429", "anthropic-529", "anthropic-400"],
)
@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
async def test_upstream_failures(
    gw: Stack,
    model: str,
    behaviour: Any,
    exc_type: type[anthropic.APIStatusError],
    status: int,
    kind: str,
    stream: bool,
) -> None:
    up = gw.openai if model == OPENAI_MODEL else gw.anthropic
    up.script(behaviour)
    client = gw.client()
    kwargs: dict[str, Any] = {
        "model": model,
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
    }
    with pytest.raises(exc_type) as info:
        if stream:
            async with client.messages.stream(**kwargs) as s:
                await s.get_final_message()
        else:
            await client.messages.create(**kwargs)
    assert info.value.status_code == status
    assert error_of(info.value)["type"] == kind
    assert len(up.requests) == 1
    # Only the provider's message field reaches the client, never its raw body or key.
    message = error_of(info.value)["message"]
    assert '"error"' not in message and "sk-test-openai" not in message
    assert "sk-ant-test" not in message
    if status == 429:
        assert info.value.response.headers["retry-after"] == "1"
        # The gateway now rests that provider key for the upstream's Retry-After.
        await asyncio.sleep(1.05)


async def test_timeout_is_timeout_error(gw: Stack) -> None:
    gw.openai.script(Stall())
    with pytest.raises(anthropic.GatewayTimeoutError) as info:
        await gw.client().messages.create(
            model=OPENAI_MODEL,
            max_tokens=10,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-switchboard-timeout": "0.5"},
        )
    assert info.value.status_code == 504
    assert error_of(info.value)["type"] == "timeout_error"


@pytest.mark.parametrize("model", [OPENAI_MODEL, ANTHROPIC_MODEL])
async def test_error_after_stream_started_is_an_error_event(gw: Stack, model: str) -> None:
    if model == OPENAI_MODEL:
        gw.openai.script(CutStream(after_chunks=3))
    else:
        gw.anthropic.script(fa.StreamError("Overloaded", after_chunks=3))
    received: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as info:
        async with gw.client().messages.stream(
            model=model,
            max_tokens=100,
            messages=[{"role": "user", "content": "one two three four five six"}],
        ) as stream:
            async for event in stream:
                received.append(event.type)
    # The stream had started (200 and message_start went out) before the error event.
    assert received[0] == "message_start"
    assert "message_stop" not in received
    assert info.value.status_code == 200
    error = error_of(info.value)
    # Both are upstream errors (502 at the edge), so Anthropic's api_error; the message is the
    # provider's own message field when it sent one (the fake Anthropic's "Overloaded").
    assert error["type"] == "api_error"
    assert error["message"]
    if model == ANTHROPIC_MODEL:
        assert error["message"] == "Overloaded"


async def test_client_going_away_cancels_the_upstream_stream(gw: Stack) -> None:
    gw.openai.script(fo.Reply(text=" ".join(["word"] * 200), chunk_delay=0.05))
    before = gw.openai.cancelled
    async with gw.client().messages.stream(
        model=OPENAI_MODEL, max_tokens=500, messages=[{"role": "user", "content": "talk"}]
    ) as stream:
        async for event in stream:
            if event.type == "content_block_delta":
                break
    # Leaving the block closed the connection; the gateway must stop reading upstream.
    async with asyncio.timeout(5):
        while gw.openai.cancelled == before:  # noqa: ASYNC110 - the fake only counts
            await asyncio.sleep(0.02)
    assert gw.openai.cancelled == before + 1
