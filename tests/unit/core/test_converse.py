"""server.core.converse and server.core.accumulate: the tool loop without a transport.

The loop runs against a real ``Gateway`` over the demo provider (which calls the first tool
when given tools and answers in text once the last message holds tool results), with a real
usage ledger on a temporary SQLite file.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio
from google.protobuf import struct_pb2
from switchboard.v1 import chat_pb2, types_pb2

from server.config import Config
from server.core.accumulate import StreamAccumulator
from server.core.context import CallContext, Principal
from server.core.converse import (
    converse,
    match_results,
    start_request,
)
from server.core.errors import DeadlineExceededError, InvalidRequestError, MaxTurnsExceededError
from server.core.service import Gateway
from server.policy.admission import UsagePolicy
from server.providers.demo.provider import DemoProvider
from server.resilience.executor import Executor
from server.routing.catalog import Catalog
from server.routing.router import Router
from server.store.embedded.budgets import MemoryBudgets
from server.store.embedded.ledger import SqliteLedger
from server.store.embedded.limits import MemoryRateLimiter

Frame = chat_pb2.StreamChatResponse

# --- StreamAccumulator ------------------------------------------------------------------------


def text(t: str) -> Frame:
    return Frame(text=chat_pb2.TextDelta(text=t))


def reasoning(t: str = "", signature: str = "") -> Frame:
    return Frame(reasoning=chat_pb2.ReasoningDelta(text=t, signature=signature))


def call(index: int, **fields: Any) -> Frame:
    return Frame(tool_call=chat_pb2.ToolCallDelta(index=index, **fields))


def fold(frames: Iterable[Frame]) -> StreamAccumulator:
    acc = StreamAccumulator()
    for frame in frames:
        acc.add(frame)
    return acc


def parts(message: types_pb2.Message) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for part in message.content:
        kind = part.WhichOneof("part")
        if kind == "text":
            out.append(("text", part.text))
        elif kind == "reasoning":
            out.append(("reasoning", (part.reasoning.text, part.reasoning.signature)))
        elif kind == "tool_call":
            c = part.tool_call
            out.append(("tool_call", (c.id, c.name, c.arguments, c.signature)))
    return out


def test_interleaved_parallel_calls_are_assembled_in_order_with_the_text_before_them() -> None:
    end = Frame(end=chat_pb2.StreamEnd(finish_reason=types_pb2.FINISH_REASON_TOOL_CALLS))
    acc = fold(
        [
            text("Let me "),
            text("check."),
            call(0, id="call_a", name="get_weather"),
            call(1, id="call_b", name="get_time"),
            call(0, arguments='{"city":'),
            call(1, arguments='{"tz":'),
            call(0, arguments=' "Paris"}'),
            call(1, arguments=' "CET"}'),
            end,
        ]
    )
    assert acc.finish_reason == types_pb2.FINISH_REASON_TOOL_CALLS
    assert parts(acc.message()) == [
        ("text", "Let me check."),
        ("tool_call", ("call_a", "get_weather", '{"city": "Paris"}', "")),
        ("tool_call", ("call_b", "get_time", '{"tz": "CET"}', "")),
    ]
    assert acc.message().role == types_pb2.ROLE_ASSISTANT
    assert [(c.id, c.arguments) for c in acc.tool_calls()] == [
        ("call_a", '{"city": "Paris"}'),
        ("call_b", '{"tz": "CET"}'),
    ]


def test_anthropic_thinking_blocks_close_on_their_signature() -> None:
    acc = fold(
        [
            reasoning("First I "),
            reasoning("think."),
            reasoning(signature="sig-1"),
            reasoning("Then more."),
            reasoning(signature="sig-2"),
            text("Answer."),
        ]
    )
    assert parts(acc.message()) == [
        ("reasoning", ("First I think.", "sig-1")),
        ("reasoning", ("Then more.", "sig-2")),
        ("text", "Answer."),
    ]


def test_gemini_signatures_stay_where_they_arrived() -> None:
    # A thoughtSignature on a text part comes as a signature-only reasoning frame after the
    # text; one on a function call rides on the call itself.
    acc = fold(
        [
            reasoning("pondering", signature="thought-sig"),
            text("Calling."),
            reasoning(signature="text-sig"),
            call(0, id="g1", name="lookup", arguments='{"q": 1}', signature="call-sig"),
        ]
    )
    assert parts(acc.message()) == [
        ("reasoning", ("pondering", "thought-sig")),
        ("text", "Calling."),
        ("reasoning", ("", "text-sig")),
        ("tool_call", ("g1", "lookup", '{"q": 1}', "call-sig")),
    ]


def test_a_late_name_is_kept_and_a_missing_id_is_generated_once() -> None:
    acc = fold([call(0, arguments="{}"), call(0, name="late_name"), text("")])
    (made,) = acc.tool_calls()
    assert made.name == "late_name" and made.id.startswith("call_") and len(made.id) > 10
    assert parts(acc.message()) == [("tool_call", (made.id, "late_name", "{}", ""))]
    assert acc.tool_calls()[0].id == made.id
    assert acc.finish_reason == types_pb2.FINISH_REASON_UNSPECIFIED


# --- match_results ----------------------------------------------------------------------------

CALLS = [
    types_pb2.ToolCall(id="call_a", name="get_weather", arguments="{}"),
    types_pb2.ToolCall(id="call_b", name="get_time", arguments="{}"),
]


def result(call_id: str, content: str = "ok", name: str = "") -> types_pb2.ToolResult:
    return types_pb2.ToolResult(tool_call_id=call_id, content=content, name=name)


def test_results_come_back_in_call_order_with_names_filled() -> None:
    ordered = match_results(CALLS, [result("call_b", "noon", name="clock"), result("call_a")])
    assert [(r.tool_call_id, r.content, r.name) for r in ordered] == [
        ("call_a", "ok", "get_weather"),
        ("call_b", "noon", "clock"),
    ]


def test_every_bad_result_is_a_field_violation() -> None:
    with pytest.raises(InvalidRequestError) as info:
        match_results(CALLS, [result("call_a"), result("call_a"), result("nope"), result("")])
    violations = [(v.field, v.description) for v in info.value.field_violations]
    assert violations == [
        (
            "tool_results.results[1].tool_call_id",
            "tool_call_id 'call_a' is answered more than once",
        ),
        (
            "tool_results.results[2].tool_call_id",
            "unknown tool_call_id 'nope': no such call is pending",
        ),
        ("tool_results.results[3].tool_call_id", "tool_call_id is required"),
        ("tool_results.results", "no result for tool call 'call_b' (get_time)"),
    ]
    assert info.value.param == "tool_results.results[1].tool_call_id"
    assert "(and 3 more)" in info.value.message


def test_the_first_event_must_be_start() -> None:
    start = chat_pb2.ConverseRequest(start=chat_pb2.ChatRequest(model="demo/echo"))
    assert start_request(start).model == "demo/echo"
    results = chat_pb2.ConverseRequest(tool_results=chat_pb2.ToolResults())
    for event, words in [(results, "`tool_results`"), (None, "closed its side")]:
        with pytest.raises(InvalidRequestError) as info:
            start_request(event)
        assert words in info.value.message and info.value.param == "start"


# --- converse() over a real Gateway -----------------------------------------------------------


@dataclass
class _Entry:
    provider: DemoProvider
    api_keys: tuple[str, ...] = ("",)


@dataclass
class Rig:
    gateway: Gateway
    ledger: SqliteLedger
    data_dir: Path

    def rows(self) -> list[sqlite3.Row]:
        conn = sqlite3.connect(self.data_dir / "usage.db")
        conn.row_factory = sqlite3.Row
        try:
            return conn.execute("SELECT * FROM usage ORDER BY id").fetchall()
        finally:
            conn.close()


class _NoKeys:
    async def lookup(self, secret: str) -> Principal | None:
        return None


@pytest_asyncio.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    config = Config()
    entries: dict[str, Any] = {"demo": _Entry(DemoProvider())}
    catalog = Catalog(entries, config, prices={})
    ledger = SqliteLedger(tmp_path, flush_interval=30.0)
    policy = UsagePolicy(MemoryRateLimiter(), MemoryBudgets(), ledger)
    gateway = Gateway(
        Router(catalog),
        Executor(config),
        _NoKeys(),
        "master",
        30.0,
        admission=policy,
        sinks=[policy],
    )
    yield Rig(gateway, ledger, tmp_path)
    await ledger.aclose()


def weather_request() -> chat_pb2.ChatRequest:
    params = struct_pb2.Struct()
    params.update(
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    )
    request = chat_pb2.ChatRequest(model="demo/echo")
    request.messages.add(role=types_pb2.ROLE_USER).content.add().text = "Oslo"
    request.tools.add(name="get_weather", parameters=params)
    return request


def call_context(deadline: float | None = None) -> CallContext:
    principal = Principal("key_a", "key_a")
    return CallContext(request_id="rid", principal=principal, deadline=deadline, transport="test")


class Client:
    """The client side of the loop: a queue of events the test puts in (None: half-close)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[chat_pb2.ConverseRequest | None] = asyncio.Queue()

    async def events(self) -> AsyncIterator[chat_pb2.ConverseRequest]:
        while (event := await self.queue.get()) is not None:
            yield event

    def answer(self, *results: types_pb2.ToolResult) -> None:
        self.queue.put_nowait(
            chat_pb2.ConverseRequest(tool_results=chat_pb2.ToolResults(results=results))
        )


