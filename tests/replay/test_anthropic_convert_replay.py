"""Recorded Anthropic traffic through the inbound converter and back.

Real Messages API bodies and streams (../shared/fixtures/provider-wire/anthropic) go through the
outbound adapter's decoder into contract messages/frames, then through ``anthropic_convert``
back to Anthropic JSON/SSE. What a client of ``/v1/messages`` gets must be what Anthropic itself
sent: same blocks, stop reason and usage (accumulated by the official SDK for streams). Recorded
requests go the other way (inbound decode, then the adapter's encoder) and must reproduce the
request Anthropic received.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from anthropic.lib.streaming._messages import accumulate_event
from switchboard.v1 import chat_pb2

from server.http_shim import anthropic_convert as ac
from server.http_shim.anthropic_stream import StreamEncoder
from tests.fixtures_dir import shared_fixtures_dir

pytestmark = pytest.mark.replay

decode_mod = pytest.importorskip("server.providers.anthropic.decode")
stream_mod = pytest.importorskip("server.providers.anthropic.stream")
encode_mod = pytest.importorskip("server.providers.anthropic.encode")


def wire_dir() -> Path:
    return shared_fixtures_dir() / "provider-wire" / "anthropic"


def cassette(name: str) -> list[dict[str, Any]]:
    return yaml.safe_load((wire_dir() / name).read_text())["interactions"]


def accumulate(events: list[dict[str, Any]]) -> Any:
    snapshot = None
    bufs: dict[int, bytes] = {}
    for data in events:
        if data["type"] in ("ping", "error"):
            continue
        snapshot = accumulate_event(event=data, current_snapshot=snapshot, json_bufs=bufs)  # type: ignore[arg-type]
    return snapshot


def recorded_streams() -> list[tuple[str, list[dict[str, Any]]]]:
    out = []
    for path in sorted(wire_dir().glob("*.chunks.txt")):
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        out.append((path.name, [orjson.loads(ln) for ln in lines]))
    for interaction in cassette("llm-anthropic__test_prompt.yaml"):
        text = interaction["response"]["body"]["string"]
        events = []
        for chunk in text.split("\n\n"):
            data = [ln[5:].strip() for ln in chunk.splitlines() if ln.startswith("data:")]
            if data:
                events.append(orjson.loads("".join(data)))
        out.append(("llm-anthropic__test_prompt.yaml", events))
    return out


def reencode(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Recorded events → adapter decoder → contract frames → our encoder → parsed events."""
    decoder = stream_mod.StreamDecoder("anthropic")
    encoder = StreamEncoder("anthropic/claude")
    start = chat_pb2.StreamChatResponse()
    start.start.id = "req1"
    start.start.model = "anthropic/claude"
    sse = encoder.encode(start)
    for data in events:
        for frame in decoder.feed(data["type"], data):
            sse += encoder.encode(frame)
    sse += encoder.encode(decoder.end())
    out = []
    for chunk in sse.split(b"\n\n"):
        if chunk:
            name, data_line = chunk.split(b"\n")
            parsed = orjson.loads(data_line[6:])
            assert name == b"event: " + parsed["type"].encode()
            out.append(parsed)
    return out


def blocks(message: Any) -> list[dict[str, Any]]:
    out = []
    for block in message.content:
        if block.type == "text":
            out.append({"type": "text", "text": block.text})
        elif block.type == "tool_use":
            out.append(
                {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
            )
        elif block.type == "thinking":
            out.append({"type": "thinking", "thinking": block.thinking, "sig": block.signature})
    return out


def test_recorded_streams_survive_the_round_trip() -> None:
    streams = recorded_streams()
    assert len(streams) >= 4
    for name, events in streams:
        original = accumulate(events)
        ours = accumulate(reencode(events))
        assert blocks(ours) == blocks(original), name
        assert ours.stop_reason == original.stop_reason, name
        for field in ("input_tokens", "output_tokens", "cache_read_input_tokens"):
            assert getattr(ours.usage, field) == (getattr(original.usage, field) or 0), (
                name,
                field,
            )


def recorded_responses() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for name in (
        "vercel-ai__anthropic-text.json",
        "vercel-ai__anthropic-json-output-format.1.json",
    ):
        out.append((name, orjson.loads((wire_dir() / name).read_bytes())))
    live = orjson.loads(
        (wire_dir() / "vercel-ai__issue-14707-claude-opus-4-7-temperature-live.json").read_bytes()
    )
    out.append(("issue-14707", live["calls"][0]["response"]["body"]))
    for name in (
        "pydantic-ai__test_multiple_parallel_tool_calls.yaml",
        "pydantic-ai__test_anthropic_cache_real_api.yaml",
    ):
        for i, interaction in enumerate(cassette(name)):
            body = interaction["response"].get("parsed_body")
            if isinstance(body, dict) and body.get("type") == "message":
                out.append((f"{name}[{i}]", body))
    return out


def test_recorded_responses_survive_the_round_trip() -> None:
    responses = recorded_responses()
    assert len(responses) >= 6
    for name, body in responses:
        response = decode_mod.decode_response(body)
        response.id = "req1"
        response.model = "anthropic/claude"
        ours = ac.response_json(response)
        assert ours["content"] == [
            {k: v for k, v in block.items() if k != "citations"} for block in body["content"]
        ], name
        assert ours["stop_reason"] == (
            "end_turn" if body["stop_reason"] == "stop_sequence" else body["stop_reason"]
        ), name
        for field in (
            "input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
        ):
            assert ours["usage"][field] == body["usage"][field], (name, field)


def _normalize(value: Any, top: bool = True) -> Any:
    """A request as Anthropic sees it: string content as one text block, no ``cache_control``
    below the top level (accepted and ignored by the gateway), no default ``is_error: false``."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if (k == "cache_control" and not top) or (k == "is_error" and v is False):
                continue
            if k == "content" and isinstance(v, str) and value.get("role"):
                v = [{"type": "text", "text": v}]
            out[k] = _normalize(v, top=False)
        return out
    if isinstance(value, list):
        return [_normalize(v, top=False) for v in value]
    return value


def recorded_requests() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for name in (
        "pydantic-ai__test_multiple_parallel_tool_calls.yaml",
        "pydantic-ai__test_anthropic_cache_real_api.yaml",
    ):
        for i, interaction in enumerate(cassette(name)):
            body = interaction["request"].get("parsed_body")
            if isinstance(body, dict) and "messages" in body:
                out.append((f"{name}[{i}]", body))
    for i, interaction in enumerate(cassette("llm-anthropic__test_prompt.yaml")):
        out.append((f"llm-anthropic[{i}]", orjson.loads(interaction["request"]["body"])))
    return out


def test_recorded_requests_reach_anthropic_unchanged() -> None:
    requests = recorded_requests()
    assert len(requests) >= 4
    for name, body in requests:
        request, stream = ac.decode_request(orjson.dumps(body))
        assert stream is bool(body.get("stream")), name
        encoded = encode_mod.encode_request(request, body["model"], stream=stream).body
        expected = _normalize(body)
        got = _normalize(encoded)
        for key in ("messages", "system", "tools", "tool_choice", "max_tokens", "temperature"):
            assert got.get(key) == expected.get(key), (name, key)
        assert got.get("cache_control") == expected.get("cache_control"), name
