"""The shared adapter conformance suite; each test runs once per harness (see harness.py).

A test needing a capability the adapter does not declare, or a harness feature the harness does
not declare, is skipped with that reason, so a report shows what each adapter was held to.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from google.protobuf import struct_pb2
from switchboard.v1 import chat_pb2, types_pb2

from server.core.errors import (
    UpstreamAuthError,
    UpstreamBadRequestError,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamNotFoundError,
    UpstreamRateLimitedError,
    UpstreamServerError,
    UpstreamStreamError,
    UpstreamTimeoutError,
)
from server.providers.base import Capability, UpstreamCall
from tests.conformance.harness import Expected, ExpectedCall, Failure, Feature, Harness, Session

MODES = ["chat", "stream"]


# --- helpers -------------------------------------------------------------------------------


def needs(harness: Harness, *capabilities: Capability, features: tuple[Feature, ...] = ()) -> None:
    declared = harness.provider("http://127.0.0.1:9").capabilities
    for capability in capabilities:
        if capability not in declared:
            pytest.skip(f"{harness.name} does not declare capability {capability.value}")
    for feature in features:
        if feature not in harness.features:
            pytest.skip(f"{harness.name} harness does not declare feature {feature.value}")


def user(text: str) -> types_pb2.Message:
    return types_pb2.Message(role=types_pb2.ROLE_USER, content=[types_pb2.ContentPart(text=text)])


def struct(value: dict[str, Any]) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    result.update(value)
    return result


def request(
    text: str = "Say hello to the conformance suite", **fields: Any
) -> chat_pb2.ChatRequest:
    return chat_pb2.ChatRequest(
        model="conformance",
        messages=[
            types_pb2.Message(
                role=types_pb2.ROLE_SYSTEM, content=[types_pb2.ContentPart(text="Be brief.")]
            ),
            user(text),
        ],
        **fields,
    )


WEATHER = types_pb2.Tool(
    name="get_weather",
    description="Current weather for a city",
    parameters=struct(
        {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city"],
        }
    ),
)
TIME = types_pb2.Tool(
    name="get_time",
    description="Local time in a city",
    parameters=struct(
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    ),
)


@dataclass
class Result:
    text: str = ""
    reasoning: str = ""
    calls: list[types_pb2.ToolCall] = field(default_factory=list)
    finish: int = types_pb2.FINISH_REASON_UNSPECIFIED
    usage: types_pb2.Usage = field(default_factory=types_pb2.Usage)


async def run(
    session: Session, req: chat_pb2.ChatRequest, mode: str, call: UpstreamCall | None = None
) -> Result:
    call = call or session.call()
    if mode == "chat":
        response = await session.provider.chat(req, call)
        result = Result(finish=response.finish_reason, usage=response.usage)
        assert response.message.role == types_pb2.ROLE_ASSISTANT
        for part in response.message.content:
            kind = part.WhichOneof("part")
            if kind == "text":
                result.text += part.text
            elif kind == "reasoning":
                result.reasoning += part.reasoning.text
            elif kind == "tool_call":
                result.calls.append(part.tool_call)
        return result
    return collect([frame async for frame in session.provider.stream(req, call)])


def collect(frames: list[chat_pb2.StreamChatResponse]) -> Result:
    """Folds stream frames, checking the frame contract on the way."""
    kinds = [frame.WhichOneof("frame") for frame in frames]
    assert "start" not in kinds, "adapters never emit the start frame (the core does)"
    assert kinds.count("end") == 1 and kinds[-1] == "end", f"exactly one final end frame: {kinds}"
    result = Result()
    by_index: dict[int, types_pb2.ToolCall] = {}
    for frame in frames[:-1]:
        kind = frame.WhichOneof("frame")
        if kind == "text":
            result.text += frame.text.text
        elif kind == "reasoning":
            result.reasoning += frame.reasoning.text
        elif kind == "tool_call":
            delta = frame.tool_call
            if delta.index not in by_index:
                assert delta.id and delta.name, "the first delta of a tool call has id and name"
                by_index[delta.index] = types_pb2.ToolCall(id=delta.id, name=delta.name)
            else:
                assert not delta.id or delta.id == by_index[delta.index].id
            by_index[delta.index].arguments += delta.arguments
        else:
            raise AssertionError(f"unexpected frame {kind}")
    result.calls = [by_index[i] for i in sorted(by_index)]
    assert sorted(by_index) == list(range(len(by_index))), "tool call indexes are 0..n-1"
    result.finish = frames[-1].end.finish_reason
    result.usage = frames[-1].end.usage
    return result


def check(result: Result, expected: Expected) -> None:
    if expected.text is None:
        assert result.text.strip(), "expected some text"
    else:
        assert result.text == expected.text
    assert len(result.calls) == len(expected.calls)
    for got, want in zip(result.calls, expected.calls, strict=True):
        assert got.name == want.name
        assert got.id if want.id is None else got.id == want.id
        arguments = json.loads(got.arguments)
        assert isinstance(arguments, dict)
        if want.arguments is not None:
            assert arguments == want.arguments
    assert result.finish == expected.finish
    if expected.usage is None:
        assert result.usage.output_tokens > 0
    else:
        assert result.usage == expected.usage


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- success cases -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_text(harness: Harness, mode: str) -> None:
    needs(harness, Capability.TEXT, *([Capability.STREAM] if mode == "stream" else []))
    async with harness.session() as session:
        req = request()
        expected = session.reply(
            req,
            Expected(
                text="Hello, conformance suite! Nice to meet you.",
                usage=types_pb2.Usage(input_tokens=14, output_tokens=8),
            ),
        )
        check(await run(session, req, mode), expected)


@pytest.mark.parametrize("mode", MODES)
async def test_tool_call(harness: Harness, mode: str) -> None:
    caps = [Capability.TOOLS, *([Capability.STREAM_TOOLS] if mode == "stream" else [])]
    needs(harness, *caps)
    async with harness.session() as session:
        req = request("What is the weather in Paris?", tools=[WEATHER])
        expected = session.reply(
            req,
            Expected(
                calls=[ExpectedCall("get_weather", {"city": "Paris"}, "call_weather_1")],
                finish=types_pb2.FINISH_REASON_TOOL_CALLS,
                usage=types_pb2.Usage(input_tokens=40, output_tokens=12),
            ),
        )
        result = await run(session, req, mode)
        check(result, expected)
        required = {"city"}
        assert required <= set(json.loads(result.calls[0].arguments))


@pytest.mark.parametrize("mode", MODES)
async def test_parallel_tool_calls(harness: Harness, mode: str) -> None:
    caps = [Capability.PARALLEL_TOOLS, *([Capability.STREAM_TOOLS] if mode == "stream" else [])]
    needs(harness, Capability.TOOLS, *caps)
    async with harness.session() as session:
        req = request("Weather and time in Paris and in Rome?", tools=[WEATHER, TIME])
        expected = session.reply(
            req,
            Expected(
                text="Let me look these up.",
                calls=[
                    ExpectedCall("get_weather", {"city": "Paris", "unit": "celsius"}, "call_a"),
                    ExpectedCall("get_time", {"city": "Rome"}, "call_b"),
                    ExpectedCall("get_weather", {"city": "Rome"}, "call_c"),
                ],
                finish=types_pb2.FINISH_REASON_TOOL_CALLS,
                usage=types_pb2.Usage(input_tokens=60, output_tokens=40),
            ),
        )
        check(await run(session, req, mode), expected)


@pytest.mark.parametrize("mode", MODES)
async def test_json_mode(harness: Harness, mode: str) -> None:
    needs(harness, Capability.JSON_MODE)
    async with harness.session() as session:
        req = request(
            "Give me a city as JSON",
            response_format=types_pb2.ResponseFormat(
                type=types_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT
            ),
        )
        expected = session.reply(
            req,
            Expected(
                text='{"city": "Paris", "country": "France"}',
                usage=types_pb2.Usage(input_tokens=10, output_tokens=9),
            ),
        )
        result = await run(session, req, mode)
        check(result, expected)
        assert isinstance(json.loads(result.text), dict)


@pytest.mark.parametrize("mode", MODES)
async def test_json_schema(harness: Harness, mode: str) -> None:
    needs(harness, Capability.JSON_SCHEMA)
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    async with harness.session() as session:
        req = request(
            "Largest city in France?",
            response_format=types_pb2.ResponseFormat(
                type=types_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
                json_schema=types_pb2.JsonSchema(name="city", schema=struct(schema), strict=True),
            ),
        )
        expected = session.reply(
            req,
            Expected(
                text='{"city":"Paris","population":2100000}',
                usage=types_pb2.Usage(input_tokens=30, output_tokens=9),
            ),
        )
        result = await run(session, req, mode)
        check(result, expected)
        value = json.loads(result.text)
        assert isinstance(value, dict) and set(schema["required"]) <= set(value)


@pytest.mark.parametrize("mode", MODES)
async def test_max_tokens_truncation(harness: Harness, mode: str) -> None:
    needs(harness, Capability.MAX_TOKENS)
    async with harness.session() as session:
        req = request("Count from one to ten please", max_tokens=3)
        expected = session.reply(
            req,
            Expected(
                text="One, two,",
                finish=types_pb2.FINISH_REASON_LENGTH,
                usage=types_pb2.Usage(input_tokens=9, output_tokens=3),
            ),
        )
        result = await run(session, req, mode)
        check(result, expected)
        assert len(result.text.split()) <= 3


@pytest.mark.parametrize("mode", MODES)
async def test_usage_with_cached_tokens(harness: Harness, mode: str) -> None:
    needs(harness, Capability.CACHED_USAGE)
    async with harness.session() as session:
        req = request()
        expected = session.reply(
            req,
            Expected(
                text="Cached hello.",
                usage=types_pb2.Usage(input_tokens=2048, output_tokens=3, cached_input_tokens=1920),
            ),
        )
        check(await run(session, req, mode), expected)


# --- error cases ---------------------------------------------------------------------------


async def expect_error(
    session: Session, mode: str, error: type[UpstreamError], call: UpstreamCall | None = None
) -> UpstreamError:
    with pytest.raises(error) as caught:
        await run(session, request(), mode, call)
    assert caught.value.provider == session.provider.name
    return caught.value


@pytest.mark.parametrize("mode", MODES)
async def test_rate_limited_with_retry_after(harness: Harness, mode: str) -> None:
    needs(harness, features=(Feature.WIRE_ERRORS,))
    async with harness.session() as session:
        session.fail(Failure("status", 429, "Rate limit reached for requests", retry_after="2"))
        error = await expect_error(session, mode, UpstreamRateLimitedError)
        assert error.retry_after == 2.0
        assert error.retryable and error.status == 429
        assert "Rate limit reached" in error.message


@pytest.mark.parametrize("mode", MODES)
async def test_server_error(harness: Harness, mode: str) -> None:
    needs(harness, features=(Feature.WIRE_ERRORS,))
    async with harness.session() as session:
        session.fail(Failure("status", 500, "The server had an error"))
        error = await expect_error(session, mode, UpstreamServerError)
        assert error.retryable and error.status == 500


@pytest.mark.parametrize("mode", MODES)
async def test_bad_request_keeps_message(harness: Harness, mode: str) -> None:
    needs(harness, features=(Feature.WIRE_ERRORS,))
    async with harness.session() as session:
        message = "Invalid value for 'temperature': must be at most 2."
        session.fail(Failure("status", 400, message))
        error = await expect_error(session, mode, UpstreamBadRequestError)
        assert message in error.message
        assert not error.retryable


@pytest.mark.parametrize("mode", MODES)
async def test_auth_error_never_shows_the_key(harness: Harness, mode: str) -> None:
    needs(harness, features=(Feature.WIRE_ERRORS,))
    async with harness.session() as session:
        key = session.api_key
        session.fail(Failure("status", 401, f"Incorrect API key provided: {key}."))
        error = await expect_error(session, mode, UpstreamAuthError)
        for shown in (error.message, str(error), repr(error), repr(error.args)):
            assert key not in shown
        assert not error.retryable


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (403, UpstreamAuthError),
        (404, UpstreamNotFoundError),
        (408, UpstreamServerError),
        (409, UpstreamServerError),
        (422, UpstreamBadRequestError),
        (503, UpstreamServerError),
        (529, UpstreamServerError),
    ],
)
async def test_status_mapping(harness: Harness, status: int, error: type[UpstreamError]) -> None:
    needs(harness, features=(Feature.WIRE_ERRORS,))
    async with harness.session() as session:
        session.fail(Failure("status", status, f"status {status} from the fake"))
        caught = await expect_error(session, "chat", error)
        assert caught.status == status


@pytest.mark.parametrize("mode", MODES)
async def test_timeout(harness: Harness, mode: str) -> None:
    needs(harness, features=(Feature.WIRE_ERRORS,))
    async with harness.session() as session:
        session.fail(Failure("stall"))
        started = time.monotonic()
        await expect_error(session, mode, UpstreamTimeoutError, session.call(timeout=0.3))
        assert time.monotonic() - started < 3.0


async def test_cut_stream(harness: Harness) -> None:
    needs(harness, Capability.STREAM, features=(Feature.WIRE_ERRORS,))
    async with harness.session() as session:
        session.fail(Failure("cut_stream"))
        error = await expect_error(session, "stream", UpstreamStreamError)
        assert error.retryable


async def test_error_event_inside_stream(harness: Harness) -> None:
    needs(harness, Capability.STREAM, features=(Feature.STREAM_ERROR_EVENT,))
    async with harness.session() as session:
        session.fail(Failure("stream_error", message="Token limit reached"))
        error = await expect_error(session, "stream", UpstreamStreamError)
        assert "Token limit reached" in error.message


@pytest.mark.parametrize("mode", MODES)
async def test_connection_refused(harness: Harness, mode: str) -> None:
    needs(harness, features=(Feature.WIRE_ERRORS,))
    provider = harness.provider(f"http://127.0.0.1:{closed_port()}")
    async with harness.session() as session:
        call = session.call(timeout=5.0)
    with pytest.raises(UpstreamConnectionError) as caught:
        if mode == "chat":
            await provider.chat(request(), call)
        else:
            [frame async for frame in provider.stream(request(), call)]
    assert caught.value.retryable
    # Said in words, not as the transport's exception class (httpx_aiohttp calls a refused
    # connection `ConnectTimeout`).
    assert "refused the connection" in caught.value.message
    assert "Timeout" not in caught.value.message


async def test_embeddings(harness: Harness) -> None:
    needs(harness, Capability.EMBEDDINGS)
    request = chat_pb2.EmbedRequest(model="x", dimensions=4)
    request.inputs.add(text="first text")
    request.inputs.add(text="second text")
    async with harness.session() as session:
        call = dataclasses.replace(session.call(), model=harness.embed_model)
        answer = await session.provider.embed(request, call)  # type: ignore[attr-defined]
    assert [e.index for e in answer.embeddings] == [0, 1]
    assert [len(e.values) for e in answer.embeddings] == [4, 4]
    assert list(answer.embeddings[0].values) != list(answer.embeddings[1].values)
    assert answer.usage.output_tokens == 0
