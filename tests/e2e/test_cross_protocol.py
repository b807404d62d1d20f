"""The official ``openai`` SDK on ``/v1/chat/completions`` reaching an Anthropic upstream.

The reverse direction of ``test_anthropic_sdk.py`` (which sends ``openai/...`` models through
``/v1/messages``): OpenAI-shaped requests go through the core to the Anthropic adapter and a fake
Anthropic Messages API (a real aiohttp server on 127.0.0.1), and come back OpenAI-shaped. One
real gateway subprocess per module.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import openai
import orjson
import pytest
import pytest_asyncio

from tests.fakes import anthropic_upstream as fa
from tests.fakes.common import Status
from tests.support.server import running_gateway

pytestmark = pytest.mark.asyncio(loop_scope="module")

MODEL = "anthropic/claude-sonnet-4-5"
CONFIG: dict[str, Any] = {
    "retry": {"max_attempts_per_deployment": 1, "initial_delay": 0},
    "circuit": {"consecutive_failures": 1000, "min_requests": 1000},
}
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@dataclass
class Stack:
    """The running gateway and its fake Anthropic upstream."""

    url: str
    key: str
    up: fa.FakeAnthropic

    def client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(api_key=self.key, base_url=f"{self.url}/v1", max_retries=0)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stack() -> AsyncIterator[Stack]:
    async with fa.FakeAnthropic() as up:
        env = {"ANTHROPIC_API_KEY": "sk-ant-test", "ANTHROPIC_BASE_URL": up.base_url}
        async with running_gateway(env=env, config=CONFIG) as gw:
            yield Stack(gw.http_url, gw.create_key("cross-protocol"), up)


@pytest.fixture
def gw(stack: Stack) -> Stack:
    stack.up.clear()
    return stack


async def test_create(gw: Stack) -> None:
    usage = fa.Usage(
        input_tokens=10, output_tokens=4, cache_read_input_tokens=30, cache_creation_input_tokens=5
    )
    gw.up.script(fa.Reply(text="Bonjour from Claude", usage=usage))
    completion = await gw.client().chat.completions.create(
        model=MODEL,
        max_tokens=64,
        messages=[
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "Say hello"},
        ],
    )
    choice = completion.choices[0]
    assert choice.message.content == "Bonjour from Claude"
    assert choice.finish_reason == "stop"
    assert completion.model == MODEL
    # OpenAI counts cache reads and writes inside prompt_tokens.
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 45
    assert completion.usage.completion_tokens == 4
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 30
    sent = gw.up.last.json
    assert sent["system"] == "Answer in French."
    assert sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Say hello"}]}
    ]
    assert sent["max_tokens"] == 64
    assert gw.up.last.headers["x-api-key"] == "sk-ant-test"


async def test_stream(gw: Stack) -> None:
    # Paced like a model's tokens, so the deltas reach the gateway one by one (what arrives
    # together is merged into one delta).
    gw.up.script(fa.Reply(chunk_delay=0.01))
    pieces: list[str] = []
    finish = None
    usage = None
    stream = await gw.client().chat.completions.create(
        model=MODEL,
        max_tokens=64,
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "count one two three"}],
    )
    async for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            finish = choice.finish_reason or finish
    assert "".join(pieces) == "Fake reply to: count one two three"
    assert len(pieces) >= 2
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens == 7
    assert gw.up.last.json["stream"] is True


async def test_max_tokens_is_length(gw: Stack) -> None:
    completion = await gw.client().chat.completions.create(
        model=MODEL, max_tokens=2, messages=[{"role": "user", "content": "a b c d e"}]
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content == "Fake reply"


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
async def test_tool_round_trip(gw: Stack, stream: bool) -> None:
    gw.up.script(
        fa.Reply(
            tool_calls=[
                fa.ToolCall("get_weather", {"city": "Paris"}, id="toolu_p"),
                fa.ToolCall("get_weather", {"city": "Rome"}, id="toolu_r"),
            ]
        ),
        fa.Reply(text="Paris 18C, Rome 24C."),
    )
    client = gw.client()
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris and Rome?"}]
    if stream:
        calls: dict[int, dict[str, str]] = {}
        finish = None
        chunks = await client.chat.completions.create(
            model=MODEL, max_tokens=200, tools=[WEATHER_TOOL], messages=messages, stream=True
        )
        async for chunk in chunks:
            for choice in chunk.choices:
                finish = choice.finish_reason or finish
                for d in choice.delta.tool_calls or ():
                    entry = calls.setdefault(d.index, {"id": "", "name": "", "arguments": ""})
                    entry["id"] += d.id or ""
                    if d.function is not None:
                        entry["name"] += d.function.name or ""
                        entry["arguments"] += d.function.arguments or ""
        got = [(c["id"], c["name"], orjson.loads(c["arguments"])) for _, c in sorted(calls.items())]
    else:
        completion = await client.chat.completions.create(
            model=MODEL, max_tokens=200, tools=[WEATHER_TOOL], messages=messages
        )
        finish = completion.choices[0].finish_reason
        got = [
            (c.id, c.function.name, orjson.loads(c.function.arguments))
            for c in completion.choices[0].message.tool_calls or ()
            if c.type == "function"
        ]
    assert finish == "tool_calls"
    assert got == [
        ("toolu_p", "get_weather", {"city": "Paris"}),
        ("toolu_r", "get_weather", {"city": "Rome"}),
    ]
    first_request = gw.up.requests[0].json
    assert first_request["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather in a city.",
            "input_schema": WEATHER_TOOL["function"]["parameters"],
        }
    ]
    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": orjson.dumps(args).decode()},
                }
                for call_id, name, args in got
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_p", "content": "18C"},
        {"role": "tool", "tool_call_id": "toolu_r", "content": "24C"},
    ]
    final = await client.chat.completions.create(
        model=MODEL, max_tokens=200, tools=[WEATHER_TOOL], messages=messages
    )
    assert final.choices[0].message.content == "Paris 18C, Rome 24C."
    sent = gw.up.last.json["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert [b["id"] for b in sent[1]["content"] if b["type"] == "tool_use"] == [
        "toolu_p",
        "toolu_r",
    ]
    # Parallel results travel back to Anthropic in one user turn, in order.
    assert sent[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_p", "content": "18C"},
        {"type": "tool_result", "tool_use_id": "toolu_r", "content": "24C"},
    ]


@pytest.mark.parametrize(
    ("behaviour", "exc_type", "status"),
    [
        (Status(529), openai.InternalServerError, 502),
        (Status(429, headers={"retry-after": "1"}), openai.RateLimitError, 429),
        (Status(400, message="max_tokens: too large"), openai.BadRequestError, 400),
    ],
    ids=["overloaded", "rate-limited", "bad-request"],
)
async def test_upstream_errors(
    gw: Stack, behaviour: Status, exc_type: type[openai.APIStatusError], status: int
) -> None:
    gw.up.script(behaviour)
    with pytest.raises(exc_type) as info:
        await gw.client().chat.completions.create(
            model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.status_code == status
    body = info.value.body
    assert isinstance(body, dict) and body.get("message")
    assert "sk-ant-test" not in str(body)
    if status == 400:
        assert "max_tokens: too large" in body["message"]
    if status == 429:
        assert info.value.response.headers["retry-after"] == "1"
        # The gateway rests the provider key for the upstream's Retry-After.
        await asyncio.sleep(1.05)
