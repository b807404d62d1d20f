"""Replays every recording in ../shared/fixtures/provider-wire/gemini/ through GeminiProvider.

Each recorded response is served from a loopback HTTP server (FakeGemini answering with the
recorded bytes via ``Json`` / ``Raw``); the adapter's contract output is checked against the
recording, and where the recording holds the request, encoding the same conversation must give
the recorded request shape. Formats (SOURCES.md): vercel ``*.chunks.txt`` lines get their
``data: …\\r\\n\\r\\n`` framing back; pydantic-ai cassettes keep JSON as ``parsed_body`` and SSE
as ``body.string``.

Known differences from the recorded requests, asserted explicitly below rather than skipped:
- pydantic-ai sends tool results as ``{"return_value": …}``; the adapter uses the documented
  ``{"output": …}`` / ``{"error": …}`` keys.
- pydantic-ai declares tool schemas as OpenAPI ``parameters`` (or ``parameters_json_schema``);
  the adapter always sends ``parametersJsonSchema``.
- The cached-content recording also creates and deletes a ``cachedContents`` resource: cache
  management is not an adapter feature (a cache is named through the ``cached_content``
  passthrough), so only its generateContent calls are replayed.
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

from server.core.errors import UpstreamBadRequestError
from server.providers.base import UpstreamCall
from server.providers.gemini import GeminiProvider
from server.providers.gemini.encode import encode_request
from server.providers.http_client import close_http_client
from tests.fakes.gemini_upstream import FakeGemini, Json, Raw
from tests.fixtures_dir import shared_fixtures_dir

pytestmark = pytest.mark.replay

R = types_pb2
KEY = "AIzaSyReplayKey-0123456789abcdefghijk"

REPLAYED = {
    "vercel-ai__google-text.json": "test_text_json_signature_not_text",
    "vercel-ai__google-text.chunks.txt": "test_text_stream_signature_not_text",
    "vercel-ai__issue-8943-gemini-2.5-flash-error.json": "test_http_400_body",
    "pydantic-ai__test_google_model_iter_stream.yaml": "test_streamed_function_calls",
    "pydantic-ai__test_google_instructions_only_with_tool_calls.yaml": "test_parallel_calls",
    "pydantic-ai__test_google_model_max_tokens.yaml": "test_max_tokens",
    "pydantic-ai__test_google_native_output.yaml": "test_native_output",
    "pydantic-ai__test_google_model_cached_content.yaml": "test_cached_content",
}


@pytest.fixture(scope="module")
def wire_dir() -> Path:
    return shared_fixtures_dir() / "provider-wire" / "gemini"


@pytest.fixture(autouse=True)
async def _http_client() -> AsyncIterator[None]:
    yield
    await close_http_client()


@pytest.fixture
async def up() -> AsyncIterator[FakeGemini]:
    async with FakeGemini() as fake:
        yield fake


def chunks_sse(path: Path) -> bytes:
    """A vercel chunks.txt file with Gemini's ``?alt=sse`` framing put back."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return "".join(f"data: {line}\r\n\r\n" for line in lines).encode()


def cassette(path: Path) -> list[dict[str, Any]]:
    return yaml.safe_load(path.read_text())["interactions"]


