"""ChatService.Converse (the tool-call loop over one stream) against a real gateway process.

One gateway subprocess serves the whole module: the offline demo model and an `openai`
provider pointed at a fake OpenAI server in this event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import grpc.aio
import orjson
import pytest
import pytest_asyncio
from google.protobuf import struct_pb2
from switchboard.v1 import chat_pb2, chat_pb2_grpc, types_pb2
from switchboard_client import SwitchboardClient, SwitchboardError, user

from server.core.converse import MAX_TURNS
from server.core.errors import ERROR_DOMAIN
from tests.fakes.openai_upstream import FakeOpenAI, Reply, Stall, Status, ToolCall
from tests.support.server import RunningGateway, running_gateway

pytestmark = pytest.mark.asyncio(loop_scope="module")

# What a stream-stream call's read() returns at the end (missing from grpc-stubs).
EOF = grpc.aio.EOF  # type: ignore[attr-defined]

PROVIDER_KEY = "sk-proj-CONVERSEsecret0123456789abcdefABCDEF"
MODEL = "openai/gpt-4o-mini"
DEMO = "demo/echo"
# Every call in this module gets a deadline: nothing here may hang the suite.
TIMEOUT = 20.0


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def upstream() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(api_key=PROVIDER_KEY) as up:
        yield up


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def gateway(upstream: FakeOpenAI) -> AsyncIterator[RunningGateway]:
    env = {"OPENAI_API_KEY": PROVIDER_KEY, "OPENAI_BASE_URL": upstream.base_url}
    config = {"retry": {"max_attempts_per_deployment": 1}, "timeouts": {"attempt": 20}}
    async with running_gateway(env=env, config=config) as gw:
        yield gw


@pytest.fixture(autouse=True)
def _fresh_upstream(upstream: FakeOpenAI) -> Iterator[None]:
    upstream.clear()
    upstream.default = None
    yield
    upstream.default = None


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def key(gateway: RunningGateway) -> str:
    return gateway.create_key("converse-tests")


@pytest_asyncio.fixture(loop_scope="module")
async def stub(gateway: RunningGateway) -> AsyncIterator[chat_pb2_grpc.ChatServiceStub]:
    async with grpc.aio.insecure_channel(gateway.grpc_target) as channel:
        yield chat_pb2_grpc.ChatServiceStub(channel)


def _tool(name: str, prop: str) -> types_pb2.Tool:
    params = struct_pb2.Struct()
    params.update({"type": "object", "properties": {prop: {"type": "string"}}, "required": [prop]})
    return types_pb2.Tool(name=name, description=f"{name} tool", parameters=params)


WEATHER = _tool("get_weather", "city")
TIME = _tool("get_time", "tz")


def _start(model: str, text: str, *tools: types_pb2.Tool) -> chat_pb2.ConverseRequest:
    return chat_pb2.ConverseRequest(
        start=chat_pb2.ChatRequest(model=model, messages=[user(text)], tools=tools)
    )


def _results(*pairs: tuple[str, str]) -> chat_pb2.ConverseRequest:
    results = [types_pb2.ToolResult(tool_call_id=i, content=c) for i, c in pairs]
    return chat_pb2.ConverseRequest(tool_results=chat_pb2.ToolResults(results=results))


class Session:
    """One raw Converse call on the generated stub."""

    def __init__(
        self,
        stub: chat_pb2_grpc.ChatServiceStub,
        key: str | None,
        *,
        timeout: float = TIMEOUT,
        request_id: str | None = None,
    ) -> None:
        metadata = [("authorization", f"Bearer {key}")] if key else []
        if request_id:
            metadata.append(("x-request-id", request_id))
        self.call = stub.Converse(metadata=tuple(metadata), timeout=timeout)

    async def send(self, event: chat_pb2.ConverseRequest) -> None:
        # The server may end the call (a refused key) before this write lands; the status it
        # ended with is what error() reads.
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
            await self.call.write(event)

    async def turn(self) -> tuple[list[chat_pb2.StreamChatResponse], Any]:
        """The frames up to the next pause (its ToolCallsRequired) or the end of the call
        (None)."""
        frames: list[chat_pb2.StreamChatResponse] = []
        while True:
            event = await self.call.read()
            if event is EOF:
                return frames, None
            if event.WhichOneof("event") == "tool_calls_required":
                return frames, event.tool_calls_required
            frames.append(event.frame)

    async def error(self) -> SwitchboardError:
        """Reads to the end, which must be an error status."""
        with pytest.raises(grpc.aio.AioRpcError) as info:
            while await self.call.read() is not EOF:
                pass
        return SwitchboardError.from_rpc_error(info.value)


def _kinds(frames: list[chat_pb2.StreamChatResponse]) -> list[str | None]:
    return [f.WhichOneof("frame") for f in frames]


def _text(frames: list[chat_pb2.StreamChatResponse]) -> str:
    return "".join(f.text.text for f in frames)


async def test_demo_model_tool_loop(stub: chat_pb2_grpc.ChatServiceStub, key: str) -> None:
    s = Session(stub, key, request_id="conv-demo-1")
    await s.send(_start(DEMO, "Paris", WEATHER))
    first, required = await s.turn()
    kinds = _kinds(first)
    assert kinds[0] == "start" and kinds[-1] == "end" and set(kinds[1:-1]) == {"tool_call"}
    assert first[-1].end.finish_reason == types_pb2.FINISH_REASON_TOOL_CALLS
    (made,) = required.tool_calls
    assert made.name == "get_weather" and made.id
    assert orjson.loads(made.arguments) == {"city": "Paris"}
    # The required call is exactly what the deltas added up to.
    assert made.arguments == "".join(f.tool_call.arguments for f in first[1:-1])

    await s.send(_results((made.id, "sunny, 21 C")))
    second, required = await s.turn()
    assert required is None
    assert _kinds(second)[0] == "start" and _kinds(second)[-1] == "end"
    assert _text(second) == "The tool get_weather returned: sunny, 21 C"
    assert await s.call.code() == grpc.StatusCode.OK

    ends = [first[-1].end, second[-1].end]
    assert [first[0].start.id, second[0].start.id] == [e.id for e in ends]
    assert [e.id for e in ends] == ["conv-demo-1.1", "conv-demo-1.2"]
    assert ends[1].finish_reason == types_pb2.FINISH_REASON_STOP
    assert all(e.route.provider == "demo" and e.model == DEMO for e in ends)
    # The second turn's prompt holds the first turn's call and the tool's answer.
    assert ends[1].usage.input_tokens > ends[0].usage.input_tokens
    assert ends[1].usage.output_tokens == len(_text(second).split())


async def test_a_key_revoked_mid_conversation_is_refused_at_the_next_turn(
    stub: chat_pb2_grpc.ChatServiceStub, gateway: RunningGateway
) -> None:
    secret = gateway.create_key("revoked-mid-converse")
    s = Session(stub, secret)
    await s.send(_start(DEMO, "Paris", WEATHER))
    first, required = await s.turn()
    assert required is not None and _kinds(first)[-1] == "end"
    (made,) = required.tool_calls
    key_id = next(
        k["id"]
        for k in orjson.loads(gateway.cli("keys", "list", "--json").stdout)
        if k["name"] == "revoked-mid-converse"
    )
    assert gateway.cli("keys", "revoke", key_id).returncode == 0
    await s.send(_results((made.id, "sunny")))
    err = await s.error()
    assert err.code == grpc.StatusCode.UNAUTHENTICATED and err.reason == "INVALID_API_KEY"


async def test_a_huge_error_is_bounded_to_fit_the_clients_metadata_limit(
    stub: chat_pb2_grpc.ChatServiceStub, key: str
) -> None:
    s = Session(stub, key)
    await s.send(_start(DEMO, "Paris", WEATHER))
    _, required = await s.turn()
    assert required is not None
    # Thousands of unknown ids with long names: every one is a BadRequest field violation.
    await s.send(_results(*((f"call_{'x' * 200}_{i}", "r") for i in range(3000))))
    err = await s.error()
    # Not the RESOURCE_EXHAUSTED a client reports when trailers pass its 8 KiB limit.
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert 0 < len(err.field_violations) <= 20


async def test_parallel_tool_calls_go_back_upstream_as_history(
    stub: chat_pb2_grpc.ChatServiceStub, upstream: FakeOpenAI, key: str
) -> None:
    upstream.script(
        Reply(
            text="Checking both.",
            tool_calls=[
                ToolCall("get_weather", {"city": "Paris"}, id="call_w"),
                ToolCall("get_time", {"tz": "Europe/Paris"}, id="call_t"),
            ],
        ),
        Reply(text="Sunny, and it is noon."),
    )
    s = Session(stub, key)
    await s.send(_start(MODEL, "weather and time in Paris?", WEATHER, TIME))
    first, required = await s.turn()
    assert _text(first) == "Checking both."
    assert [(c.id, c.name, orjson.loads(c.arguments)) for c in required.tool_calls] == [
        ("call_w", "get_weather", {"city": "Paris"}),
        ("call_t", "get_time", {"tz": "Europe/Paris"}),
    ]
    # Answered in the other order: the conversation still lists them in call order.
    await s.send(_results(("call_t", "12:00"), ("call_w", "sunny")))
    second, required = await s.turn()
    assert required is None and _text(second) == "Sunny, and it is noon."
    assert await s.call.code() == grpc.StatusCode.OK

    assert len(upstream.requests) == 2
    sent = upstream.requests[1].json["messages"]
    assert sent[0] == {"role": "user", "content": "weather and time in Paris?"}
    assert sent[1]["role"] == "assistant" and sent[1]["content"] == "Checking both."
    assert [
        (c["id"], c["function"]["name"], orjson.loads(c["function"]["arguments"]))
        for c in sent[1]["tool_calls"]
    ] == [
        ("call_w", "get_weather", {"city": "Paris"}),
        ("call_t", "get_time", {"tz": "Europe/Paris"}),
    ]
    assert sent[2:] == [
        {"role": "tool", "tool_call_id": "call_w", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_t", "content": "12:00"},
    ]
    assert upstream.requests[1].json["tools"] == upstream.requests[0].json["tools"]
    # Each turn is billed on its own (the fake counts prompt words: the second prompt adds
    # "Checking both.", "sunny" and "12:00").
    one, two = first[-1].end, second[-1].end
    assert (one.usage.input_tokens, two.usage.input_tokens) == (5, 9)
    assert one.cost.total_usd > 0 and one.cost.total_usd != two.cost.total_usd
    assert one.route.provider == two.route.provider == "openai"


@pytest.mark.parametrize(
    ("answer", "field", "words"),
    [
        ((("call_1", "sunny"),), "tool_results.results", "no result for tool call 'call_2'"),
        (
            (("call_1", "sunny"), ("call_2", "noon"), ("call_9", "?")),
            "tool_results.results[2].tool_call_id",
            "unknown tool_call_id 'call_9'",
        ),
    ],
    ids=["missing", "unknown"],
)
async def test_bad_tool_results_are_invalid_argument(
    stub: chat_pb2_grpc.ChatServiceStub,
    upstream: FakeOpenAI,
    key: str,
    answer: tuple[tuple[str, str], ...],
    field: str,
    words: str,
) -> None:
    upstream.script(
        Reply(
            tool_calls=[
                ToolCall("get_weather", {"city": "Rome"}, id="call_1"),
                ToolCall("get_time", {"tz": "CET"}, id="call_2"),
            ]
        )
    )
    s = Session(stub, key)
    await s.send(_start(MODEL, "Rome?", WEATHER, TIME))
    _, required = await s.turn()
    assert len(required.tool_calls) == 2
    await s.send(_results(*answer))
    err = await s.error()
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.reason == "INVALID_REQUEST" and err.domain == ERROR_DOMAIN
    assert [(v.field, words in v.description) for v in err.field_violations] == [(field, True)]
    assert err.request_id and err.metadata["request_id"] == err.request_id
    assert len(upstream.requests) == 1


@pytest.mark.parametrize(
    "first",
    [_results(("call_1", "early")), None, chat_pb2.ConverseRequest()],
    ids=["tool_results", "half-close", "empty"],
)
async def test_anything_but_start_first_is_invalid_argument(
    stub: chat_pb2_grpc.ChatServiceStub, key: str, first: chat_pb2.ConverseRequest | None
) -> None:
    s = Session(stub, key)
    if first is None:
        await s.call.done_writing()
    else:
        await s.send(first)
    err = await s.error()
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in err.field_violations] == ["start"]
    assert "must begin with a `start`" in err.message


async def test_invalid_start_names_start_fields(
    stub: chat_pb2_grpc.ChatServiceStub, key: str
) -> None:
    s = Session(stub, key)
    bad = _start(DEMO, "hi")
    bad.start.temperature = 7.0
    await s.send(bad)
    err = await s.error()
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in err.field_violations] == ["start.temperature"]


async def test_a_key_is_required(stub: chat_pb2_grpc.ChatServiceStub) -> None:
    s = Session(stub, None)
    await s.send(_start(DEMO, "hi"))
    err = await s.error()
    assert err.code == grpc.StatusCode.UNAUTHENTICATED and err.reason == "INVALID_API_KEY"


async def test_refused_calls_all_report_their_status_under_concurrency(
    stub: chat_pb2_grpc.ChatServiceStub,
) -> None:
    # grpc/grpc#36066: an asyncio client's write that completes after the server's status
    # replaced it with INTERNAL; before the gateway read the start first, about 6 in 100 of
    # these concurrent refused calls came back INTERNAL.
    async def refused() -> grpc.StatusCode:
        s = Session(stub, "sb-not-a-key")
        await s.send(_start(DEMO, "hi"))
        return (await s.error()).code

    codes = [
        code for _ in range(4) for code in await asyncio.gather(*(refused() for _ in range(100)))
    ]
    assert set(codes) == {grpc.StatusCode.UNAUTHENTICATED}


async def test_half_close_while_waiting_ends_ok(
    stub: chat_pb2_grpc.ChatServiceStub, key: str
) -> None:
    s = Session(stub, key)
    await s.send(_start(DEMO, "Paris", WEATHER))
    _, required = await s.turn()
    assert required is not None
    await s.call.done_writing()
    frames, required = await s.turn()
    assert frames == [] and required is None
    assert await s.call.code() == grpc.StatusCode.OK


async def test_client_cancel_cancels_the_upstream_call(
    stub: chat_pb2_grpc.ChatServiceStub, upstream: FakeOpenAI, key: str
) -> None:
    upstream.script(
        Reply(tool_calls=[ToolCall("get_weather", {"city": "Oslo"}, id="call_o")]),
        Stall(after_chunks=2),
    )
    s = Session(stub, key)
    await s.send(_start(MODEL, "Oslo?", WEATHER))
    _, required = await s.turn()
    assert required is not None
    await s.send(_results(("call_o", "snow")))
    event = await s.call.read()
    assert event.frame.WhichOneof("frame") == "start"
    await upstream.wait_for_requests(2)
    before = upstream.cancelled
    s.call.cancel()
    async with asyncio.timeout(5):
        while upstream.cancelled == before:  # noqa: ASYNC110 - the fake exposes a counter
            await asyncio.sleep(0.02)


async def test_the_deadline_covers_waiting_for_tool_results(
    stub: chat_pb2_grpc.ChatServiceStub, key: str
) -> None:
    s = Session(stub, key, timeout=1.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await s.send(_start(DEMO, "Paris", WEATHER))
    _, required = await s.turn()
    assert required is not None
    err = await s.error()
    assert err.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert loop.time() - started < 5


async def test_an_upstream_error_in_a_later_turn_ends_the_call_with_its_status(
    stub: chat_pb2_grpc.ChatServiceStub, upstream: FakeOpenAI, key: str
) -> None:
    upstream.script(
        Reply(tool_calls=[ToolCall("get_weather", {"city": "Lima"}, id="call_l")]),
        Status(400, message="tool message rejected"),
    )
    s = Session(stub, key)
    await s.send(_start(MODEL, "Lima?", WEATHER))
    first, _ = await s.turn()
    assert first[-1].end.finish_reason == types_pb2.FINISH_REASON_TOOL_CALLS
    await s.send(_results(("call_l", "fog")))
    err = await s.error()
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.reason == "UPSTREAM_INVALID_REQUEST" and "tool message rejected" in err.message


async def test_the_turn_limit_ends_a_model_that_never_stops_calling(
    gateway: RunningGateway, upstream: FakeOpenAI, key: str
) -> None:
    upstream.default = Reply(tool_calls=[ToolCall("get_weather", {"city": "Loop"})])
    calls: list[dict[str, Any]] = []

    def get_weather(arguments: dict[str, Any]) -> str:
        calls.append(arguments)
        return "again"

    async with SwitchboardClient(gateway.grpc_target, key, timeout=TIMEOUT) as client:
        with pytest.raises(SwitchboardError) as info:
            await client.converse_result(
                model=MODEL, messages=["forever"], tools={"get_weather": get_weather}
            )
    err = info.value
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION
    assert err.reason == "MAX_TURNS_EXCEEDED" and f"at turn {MAX_TURNS}," in err.message
    assert len(upstream.requests) == MAX_TURNS
    assert calls == [{"city": "Loop"}] * (MAX_TURNS - 1)


async def test_python_client_runs_local_tools_on_the_demo_model(
    gateway: RunningGateway, key: str
) -> None:
    seen: list[dict[str, Any]] = []

    async def get_weather(arguments: dict[str, Any]) -> str:
        seen.append(arguments)
        await asyncio.sleep(0)
        return f"sunny in {arguments['city']}"

    request = chat_pb2.ChatRequest(model=DEMO, messages=[user("Lisbon")], tools=[WEATHER])
    async with SwitchboardClient(gateway.grpc_target, key, timeout=TIMEOUT) as client:
        result = await client.converse_result(request, tools={"get_weather": get_weather})
    assert seen == [{"city": "Lisbon"}]
    assert result.text == "The tool get_weather returned: sunny in Lisbon"
    assert result.finish_reason == types_pb2.FINISH_REASON_STOP
    assert len(result.turns) == 2
    assert result.usage.input_tokens == sum(t.usage.input_tokens for t in result.turns)
    assert result.usage.output_tokens == sum(t.usage.output_tokens for t in result.turns)
    ((made, answer),) = result.tool_calls
    assert made.name == "get_weather" and answer.tool_call_id == made.id
    assert answer.content == "sunny in Lisbon" and not answer.is_error


async def test_python_client_streams_events_and_reports_tool_failures(
    gateway: RunningGateway, upstream: FakeOpenAI, key: str
) -> None:
    upstream.script(
        Reply(
            tool_calls=[
                ToolCall("get_time", {"tz": "UTC"}, id="call_ok"),
                ToolCall("get_weather", {"city": "Nowhere"}, id="call_raise"),
                ToolCall("launch", {}, id="call_unknown"),
            ]
        ),
        Reply(text="Partly done."),
    )

    def get_time(arguments: dict[str, Any]) -> Any:
        return {"tz": arguments["tz"], "time": "12:00"}

    async def get_weather(arguments: dict[str, Any]) -> str:
        raise ValueError(f"no station in {arguments['city']}")

    tools = {"get_time": get_time, "get_weather": get_weather}
    async with SwitchboardClient(gateway.grpc_target, key, timeout=TIMEOUT) as client:
        events = [
            e async for e in client.converse(model=MODEL, messages=["do three things"], tools=tools)
        ]
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds.count("tool_calls_required") == 1
    frames = [e.frame.WhichOneof("frame") for e in events if e.WhichOneof("event") == "frame"]
    assert frames.count("start") == frames.count("end") == 2
    assert "".join(e.frame.text.text for e in events) == "Partly done."
    sent = upstream.requests[1].json["messages"][2:]
    assert [m["tool_call_id"] for m in sent] == ["call_ok", "call_raise", "call_unknown"]
    assert orjson.loads(sent[0]["content"]) == {"tz": "UTC", "time": "12:00"}
    assert sent[1]["content"] == "ValueError: no station in Nowhere"
    assert sent[2]["content"] == "unknown tool 'launch'"


async def test_leaving_the_client_loop_cancels_the_call(
    gateway: RunningGateway, upstream: FakeOpenAI, key: str
) -> None:
    upstream.script(Stall(after_chunks=2))
    async with SwitchboardClient(gateway.grpc_target, key, timeout=TIMEOUT) as client:
        events = client.converse(model=MODEL, messages=["stall please"], tools={})
        first = await anext(events)
        assert first.frame.WhichOneof("frame") == "start"
        before = upstream.cancelled
        await events.aclose()
        async with asyncio.timeout(5):
            while upstream.cancelled == before:  # noqa: ASYNC110 - the fake exposes a counter
                await asyncio.sleep(0.02)


async def test_no_call_above_hit_an_unexpected_error(gateway: RunningGateway, key: str) -> None:
    # Last in the module: every failure above was an intended status, none an INTERNAL with a
    # logged traceback, and no gateway key ever reached the server's output.
    out = gateway.output()
    assert '"level":"error"' not in out and "Traceback" not in out
    assert key not in out and gateway.master_key not in out
