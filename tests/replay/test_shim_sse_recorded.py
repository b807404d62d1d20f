"""Our chat.completion.chunk framing against streams recorded from the real OpenAI API.

Each recorded stream (../shared/fixtures/provider-wire/openai) is read back into contract frames
the way an adapter would, re-encoded by the shim, and compared chunk by chunk with the original:
same chunk count, same deltas, finish reasons, ``usage: null`` placement and usage numbers. Only
per-response identity (id, created, model, system_fingerprint, service_tier, obfuscation) and
usage fields the contract does not carry (audio and prediction token counts) are left out.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import yaml
from switchboard.v1 import chat_pb2, types_pb2

from server.http_shim.openai_stream import ChunkEncoder
from tests.fixtures_dir import shared_fixtures_dir

pytestmark = pytest.mark.replay

_IDENTITY = {"id", "created", "model", "system_fingerprint", "service_tier", "obfuscation"}
_FINISH = {
    "stop": types_pb2.FINISH_REASON_STOP,
    "length": types_pb2.FINISH_REASON_LENGTH,
    "tool_calls": types_pb2.FINISH_REASON_TOOL_CALLS,
    "content_filter": types_pb2.FINISH_REASON_CONTENT_FILTER,
}


def _sse_payloads(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            out.append(orjson.loads(line.removeprefix("data: ")))
    return out


def recorded_streams() -> list[tuple[str, list[dict[str, Any]]]]:
    wire = shared_fixtures_dir() / "provider-wire" / "openai"
    streams = []
    lines = (wire / "vercel-ai__openai-text.chunks.txt").read_text().splitlines()
    streams.append(("openai-text", [orjson.loads(line) for line in lines if line.strip()]))
    for name in (
        "pydantic-ai__test_temporal_complex_agent_run.yaml",
        "pydantic-ai__test_run_stream_sync_streams_real_model.yaml",
    ):
        cassette = yaml.safe_load((wire / name).read_text())
        for number, interaction in enumerate(cassette["interactions"]):
            body = interaction["response"]["body"].get("string", "")
            if isinstance(body, str) and body.startswith("data: "):
                streams.append((f"{name}[{number}]", _sse_payloads(body)))
    assert len(streams) >= 4
    return streams


def to_frames(chunks: list[dict[str, Any]]) -> list[chat_pb2.StreamChatResponse]:
    """What an adapter makes of a recorded stream: deltas, then one end frame."""
    frames = []
    end = chat_pb2.StreamEnd()
    for chunk in chunks:
        for choice in chunk["choices"]:
            delta = choice["delta"]
            if delta.get("content"):
                frames.append(
                    chat_pb2.StreamChatResponse(text=chat_pb2.TextDelta(text=delta["content"]))
                )
            for call in delta.get("tool_calls") or ():
                fn = call.get("function", {})
                frames.append(
                    chat_pb2.StreamChatResponse(
                        tool_call=chat_pb2.ToolCallDelta(
                            index=call["index"],
                            id=call.get("id", ""),
                            name=fn.get("name", ""),
                            arguments=fn.get("arguments", ""),
                        )
                    )
                )
            if choice.get("finish_reason"):
                end.finish_reason = _FINISH[choice["finish_reason"]]  # type: ignore[assignment]
        usage = chunk.get("usage")
        if usage:
            end.usage.input_tokens = usage["prompt_tokens"]
            end.usage.output_tokens = usage["completion_tokens"]
            end.usage.cached_input_tokens = usage["prompt_tokens_details"]["cached_tokens"]
            end.usage.reasoning_tokens = usage["completion_tokens_details"]["reasoning_tokens"]
    frames.append(chat_pb2.StreamChatResponse(end=end))
    return frames


def encode(frames: list[chat_pb2.StreamChatResponse]) -> list[dict[str, Any]]:
    start = chat_pb2.StreamStart(id="r1", model="m", created=1)
    encoder = ChunkEncoder(start, include_usage=True)
    first = frames[0].WhichOneof("frame")
    out = encoder.role(content_null=first == "tool_call")
    for frame in frames:
        out += encoder.end(frame.end) if frame.HasField("end") else encoder.frame(frame)
    events = out.decode().split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    return [orjson.loads(e.removeprefix("data: ")) for e in events[:-2]]


def normalize(chunk: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in chunk.items() if k not in _IDENTITY}
    # OpenAI sends `refusal: null` in some role chunks and not in others; it means the same.
    out["choices"] = [
        {
            **choice,
            "delta": {
                k: v for k, v in choice["delta"].items() if not (k == "refusal" and v is None)
            },
        }
        for choice in out["choices"]
    ]
    usage = out.get("usage")
    if usage:
        out["usage"] = {
            "prompt_tokens": usage["prompt_tokens"],
            "completion_tokens": usage["completion_tokens"],
            "total_tokens": usage["total_tokens"],
            "prompt_tokens_details": {
                "cached_tokens": usage["prompt_tokens_details"]["cached_tokens"]
            },
            "completion_tokens_details": {
                "reasoning_tokens": usage["completion_tokens_details"]["reasoning_tokens"]
            },
        }
    return out


def _split_role(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Some recorded streams put the role and the first tool call in one chunk; the shim always
    # sends the role chunk on its own (as OpenAI's other recordings do). Same content either way.
    out = []
    for chunk in chunks:
        delta = chunk["choices"][0]["delta"] if chunk["choices"] else {}
        if "role" in delta and delta.get("tool_calls"):
            role = {k: delta[k] for k in ("role", "content", "refusal") if k in delta}
            rest = {k: v for k, v in delta.items() if k not in role}
            out.append({**chunk, "choices": [{**chunk["choices"][0], "delta": role}]})
            out.append({**chunk, "choices": [{**chunk["choices"][0], "delta": rest}]})
        else:
            out.append(chunk)
    return out


def test_reencoded_streams_match_the_recordings() -> None:
    for name, recorded in recorded_streams():
        encoded = encode(to_frames(recorded))
        # Switchboard's one addition: the request's cost next to the token counts.
        assert encoded[-1]["usage"]["cost_usd"] == 0.0
        ours = [normalize(c) for c in encoded]
        expected = [normalize(c) for c in _split_role(recorded)]
        assert ours == expected, name
