"""Replays every recording in ../shared/fixtures/provider-wire/anthropic/ through AnthropicProvider.

Each recorded response is served from a loopback HTTP server (FakeAnthropic answering with the
recorded bytes via ``Json`` / ``Raw``), the adapter's contract output is checked against what
the recording says, and where the recording holds the request too, encoding the same
conversation must give the recorded request shape. Formats (SOURCES.md): vercel ``*.chunks.txt``
lines get their ``event:``/``data:`` framing back; pydantic-ai cassettes keep JSON bodies as
``parsed_body``; the llm-anthropic cassette keeps the raw SSE in ``body.string``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from google.protobuf import struct_pb2
from switchboard.v1 import chat_pb2, types_pb2

from server.core.errors import UnsupportedFeatureError, UpstreamBadRequestError
from server.providers.anthropic import AnthropicProvider
from server.providers.anthropic.encode import encode_request
from server.providers.base import UpstreamCall
from server.providers.http_client import close_http_client
from tests.fakes.anthropic_upstream import FakeAnthropic, Json, Raw
from tests.fixtures_dir import shared_fixtures_dir

pytestmark = pytest.mark.replay

R = types_pb2
KEY = "sk-ant-replay-key-0123456789abcdef"

# Every recording in the directory and the test that replays it: a new file fails
# test_every_recording_is_replayed until it gets a test here.
REPLAYED = {
    "vercel-ai__anthropic-text.json": "test_text_json",
    "vercel-ai__anthropic-text.chunks.txt": "test_text_stream",
    "vercel-ai__anthropic-json-tool.1.chunks.txt": "test_streamed_tool_use",
    "vercel-ai__anthropic-json-output-format.1.json": "test_native_structured_output",
    "vercel-ai__anthropic-issue-5942-cache-read.chunks.txt": "test_stream_cache_read_max_tokens",
    "vercel-ai__issue-14707-claude-opus-4-7-temperature-live.json": "test_opus_4_7_max_tokens",
    "pydantic-ai__test_multiple_parallel_tool_calls.yaml": "test_parallel_tool_calls",
    "pydantic-ai__test_anthropic_cache_real_api.yaml": "test_prompt_cache_usage",
    "pydantic-ai__test_anthropic_explicit_effort_xhigh_unsupported_model_errors.yaml": (
        "test_http_400_body"
    ),
    "llm-anthropic__test_prompt.yaml": "test_raw_sse_with_event_lines",
}


@pytest.fixture(scope="module")
def wire_dir() -> Path:
    return shared_fixtures_dir() / "provider-wire" / "anthropic"


@pytest.fixture(autouse=True)
async def _http_client() -> AsyncIterator[None]:
    yield
    await close_http_client()


@pytest.fixture
async def up() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as fake:
        yield fake


def chunks_sse(path: Path) -> bytes:
    """A vercel chunks.txt file with Anthropic's SSE framing put back."""
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            kind = orjson.loads(line)["type"]
            out.append(f"event: {kind}\ndata: {line}\n\n")
    return "".join(out).encode()


def cassette(path: Path) -> list[dict[str, Any]]:
    return yaml.safe_load(path.read_text())["interactions"]