async def test_a_tool_round_trip_is_two_recorded_turns(rig: Rig) -> None:
    client = Client()
    out: list[chat_pb2.ConverseResponse] = []
    loop = converse(rig.gateway, weather_request(), call_context(), client.events())
    async with asyncio.timeout(10):
        async for event in loop:
            out.append(event)
            if event.WhichOneof("event") == "tool_calls_required":
                (made,) = event.tool_calls_required.tool_calls
                assert made.name == "get_weather"
                assert orjson.loads(made.arguments) == {"city": "Oslo"}
                client.answer(result(made.id, "rainy"))
    kinds = [e.frame.WhichOneof("frame") or e.WhichOneof("event") for e in out]
    pause = kinds.index("tool_calls_required")
    assert kinds[0] == "start" and kinds[pause - 1] == "end" and kinds[pause + 1] == "start"
    assert kinds[-1] == "end" and kinds.count("start") == 2 and kinds.count("end") == 2
    ends = [e.frame.end for e in out if e.frame.WhichOneof("frame") == "end"]
    starts = [e.frame.start for e in out if e.frame.WhichOneof("frame") == "start"]
    assert [s.id for s in starts] == [e.id for e in ends] == ["rid.1", "rid.2"]
    assert [e.finish_reason for e in ends] == [
        types_pb2.FINISH_REASON_TOOL_CALLS,
        types_pb2.FINISH_REASON_STOP,
    ]
    final = "".join(e.frame.text.text for e in out[pause + 1 :])
    assert final == "The tool get_weather returned: rainy"
    await rig.ledger.flush()
    rows = rig.rows()
    assert [(r["request_id"], r["outcome"], r["stream"]) for r in rows] == [
        ("rid.1", "success", 1),
        ("rid.2", "success", 1),
    ]
    assert [r["input_tokens"] for r in rows] == [e.usage.input_tokens for e in ends]
    assert [r["output_tokens"] for r in rows] == [e.usage.output_tokens for e in ends]


