"""ChatService against a real gateway process whose `openai` provider is a fake OpenAI server.

The fake upstream and the gateway live for the whole module (one event loop), so the module
starts one server process.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import grpc
import grpc.aio
import orjson
import pytest
import pytest_asyncio
from google.protobuf import struct_pb2
from switchboard.v1 import chat_pb2, chat_pb2_grpc, types_pb2
from switchboard_client import SwitchboardClient, SwitchboardError, tool_result, user

from server.core.errors import ERROR_DOMAIN
from tests.fakes.openai_upstream import FakeOpenAI, Reply, Stall, Status, ToolCall
from tests.support.server import RunningGateway, running_gateway

pytestmark = pytest.mark.asyncio(loop_scope="module")

PROVIDER_KEY = "sk-proj-UPSTREAMsecret0123456789abcdefABCDEF"
MODEL = "openai/gpt-4o-mini"
# Default price table: gpt-4o-mini is $0.15 in / $0.60 out per million tokens.
PRICE_IN, PRICE_OUT = 0.15, 0.60
# Failures cool keys down and open circuits per deployment: each failure test uses a model of
# its own so that it cannot disturb the others.
ISOLATED = "openai/isolated-{}"
# Every gateway key handed out in this module; none may ever show up in the server's output.
SECRETS: list[str] = []


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def upstream() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(api_key=PROVIDER_KEY) as up:
        yield up


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def gateway(upstream: FakeOpenAI) -> AsyncIterator[RunningGateway]:
    env = {"OPENAI_API_KEY": PROVIDER_KEY, "OPENAI_BASE_URL": upstream.base_url}
    config = {"retry": {"max_attempts_per_deployment": 1}, "timeouts": {"attempt": 20}}
    async with running_gateway(env=env, config=config) as gw:
        SECRETS.append(gw.master_key)
        yield gw


@pytest.fixture(autouse=True)
def _fresh_upstream(upstream: FakeOpenAI) -> Iterator[None]:
    upstream.clear()
    upstream.default = None
    yield
    upstream.default = None


@pytest_asyncio.fixture(loop_scope="module")
async def key(gateway: RunningGateway) -> str:
    secret = gateway.create_key("upstream-tests")
    SECRETS.append(secret)
    return secret


@pytest_asyncio.fixture(loop_scope="module")
async def stub(gateway: RunningGateway) -> AsyncIterator[chat_pb2_grpc.ChatServiceStub]:
    async with grpc.aio.insecure_channel(gateway.grpc_target) as channel:
        yield chat_pb2_grpc.ChatServiceStub(channel)


def _auth(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


def _user(text: str) -> types_pb2.Message:
    return types_pb2.Message(role=types_pb2.ROLE_USER, content=[types_pb2.ContentPart(text=text)])


def _weather_tool() -> types_pb2.Tool:
    params = struct_pb2.Struct()
    params.update(
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    )
    return types_pb2.Tool(name="get_weather", description="Current weather", parameters=params)


async def _upstream_cancelled(upstream: FakeOpenAI, before: int) -> None:
    """Waits (5 s at most) until the fake saw one more of its handlers cancelled."""
    async with asyncio.timeout(5):
        while upstream.cancelled == before:  # noqa: ASYNC110 - the fake exposes a counter
            await asyncio.sleep(0.02)


def _cost(input_tokens: int, output_tokens: int) -> float:
    return (input_tokens * PRICE_IN + output_tokens * PRICE_OUT) / 1e6


async def test_chat_goes_upstream_with_cost_and_route(
    stub: chat_pb2_grpc.ChatServiceStub, upstream: FakeOpenAI, key: str
) -> None:
    request = chat_pb2.ChatRequest(model=MODEL, messages=[_user("hello upstream world")])
    response = await stub.Chat(request, metadata=_auth(key))
    assert response.message.content[0].text == "Fake reply to: hello upstream world"
    assert response.usage.input_tokens == 3
    assert response.usage.output_tokens == 6
    assert response.cost.total_usd == pytest.approx(_cost(3, 6))
    assert response.route.provider == "openai" and response.route.model == "gpt-4o-mini"
    assert response.route.route == MODEL
    sent = upstream.last
    assert sent.headers["authorization"] == f"Bearer {PROVIDER_KEY}"
    assert sent.json["model"] == "gpt-4o-mini"
    assert key not in sent.body.decode() and key not in str(dict(sent.headers))


async def test_stream_chat_start_deltas_end_with_usage_and_cost(
    stub: chat_pb2_grpc.ChatServiceStub, upstream: FakeOpenAI, key: str
) -> None:
    request = chat_pb2.StreamChatRequest(
        chat=chat_pb2.ChatRequest(model=MODEL, messages=[_user("stream these words")])
    )
    frames = [f async for f in stub.StreamChat(request, metadata=_auth(key))]
    kinds = [f.WhichOneof("frame") for f in frames]
    assert kinds[0] == "start" and kinds[-1] == "end" and set(kinds[1:-1]) == {"text"}
    assert frames[0].start.route.provider == "openai"
    assert "".join(f.text.text for f in frames[1:-1]) == "Fake reply to: stream these words"
    end = frames[-1].end
    assert end.usage.input_tokens == 3 and end.usage.output_tokens == 6
    assert end.cost.total_usd == pytest.approx(_cost(3, 6))
    assert end.route.provider == "openai" and end.finish_reason == types_pb2.FINISH_REASON_STOP
    assert upstream.last.json["stream"] is True
    assert upstream.last.json["stream_options"]["include_usage"] is True


async def test_tool_call_round_trip(
    stub: chat_pb2_grpc.ChatServiceStub, upstream: FakeOpenAI, key: str
) -> None:
    upstream.script(Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris"}, id="call_7")]))
    tool = _weather_tool()
    question = _user("weather in Paris?")
    first = await stub.Chat(
        chat_pb2.ChatRequest(model=MODEL, messages=[question], tools=[tool]),
        metadata=_auth(key),
    )
    assert first.finish_reason == types_pb2.FINISH_REASON_TOOL_CALLS
    (call,) = [p.tool_call for p in first.message.content if p.WhichOneof("part") == "tool_call"]
    assert call.id == "call_7" and call.name == "get_weather"
    assert orjson.loads(call.arguments) == {"city": "Paris"}
    assert upstream.last.json["tools"][0]["function"]["name"] == "get_weather"

    answer = types_pb2.Message(
        role=types_pb2.ROLE_TOOL,
        content=[
            types_pb2.ContentPart(
                tool_result=types_pb2.ToolResult(tool_call_id="call_7", content="sunny")
            )
        ],
    )
    second = await stub.Chat(
        chat_pb2.ChatRequest(model=MODEL, messages=[question, first.message, answer], tools=[tool]),
        metadata=_auth(key),
    )
    assert second.finish_reason == types_pb2.FINISH_REASON_STOP
    sent = upstream.last.json["messages"]
    assert sent[1]["tool_calls"][0]["id"] == "call_7"
    assert sent[2] == {"role": "tool", "tool_call_id": "call_7", "content": "sunny"}


async def test_streamed_tool_call_deltas(
    stub: chat_pb2_grpc.ChatServiceStub, upstream: FakeOpenAI, key: str
) -> None:
    upstream.script(Reply(tool_calls=[ToolCall("get_weather", {"city": "Oslo"}, id="call_9")]))
    request = chat_pb2.StreamChatRequest(
        chat=chat_pb2.ChatRequest(
            model=MODEL, messages=[_user("weather in Oslo?")], tools=[_weather_tool()]
        )
    )
    frames = [f async for f in stub.StreamChat(request, metadata=_auth(key))]
    deltas = [f.tool_call for f in frames if f.WhichOneof("frame") == "tool_call"]
    assert deltas[0].id == "call_9" and deltas[0].name == "get_weather"
    assert {d.index for d in deltas} == {0}
    assert orjson.loads("".join(d.arguments for d in deltas)) == {"city": "Oslo"}
    assert frames[-1].end.finish_reason == types_pb2.FINISH_REASON_TOOL_CALLS


async def test_json_mode_is_forwarded(
    stub: chat_pb2_grpc.ChatServiceStub, upstream: FakeOpenAI, key: str
) -> None:
    upstream.script(Reply(text='{"answer": 42}'))
    request = chat_pb2.ChatRequest(
        model=MODEL,
        messages=[_user("answer in JSON")],
        response_format=types_pb2.ResponseFormat(type=types_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT),
    )
    response = await stub.Chat(request, metadata=_auth(key))
    assert orjson.loads(response.message.content[0].text) == {"answer": 42}
    assert upstream.last.json["response_format"] == {"type": "json_object"}


async def test_upstream_500_is_unavailable(
    stub: chat_pb2_grpc.ChatServiceStub, upstream: FakeOpenAI, key: str
) -> None:
    upstream.default = Status(500, message="the fake upstream broke")
    request = chat_pb2.ChatRequest(model=ISOLATED.format(500), messages=[_user("hi")])
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Chat(request, metadata=_auth(key))
    err = SwitchboardError.from_rpc_error(info.value)
    assert err.code == grpc.StatusCode.UNAVAILABLE
    assert err.reason in {"UPSTREAM_SERVER_ERROR", "ALL_ATTEMPTS_FAILED"}
    assert err.domain == ERROR_DOMAIN and err.metadata.get("provider", "openai") == "openai"
    assert len(upstream.requests) >= 1


async def test_upstream_429_is_resource_exhausted_with_retry_info(
    gateway: RunningGateway, upstream: FakeOpenAI, key: str
) -> None:
    # Longer than retry.max_retry_after (10 s): the gateway gives up at once and passes it on.
    upstream.default = Status(429, message="slow down", headers={"retry-after": "30"})
    async with SwitchboardClient(gateway.grpc_target, key) as client:
        with pytest.raises(SwitchboardError) as info:
            await client.chat(model=ISOLATED.format(429), messages=["hi"])
    err = info.value
    assert err.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.reason == "UPSTREAM_RATE_LIMITED"
    assert err.retry_after == pytest.approx(30, abs=1)


async def test_provider_key_never_reaches_the_caller(
    stub: chat_pb2_grpc.ChatServiceStub, upstream: FakeOpenAI, key: str
) -> None:
    # OpenAI echoes (part of) the key it refused; the gateway must not pass it on.
    upstream.default = Status(401, message=f"Incorrect API key provided: {PROVIDER_KEY}.")
    request = chat_pb2.ChatRequest(model=ISOLATED.format(401), messages=[_user("hi")])
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Chat(request, metadata=_auth(key))
    err = SwitchboardError.from_rpc_error(info.value)
    assert err.code == grpc.StatusCode.UNAVAILABLE
    assert PROVIDER_KEY not in repr(info.value) and PROVIDER_KEY[:12] not in repr(info.value)
    assert PROVIDER_KEY not in str(err.metadata)


async def test_client_cancel_cancels_the_upstream_call(
    gateway: RunningGateway, upstream: FakeOpenAI, key: str
) -> None:
    upstream.script(Stall())
    async with SwitchboardClient(gateway.grpc_target, key) as client:
        task = asyncio.create_task(
            client.chat(model=ISOLATED.format("cancel"), messages=["wait forever"])
        )
        await upstream.wait_for_requests(1)
        before = upstream.cancelled
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await _upstream_cancelled(upstream, before)


async def test_stream_cancel_cancels_the_upstream_call(
    gateway: RunningGateway, upstream: FakeOpenAI, key: str
) -> None:
    upstream.script(Stall(after_chunks=2))
    async with SwitchboardClient(gateway.grpc_target, key) as client:
        frames = client.stream_chat(
            model=ISOLATED.format("stream-cancel"), messages=["stall midway"]
        )
        first = await anext(frames)
        assert first.WhichOneof("frame") == "start"
        before = upstream.cancelled
        await frames.aclose()
        await _upstream_cancelled(upstream, before)


async def test_grpc_deadline_bounds_the_upstream_call(
    stub: chat_pb2_grpc.ChatServiceStub, upstream: FakeOpenAI, key: str
) -> None:
    upstream.script(Stall())
    request = chat_pb2.ChatRequest(model=ISOLATED.format("deadline"), messages=[_user("too slow")])
    loop = asyncio.get_running_loop()
    started = loop.time()
    before = upstream.cancelled
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Chat(request, metadata=_auth(key), timeout=1.0)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await _upstream_cancelled(upstream, before)
    assert loop.time() - started < 5


async def test_client_round_trip_and_list_models(gateway: RunningGateway, key: str) -> None:
    async with SwitchboardClient(gateway.grpc_target, key, timeout=10) as client:
        response = await client.chat(model=MODEL, messages=[user("typed client")])
        assert response.message.content[0].text == "Fake reply to: typed client"
        frames = [f async for f in client.stream_chat(model="demo/echo", messages=["a b"])]
        assert frames[-1].end.usage.output_tokens == 3
        models = {m.id: m for m in await client.list_models()}
        assert "demo/echo" in models and MODEL in models
        assert models[MODEL].pricing.input_per_mtok == PRICE_IN
        second = await client.chat(
            model="demo/echo",
            tools=[_weather_tool()],
            messages=[user("Rome")],
        )
        call = second.message.content[0].tool_call
        third = await client.chat(
            model="demo/echo",
            messages=[user("Rome"), second.message, tool_result(call.id, "rainy")],
        )
        assert third.message.content[0].text == "The tool get_weather returned: rainy"


async def test_no_key_ever_appears_in_the_server_output(gateway: RunningGateway) -> None:
    # Runs last in the module: everything above has gone through this server by now.
    output = gateway.output()
    assert "Switchboard is running" in output
    assert PROVIDER_KEY not in output and PROVIDER_KEY[8:24] not in output
    for secret in SECRETS:
        assert secret not in output