def struct(d: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(d)
    return s


def user(text: str) -> types_pb2.Message:
    return types_pb2.Message(role=R.ROLE_USER, content=[types_pb2.ContentPart(text=text)])


def system(text: str) -> types_pb2.Message:
    return types_pb2.Message(role=R.ROLE_SYSTEM, content=[types_pb2.ContentPart(text=text)])


def call_for(model: str) -> UpstreamCall:
    return UpstreamCall(model=model, api_key=KEY, timeout=10.0)


async def stream(p: AnthropicProvider, r: chat_pb2.ChatRequest, model: str) -> list[Any]:
    return [frame async for frame in p.stream(r, call_for(model))]


def text_of(frames: list[Any]) -> str:
    return "".join(f.text.text for f in frames if f.WhichOneof("frame") == "text")


def test_every_recording_is_replayed(wire_dir: Path) -> None:
    present = {p.name for p in wire_dir.iterdir() if p.is_file()}
    assert present == set(REPLAYED), (
        f"unreplayed: {sorted(present - set(REPLAYED))}, missing: {sorted(set(REPLAYED) - present)}"
    )
    for test in REPLAYED.values():
        assert callable(globals()[test])


async def test_text_json(wire_dir: Path, up: FakeAnthropic) -> None:
    body = orjson.loads((wire_dir / "vercel-ai__anthropic-text.json").read_bytes())
    up.script(Json(body))
    response = await AnthropicProvider("a", up.base_url).chat(
        chat_pb2.ChatRequest(messages=[user("How are you?")]), call_for("claude-sonnet-4-5")
    )
    assert [p.text for p in response.message.content] == [
        "Hello! I'm doing well, thanks for asking. How are you doing today? "
        "Is there anything I can help you with?"
    ]
    assert response.finish_reason == R.FINISH_REASON_STOP
    u = response.usage
    assert (u.input_tokens, u.output_tokens, u.cached_input_tokens) == (12, 29, 0)


async def test_text_stream(wire_dir: Path, up: FakeAnthropic) -> None:
    up.script(Raw(chunks_sse(wire_dir / "vercel-ai__anthropic-text.chunks.txt")))
    frames = await stream(
        AnthropicProvider("a", up.base_url),
        chat_pb2.ChatRequest(messages=[user("How are you?")]),
        "claude-sonnet-4-5",
    )
    assert text_of(frames) == (
        "Hello! I'm doing well, thank you for asking. How are you doing today? "
        "Is there anything I can help you with?"
    )
    kinds = [f.WhichOneof("frame") for f in frames]
    assert kinds.count("end") == 1 and kinds[-1] == "end"
    assert set(kinds[:-1]) == {"text"}
    end = frames[-1].end
    assert end.finish_reason == R.FINISH_REASON_STOP
    assert (end.usage.input_tokens, end.usage.output_tokens) == (12, 30)


async def test_streamed_tool_use(wire_dir: Path, up: FakeAnthropic) -> None:
    up.script(Raw(chunks_sse(wire_dir / "vercel-ai__anthropic-json-tool.1.chunks.txt")))
    frames = await stream(
        AnthropicProvider("a", up.base_url),
        chat_pb2.ChatRequest(messages=[user("Weather?")], tools=[types_pb2.Tool(name="json")]),
        "claude-haiku-4-5",
    )
    calls = [f.tool_call for f in frames if f.WhichOneof("frame") == "tool_call"]
    assert {c.index for c in calls} == {0}
    assert (calls[0].id, calls[0].name) == ("toolu_01KFbKqPYSuAKujiL6mTfzYA", "json")
    arguments = "".join(c.arguments for c in calls)
    assert orjson.loads(arguments) == {
        "elements": [{"location": "San Francisco", "temperature": 58, "condition": "sunny"}]
    }
    # The empty first fragment is not forwarded as a frame of its own.
    assert all(c.arguments for c in calls[1:])
    end = frames[-1].end
    assert end.finish_reason == R.FINISH_REASON_TOOL_CALLS
    assert (end.usage.input_tokens, end.usage.output_tokens) == (849, 47)


async def test_native_structured_output(wire_dir: Path, up: FakeAnthropic) -> None:
    body = orjson.loads((wire_dir / "vercel-ai__anthropic-json-output-format.1.json").read_bytes())
    up.script(Json(body))
    schema = {"type": "object", "properties": {"recipe": {"type": "object"}}}
    request = chat_pb2.ChatRequest(
        messages=[user("A lasagna recipe")],
        response_format=types_pb2.ResponseFormat(
            type=R.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
            json_schema=types_pb2.JsonSchema(name="recipe", schema=struct(schema)),
        ),
    )
    response = await AnthropicProvider("a", up.base_url).chat(
        request, call_for("claude-sonnet-4-5-20250929")
    )
    assert up.last.json["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert "tools" not in up.last.json
    parsed = orjson.loads(response.message.content[0].text)
    assert parsed["recipe"]["name"] == "Classic Lasagna"
    assert len(parsed["recipe"]["steps"]) == 15
    assert response.finish_reason == R.FINISH_REASON_STOP
    assert (response.usage.input_tokens, response.usage.output_tokens) == (371, 629)


async def test_stream_cache_read_max_tokens(wire_dir: Path, up: FakeAnthropic) -> None:
    path = wire_dir / "vercel-ai__anthropic-issue-5942-cache-read.chunks.txt"
    up.script(Raw(chunks_sse(path)))
    frames = await stream(
        AnthropicProvider("a", up.base_url),
        chat_pb2.ChatRequest(messages=[user("Say OK")], max_tokens=1),
        "claude-sonnet-4-6",
    )
    assert text_of(frames) == "OK"
    end = frames[-1].end
    assert end.finish_reason == R.FINISH_REASON_LENGTH
    u = end.usage
    assert (u.input_tokens, u.cached_input_tokens, u.cache_write_input_tokens) == (18642, 18639, 0)
    assert u.output_tokens == 1


async def test_opus_4_7_max_tokens(wire_dir: Path, up: FakeAnthropic) -> None:
    recording = orjson.loads(
        (wire_dir / "vercel-ai__issue-14707-claude-opus-4-7-temperature-live.json").read_bytes()
    )
    recorded_call = recording["calls"][0]
    request = chat_pb2.ChatRequest(messages=[user("Reply exactly with OK.")], max_tokens=5)
    # The recorded request is what the adapter sends for the same conversation.
    assert encode_request(request, "claude-opus-4-7").body == recorded_call["request"]["body"]
    # The recording is about temperature being unsupported on this model: refused explicitly.
    with pytest.raises(UnsupportedFeatureError) as refused:
        encode_request(
            chat_pb2.ChatRequest(messages=[user("x")], temperature=0.7), "claude-opus-4-7"
        )
    assert refused.value.param == "temperature"
    up.script(Json(recorded_call["response"]["body"]))
    response = await AnthropicProvider("a", up.base_url).chat(request, call_for("claude-opus-4-7"))
    assert (
        up.last.headers["anthropic-version"]
        == recorded_call["request"]["headers"]["anthropic-version"]
    )
    assert up.last.headers["x-api-key"] == KEY
    assert [p.text for p in response.message.content] == ["OK"]
    assert response.finish_reason == R.FINISH_REASON_LENGTH
    u = response.usage
    assert (u.input_tokens, u.output_tokens, u.reasoning_tokens) == (21, 5, 0)


def _tool_request(parsed: dict[str, Any]) -> chat_pb2.ChatRequest:
    tool = parsed["tools"][0]
    return chat_pb2.ChatRequest(
        messages=[system(parsed["system"]), user(parsed["messages"][0]["content"][0]["text"])],
        tools=[
            types_pb2.Tool(
                name=tool["name"],
                description=tool["description"],
                parameters=struct(tool["input_schema"]),
            )
        ],
        max_tokens=parsed["max_tokens"],
    )


async def test_parallel_tool_calls(wire_dir: Path, up: FakeAnthropic) -> None:
    first, second = cassette(wire_dir / "pydantic-ai__test_multiple_parallel_tool_calls.yaml")
    recorded = first["request"]["parsed_body"]
    request = _tool_request(recorded)
    body = encode_request(request, recorded["model"]).body
    for key in ("system", "messages", "tools", "tool_choice", "max_tokens", "model"):
        assert body[key] == recorded[key], key

    p = AnthropicProvider("a", up.base_url)
    up.script(Json(first["response"]["parsed_body"]))
    response = await p.chat(request, call_for(recorded["model"]))
    parts = response.message.content
    assert parts[0].text.startswith("I'll help you find out who is the youngest")
    calls = [part.tool_call for part in parts[1:]]
    assert [(c.id, c.name, orjson.loads(c.arguments)) for c in calls] == [
        ("toolu_0167cfEnoQaPviGdVXA95zcu", "retrieve_entity_info", {"name": "Alice"}),
        ("toolu_01EEe2V5HD1Ac4rKiUR4HD2T", "retrieve_entity_info", {"name": "Bob"}),
        ("toolu_01XFyAjstT3966qvRynZyVPo", "retrieve_entity_info", {"name": "Charlie"}),
        ("toolu_013mnQZbgtK2oe3Mo3XKJsx3", "retrieve_entity_info", {"name": "Daisy"}),
    ]
    assert response.finish_reason == R.FINISH_REASON_TOOL_CALLS
    assert (response.usage.input_tokens, response.usage.output_tokens) == (423, 202)

    # The next turn: the decoded assistant message plus one tool message per call must encode
    # to the recorded request, with the four results grouped into one user turn.
    recorded2 = second["request"]["parsed_body"]
    results = {
        block["tool_use_id"]: block["content"] for block in recorded2["messages"][2]["content"]
    }
    follow = chat_pb2.ChatRequest()
    follow.CopyFrom(request)
    follow.messages.append(response.message)
    for c in calls:
        follow.messages.append(
            types_pb2.Message(
                role=R.ROLE_TOOL,
                content=[
                    types_pb2.ContentPart(
                        tool_result=types_pb2.ToolResult(tool_call_id=c.id, content=results[c.id])
                    )
                ],
            )
        )
    body2 = encode_request(follow, recorded2["model"]).body
    expected = orjson.loads(orjson.dumps(recorded2["messages"]))
    for block in expected[2]["content"]:
        # pydantic-ai spells out is_error: false; the adapter sends it only when true.
        assert block.pop("is_error") is False
    assert body2["messages"] == expected

    up.script(Json(second["response"]["parsed_body"]))
    final = await p.chat(follow, call_for(recorded2["model"]))
    assert "Daisy is the youngest" in final.message.content[0].text
    assert final.finish_reason == R.FINISH_REASON_STOP
    assert (final.usage.input_tokens, final.usage.output_tokens) == (771, 77)


async def test_prompt_cache_usage(wire_dir: Path, up: FakeAnthropic) -> None:
    interactions = cassette(wire_dir / "pydantic-ai__test_anthropic_cache_real_api.yaml")
    expected_usage = [(1114, 1111, 0, 406), (1532, 1111, 418, 33)]
    p = AnthropicProvider("a", up.base_url)
    for interaction, usage in zip(interactions, expected_usage, strict=True):
        recorded = interaction["request"]["parsed_body"]
        messages = [system(recorded["system"])]
        for m in recorded["messages"]:
            role = R.ROLE_USER if m["role"] == "user" else R.ROLE_ASSISTANT
            messages.append(
                types_pb2.Message(
                    role=role, content=[types_pb2.ContentPart(text=m["content"][0]["text"])]
                )
            )
        request = chat_pb2.ChatRequest(
            messages=messages,
            max_tokens=recorded["max_tokens"],
            passthrough=struct({"cache_control": recorded["cache_control"]}),
        )
        body = encode_request(request, recorded["model"]).body
        for key in ("system", "messages", "cache_control", "max_tokens", "model"):
            assert body[key] == recorded[key], key
        up.script(Json(interaction["response"]["parsed_body"]))
        response = await p.chat(request, call_for(recorded["model"]))
        u = response.usage
        got = (u.input_tokens, u.cached_input_tokens, u.cache_write_input_tokens, u.output_tokens)
        assert got == usage
        assert response.finish_reason == R.FINISH_REASON_STOP
    assert up.last.json["cache_control"] == {"ttl": "5m", "type": "ephemeral"}


async def test_http_400_body(wire_dir: Path, up: FakeAnthropic) -> None:
    name = "pydantic-ai__test_anthropic_explicit_effort_xhigh_unsupported_model_errors.yaml"
    (interaction,) = cassette(wire_dir / name)
    recorded = interaction["request"]["parsed_body"]
    request = chat_pb2.ChatRequest(
        messages=[user("What is 2+2?")],
        max_tokens=recorded["max_tokens"],
        passthrough=struct({"output_config": recorded["output_config"]}),
    )
    body = encode_request(request, recorded["model"]).body
    for key in ("messages", "output_config", "max_tokens", "model"):
        assert body[key] == recorded[key], key
    response = interaction["response"]
    up.script(Json(response["parsed_body"], status=response["status"]["code"]))
    with pytest.raises(UpstreamBadRequestError) as exc:
        await AnthropicProvider("a", up.base_url).chat(request, call_for(recorded["model"]))
    err = exc.value
    assert err.message == (
        "This model does not support effort level 'xhigh'. "
        "Supported levels: high, low, max, medium."
    )
    assert err.status == 400 and not err.retryable
    assert err.metadata == {"upstream_code": "invalid_request_error"}
    assert "req_011Ca7jT9AHpgXgdv8igm4z9" not in err.message


async def test_raw_sse_with_event_lines(wire_dir: Path, up: FakeAnthropic) -> None:
    (interaction,) = cassette(wire_dir / "llm-anthropic__test_prompt.yaml")
    recorded = orjson.loads(interaction["request"]["body"])
    request = chat_pb2.ChatRequest(
        messages=[user(recorded["messages"][0]["content"][0]["text"])],
        max_tokens=recorded["max_tokens"],
        temperature=recorded["temperature"],
    )
    assert encode_request(request, recorded["model"], stream=True).body == recorded
    response = interaction["response"]
    headers = {
        k: v[0] for k, v in response["headers"].items() if k.lower().startswith("anthropic-")
    }
    up.script(Raw(response["body"]["string"], headers=headers))
    frames = await stream(AnthropicProvider("a", up.base_url), request, recorded["model"])
    assert text_of(frames) == "- Captain\n- Scoop"
    end = frames[-1].end
    assert end.finish_reason == R.FINISH_REASON_STOP
    assert (end.usage.input_tokens, end.usage.output_tokens, end.usage.cached_input_tokens) == (
        17,
        10,
        0,
    )