def struct(d: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(d)
    return s


def message(role: int, *parts: types_pb2.ContentPart) -> types_pb2.Message:
    return types_pb2.Message(role=role, content=list(parts))  # type: ignore[arg-type]


def text(t: str) -> types_pb2.ContentPart:
    return types_pb2.ContentPart(text=t)


def call_for(model: str) -> UpstreamCall:
    return UpstreamCall(model=model, api_key=KEY, timeout=10.0)


def model_of(uri: str) -> str:
    return uri.rpartition("/models/")[2].partition(":")[0]


def frames_text(frames: list[Any]) -> str:
    return "".join(f.text.text for f in frames if f.WhichOneof("frame") == "text")


def normalise_contents(contents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Recorded contents with pydantic-ai's ``{"return_value": x}`` as the adapter's
    ``{"output": x}`` (the one documented difference)."""
    out = orjson.loads(orjson.dumps(contents))
    for content in out:
        for part in content["parts"]:
            response = part.get("functionResponse")
            if response is not None:
                assert set(response["response"]) == {"return_value"}
                response["response"] = {"output": response["response"]["return_value"]}
    return out


def test_every_recording_is_replayed(wire_dir: Path) -> None:
    present = {p.name for p in wire_dir.iterdir() if p.is_file()}
    assert present == set(REPLAYED), (
        f"unreplayed: {sorted(present - set(REPLAYED))}, missing: {sorted(set(REPLAYED) - present)}"
    )
    for test in REPLAYED.values():
        assert callable(globals()[test])


STRAWBERRY = chat_pb2.ChatRequest(messages=[message(R.ROLE_USER, text("How many r's?"))])


async def test_text_json_signature_not_text(wire_dir: Path, up: FakeGemini) -> None:
    body = orjson.loads((wire_dir / "vercel-ai__google-text.json").read_bytes())
    up.script(Json(body))
    p = GeminiProvider("g", up.base_url)
    response = await p.chat(STRAWBERRY, call_for("gemini-3-pro-preview"))
    parts = response.message.content
    assert [part.WhichOneof("part") for part in parts] == ["text", "reasoning"]
    assert parts[0].text == (
        "There are **3** r's in strawberry.\n\nHere is the breakdown: st**r**awbe**rr**y."
    )
    signature = body["candidates"][0]["content"]["parts"][0]["thoughtSignature"]
    assert parts[1].reasoning.signature == signature and not parts[1].reasoning.text
    assert response.finish_reason == R.FINISH_REASON_STOP
    u = response.usage
    assert (u.input_tokens, u.output_tokens, u.reasoning_tokens) == (9, 28 + 244, 244)
    # Sent back on the next turn, the signature rides on the text part it came with.
    follow = chat_pb2.ChatRequest()
    follow.CopyFrom(STRAWBERRY)
    follow.messages.append(response.message)
    assert encode_request(follow)["contents"][1] == {
        "role": "model",
        "parts": [{"text": parts[0].text, "thoughtSignature": signature}],
    }


async def test_text_stream_signature_not_text(wire_dir: Path, up: FakeGemini) -> None:
    up.script(Raw(chunks_sse(wire_dir / "vercel-ai__google-text.chunks.txt")))
    p = GeminiProvider("g", up.base_url)
    frames = [f async for f in p.stream(STRAWBERRY, call_for("gemini-3-pro-preview"))]
    assert frames_text(frames) == 'There are **3** "r"s in strawberry.\n\nst**r**awbe**rr**y'
    reasoning = [f.reasoning for f in frames if f.WhichOneof("frame") == "reasoning"]
    assert len(reasoning) == 1 and reasoning[0].signature.startswith("EqsFCqgFAb4")
    assert not reasoning[0].text
    end = frames[-1].end
    assert end.finish_reason == R.FINISH_REASON_STOP
    assert (end.usage.input_tokens, end.usage.output_tokens) == (9, 23 + 185)


async def test_http_400_body(wire_dir: Path, up: FakeGemini) -> None:
    body = orjson.loads(
        (wire_dir / "vercel-ai__issue-8943-gemini-2.5-flash-error.json").read_bytes()
    )
    request = chat_pb2.ChatRequest(
        messages=[message(R.ROLE_USER, text("hi"))], presence_penalty=0.5, frequency_penalty=0.5
    )
    # The penalties are passed on; this model rejects them, as recorded.
    config = encode_request(request)["generationConfig"]
    assert (config["presencePenalty"], config["frequencyPenalty"]) == (0.5, 0.5)
    up.script(Json(body, status=400))
    with pytest.raises(UpstreamBadRequestError) as exc:
        await GeminiProvider("g", up.base_url).chat(request, call_for("gemini-2.5-flash"))
    assert exc.value.message == "Penalty is not enabled for models/gemini-2.5-flash"
    assert exc.value.metadata == {"upstream_code": "INVALID_ARGUMENT"}
    assert exc.value.status == 400 and not exc.value.retryable


def _tools_from(declarations: list[dict[str, Any]]) -> list[types_pb2.Tool]:
    tools = []
    for d in declarations:
        schema = d.get("parameters_json_schema")
        if schema is None:
            # OpenAPI-style recorded schema → JSON Schema (lowercase type names).
            schema = orjson.loads(orjson.dumps(d["parameters"]).lower())
        tools.append(
            types_pb2.Tool(name=d["name"], description=d["description"], parameters=struct(schema))
        )
    return tools


async def test_streamed_function_calls(wire_dir: Path, up: FakeGemini) -> None:
    interactions = cassette(wire_dir / "pydantic-ai__test_google_model_iter_stream.yaml")
    first = interactions[0]["request"]["parsed_body"]
    request = chat_pb2.ChatRequest(
        messages=[
            message(R.ROLE_SYSTEM, text(first["systemInstruction"]["parts"][0]["text"])),
            message(R.ROLE_USER, text(first["contents"][0]["parts"][0]["text"])),
        ],
        tools=_tools_from(first["tools"][0]["functionDeclarations"]),
    )
    p = GeminiProvider("g", up.base_url)
    expected_calls = [
        ("get_capital", {"country": "France"}),
        ("get_temperature", {"city": "Paris"}),
    ]
    results = ["Paris", "30°C"]
    for turn, interaction in enumerate(interactions):
        recorded = interaction["request"]["parsed_body"]
        body = encode_request(request)
        assert body["systemInstruction"]["parts"] == recorded["systemInstruction"]["parts"]
        declared = body["tools"][0]["functionDeclarations"]
        assert [(d["name"], d["description"]) for d in declared] == [
            (d["name"], d["description"]) for d in recorded["tools"][0]["functionDeclarations"]
        ]
        # Ids in the recorded request are pydantic-ai's own; compare everything else.
        got = orjson.loads(orjson.dumps(body["contents"]))
        want = normalise_contents(recorded["contents"])
        for contents in (got, want):
            for content in contents:
                for part in content["parts"]:
                    for key in ("functionCall", "functionResponse"):
                        part.get(key, {}).pop("id", None)
        assert got == want

        up.script(Raw(interaction["response"]["body"]["string"]))
        frames = [
            f async for f in p.stream(request, call_for(model_of(interaction["request"]["uri"])))
        ]
        assert "/models/gemini-2.0-flash:streamGenerateContent" in up.last.path
        end = frames[-1].end
        if turn < 2:
            (frame,) = [f for f in frames if f.WhichOneof("frame") == "tool_call"]
            delta = frame.tool_call
            name, args = expected_calls[turn]
            assert (delta.index, delta.name, orjson.loads(delta.arguments)) == (0, name, args)
            assert delta.id.startswith("call_")
            assert end.finish_reason == R.FINISH_REASON_TOOL_CALLS
            request.messages.append(
                message(
                    R.ROLE_ASSISTANT,
                    types_pb2.ContentPart(
                        tool_call=types_pb2.ToolCall(
                            id=delta.id, name=delta.name, arguments=delta.arguments
                        )
                    ),
                )
            )
            request.messages.append(
                message(
                    R.ROLE_TOOL,
                    types_pb2.ContentPart(
                        tool_result=types_pb2.ToolResult(
                            tool_call_id=delta.id, content=results[turn]
                        )
                    ),
                )
            )
        else:
            assert frames_text(frames) == "The temperature in Paris is 30°C.\n"
            assert end.finish_reason == R.FINISH_REASON_STOP
        usage = [(52, 5), (64, 5), (79, 12)][turn]
        assert (end.usage.input_tokens, end.usage.output_tokens) == usage


async def test_parallel_calls(wire_dir: Path, up: FakeGemini) -> None:
    interactions = cassette(
        wire_dir / "pydantic-ai__test_google_instructions_only_with_tool_calls.yaml"
    )
    first = interactions[0]["request"]["parsed_body"]
    request = chat_pb2.ChatRequest(
        messages=[
            message(R.ROLE_SYSTEM, text(first["systemInstruction"]["parts"][0]["text"])),
            message(R.ROLE_USER, text("")),
        ],
        tools=_tools_from(first["tools"][0]["functionDeclarations"]),
        tool_choice=types_pb2.ToolChoice(mode=R.TOOL_CHOICE_MODE_REQUIRED),
    )
    body = encode_request(request)
    # pydantic-ai lists every tool in allowedFunctionNames; ANY alone allows the same set.
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    assert first["toolConfig"]["functionCallingConfig"]["mode"] == "ANY"
    assert set(first["toolConfig"]["functionCallingConfig"]["allowedFunctionNames"]) == {
        t.name for t in request.tools
    }
    assert [d["parametersJsonSchema"] for d in body["tools"][0]["functionDeclarations"]] == [
        d["parameters_json_schema"] for d in first["tools"][0]["functionDeclarations"]
    ]
    p = GeminiProvider("g", up.base_url)
    topics = iter(["cars", "penguins", "cars", "penguins", "cars", "penguins"])
    for turn, interaction in enumerate(interactions):
        recorded = interaction["request"]["parsed_body"]
        got = encode_request(request)["contents"]
        want = normalise_contents(recorded["contents"])
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert g["role"] == w["role"]
            assert [sorted(part) for part in g["parts"]] == [sorted(part) for part in w["parts"]]
            for gp, wp in zip(g["parts"], w["parts"], strict=True):
                for key in ("functionCall", "functionResponse"):
                    if key in wp:
                        assert gp[key]["name"] == wp[key]["name"]
                        assert gp[key].get("args") == wp[key].get("args")
                        assert gp[key].get("response") == wp[key].get("response")
                if "thoughtSignature" in wp:
                    # pydantic-ai re-encodes signatures as URL-safe base64; the adapter sends
                    # back exactly what Gemini gave.
                    assert (
                        gp["thoughtSignature"].replace("+", "-").replace("/", "_")
                        == (wp["thoughtSignature"])
                    )
        answer = interaction["response"]["parsed_body"]
        up.script(Json(answer))
        response = await p.chat(request, call_for(model_of(interaction["request"]["uri"])))
        calls = [part.tool_call for part in response.message.content]
        recorded_parts = answer["candidates"][0]["content"]["parts"]
        assert [c.name for c in calls] == [part["functionCall"]["name"] for part in recorded_parts]
        assert [c.signature for c in calls] == [
            part.get("thoughtSignature", "") for part in recorded_parts
        ]
        assert len({c.id for c in calls}) == len(calls)
        assert response.finish_reason == R.FINISH_REASON_TOOL_CALLS
        meta = answer["usageMetadata"]
        assert response.usage.input_tokens == meta["promptTokenCount"]
        assert response.usage.output_tokens == (
            meta["candidatesTokenCount"] + meta["thoughtsTokenCount"]
        )
        if turn == 0:
            assert len(calls) == 3
        if turn == len(interactions) - 1:
            assert calls[0].name == "final_result"
            assert len(orjson.loads(calls[0].arguments)["response"]) == 3
            break
        request.messages.append(response.message)
        for c in calls:
            request.messages.append(
                message(
                    R.ROLE_TOOL,
                    types_pb2.ContentPart(
                        tool_result=types_pb2.ToolResult(tool_call_id=c.id, content=next(topics))
                    ),
                )
            )


async def test_max_tokens(wire_dir: Path, up: FakeGemini) -> None:
    (interaction,) = cassette(wire_dir / "pydantic-ai__test_google_model_max_tokens.yaml")
    recorded = interaction["request"]["parsed_body"]
    request = chat_pb2.ChatRequest(
        messages=[
            message(R.ROLE_SYSTEM, text("You are a helpful chatbot.")),
            message(R.ROLE_USER, text("What is the capital of France?")),
        ],
        max_tokens=5,
        passthrough=struct({"thinking_config": {"thinking_budget": 0}}),
    )
    body = encode_request(request)
    assert body["contents"] == recorded["contents"]
    assert body["systemInstruction"]["parts"] == recorded["systemInstruction"]["parts"]
    config = dict(recorded["generationConfig"])
    # responseModalities ["TEXT"] is the API default; the adapter does not send it.
    assert config.pop("responseModalities") == ["TEXT"]
    assert body["generationConfig"] == {
        "maxOutputTokens": 5,
        "thinkingConfig": {"thinking_budget": 0},
    }
    assert config == {"maxOutputTokens": 5, "thinkingConfig": {"thinking_budget": 0}}
    up.script(Json(interaction["response"]["parsed_body"]))
    response = await GeminiProvider("g", up.base_url).chat(
        request, call_for(model_of(interaction["request"]["uri"]))
    )
    assert [p.text for p in response.message.content] == ["The capital of France is"]
    assert response.finish_reason == R.FINISH_REASON_LENGTH
    assert (response.usage.input_tokens, response.usage.output_tokens) == (15, 5)


async def test_native_output(wire_dir: Path, up: FakeGemini) -> None:
    (interaction,) = cassette(wire_dir / "pydantic-ai__test_google_native_output.yaml")
    recorded = interaction["request"]["parsed_body"]
    schema = recorded["generationConfig"]["responseJsonSchema"]
    request = chat_pb2.ChatRequest(
        messages=[message(R.ROLE_USER, text("What is the largest city in Mexico?"))],
        response_format=types_pb2.ResponseFormat(
            type=R.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
            json_schema=types_pb2.JsonSchema(name="CityLocation", schema=struct(schema)),
        ),
    )
    body = encode_request(request)
    assert body["contents"] == recorded["contents"]
    assert body["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseJsonSchema": schema,
    }
    up.script(Json(interaction["response"]["parsed_body"]))
    response = await GeminiProvider("g", up.base_url).chat(
        request, call_for(model_of(interaction["request"]["uri"]))
    )
    assert orjson.loads(response.message.content[0].text) == {
        "city": "Mexico City",
        "country": "Mexico",
    }
    assert response.finish_reason == R.FINISH_REASON_STOP
    assert (response.usage.input_tokens, response.usage.output_tokens) == (8, 20)


async def test_cached_content(wire_dir: Path, up: FakeGemini) -> None:
    interactions = cassette(wire_dir / "pydantic-ai__test_google_model_cached_content.yaml")
    generate = [i for i in interactions if i["request"]["uri"].endswith(":generateContent")]
    others = [
        i["request"]["uri"].rpartition("/v1beta/")[2] for i in interactions if i not in generate
    ]
    # Explicitly not replayed: creating and deleting the cache (not an adapter feature).
    assert [o.split("/")[0] for o in others] == ["cachedContents", "cachedContents"]
    assert len(generate) == 2
    p = GeminiProvider("g", up.base_url)
    for interaction, thoughts in zip(generate, (42, 51), strict=True):
        recorded = interaction["request"]["parsed_body"]
        request = chat_pb2.ChatRequest(
            messages=[message(R.ROLE_USER, text(recorded["contents"][0]["parts"][0]["text"]))],
            passthrough=struct({"cached_content": recorded["cachedContent"]}),
        )
        body = encode_request(request)
        assert body["cachedContent"] == recorded["cachedContent"]
        assert body["contents"] == recorded["contents"]
        up.script(Json(interaction["response"]["parsed_body"]))
        response = await p.chat(request, call_for(model_of(interaction["request"]["uri"])))
        assert [part.text for part in response.message.content] == ["Paris."]
        u = response.usage
        assert (u.input_tokens, u.cached_input_tokens) == (3520, 3512)
        assert (u.output_tokens, u.reasoning_tokens) == (2 + thoughts, thoughts)
        assert up.last.json["cachedContent"] == recorded["cachedContent"]