async def test_the_turn_limit_stops_a_model_that_keeps_asking(rig: Rig) -> None:
    client = Client()
    loop = converse(rig.gateway, weather_request(), call_context(), client.events(), max_turns=1)
    seen: list[str | None] = []
    with pytest.raises(MaxTurnsExceededError) as info:
        async with asyncio.timeout(5):
            async for event in loop:
                seen.append(event.frame.WhichOneof("frame") or event.WhichOneof("event"))
    assert "tool_calls_required" not in seen and seen[-1] == "end"
    assert info.value.code.name == "FAILED_PRECONDITION"
    assert info.value.reason == "MAX_TURNS_EXCEEDED" and "at turn 1," in info.value.message


async def test_waiting_for_results_is_bounded(rig: Rig) -> None:
    client = Client()
    loop = converse(
        rig.gateway, weather_request(), call_context(), client.events(), results_timeout=0.05
    )
    with pytest.raises(DeadlineExceededError) as info:
        async with asyncio.timeout(5):
            async for _ in loop:
                pass
    assert "0.05 s" in info.value.message


async def test_a_second_start_while_waiting_is_invalid(rig: Rig) -> None:
    client = Client()
    client.queue.put_nowait(chat_pb2.ConverseRequest(start=weather_request()))
    loop = converse(rig.gateway, weather_request(), call_context(), client.events())
    with pytest.raises(InvalidRequestError) as info:
        async with asyncio.timeout(5):
            async for _ in loop:
                pass
    assert "second `start`" in info.value.message and info.value.param == "tool_results"


async def test_half_close_while_waiting_ends_without_another_turn(rig: Rig) -> None:
    client = Client()
    client.queue.put_nowait(None)
    loop = converse(rig.gateway, weather_request(), call_context(), client.events())
    async with asyncio.timeout(5):
        last = [event async for event in loop][-1]
    assert last.WhichOneof("event") == "tool_calls_required"
    await rig.ledger.flush()
    assert [r["request_id"] for r in rig.rows()] == ["rid.1"]


async def test_first_turn_validation_errors_name_start_fields(rig: Rig) -> None:
    bad = weather_request()
    bad.model = ""
    loop = converse(rig.gateway, bad, call_context(), Client().events())
    with pytest.raises(InvalidRequestError) as info:
        async with asyncio.timeout(5):
            async for _ in loop:
                pass
    assert [v.field for v in info.value.field_violations] == ["start.model"]
    assert info.value.param == "start.model"


def test_accumulator_keeps_a_redacted_reasoning_block_whole() -> None:
    from server.core.accumulate import StreamAccumulator

    acc = StreamAccumulator()
    for frame in (
        chat_pb2.StreamChatResponse(reasoning=chat_pb2.ReasoningDelta(text="think")),
        chat_pb2.StreamChatResponse(reasoning=chat_pb2.ReasoningDelta(signature="sig")),
        chat_pb2.StreamChatResponse(reasoning=chat_pb2.ReasoningDelta(redacted_data="opaque")),
        chat_pb2.StreamChatResponse(text=chat_pb2.TextDelta(text="answer")),
    ):
        acc.add(frame)
    parts = acc.message().content
    assert [p.WhichOneof("part") for p in parts] == ["reasoning", "reasoning", "text"]
    assert (parts[0].reasoning.text, parts[0].reasoning.signature) == ("think", "sig")
    assert parts[1].reasoning.redacted_data == "opaque" and not parts[1].reasoning.text
