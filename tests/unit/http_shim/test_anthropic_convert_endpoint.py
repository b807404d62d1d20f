"""``POST /v1/messages`` driven through ASGI over a real Gateway and a scripted provider.

The paths the SDK end-to-end tests cannot reach: a gateway bug (never a trace, Anthropic's
shape), a provider stream that ends without its final frame, an oversized body, and what the
core receives for fields it does not model.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest
from switchboard.v1 import chat_pb2, types_pb2

from tests.unit.http_shim.support import (
    APP_KEY,
    MODEL,
    AsgiClient,
    Raise,
    ScriptedProvider,
    end_frame,
    text_frame,
)

PATH = "/v1/messages"


def payload(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "hi"}],
    }
    body.update(extra)
    return body


def sse(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in body.split(b"\n\n")[:-1]:
        name, data = block.split(b"\n")
        assert name.startswith(b"event: ") and data.startswith(b"data: ")
        out.append((name[7:].decode(), orjson.loads(data[6:])))
    return out


def answer(text: str) -> chat_pb2.ChatResponse:
    response = chat_pb2.ChatResponse(finish_reason=types_pb2.FINISH_REASON_STOP)
    response.message.role = types_pb2.ROLE_ASSISTANT
    response.message.content.add().text = text
    response.usage.input_tokens = 4
    response.usage.output_tokens = 1
    return response


async def test_x_api_key_and_passthrough(client: AsgiClient, provider: ScriptedProvider) -> None:
    provider.chat_answers.append(answer("hello"))
    thinking = {"type": "enabled", "budget_tokens": 2048}
    response = await client.request(
        "POST",
        PATH,
        body=payload(thinking=thinking, top_k=5),
        key=None,
        headers={"x-api-key": APP_KEY, "anthropic-version": "2023-06-01"},
    )
    assert response.status == 200
    out = response.json()
    assert out["content"] == [{"type": "text", "text": "hello"}]
    assert out["id"] == f"msg_{response.headers['request-id']}"
    assert response.headers["x-switchboard-provider"] == "script"
    sent = provider.requests[0]
    assert sent.max_tokens == 50
    assert dict(sent.passthrough["thinking"]) == thinking
    assert sent.passthrough["top_k"] == 5


async def test_client_request_id_is_kept(client: AsgiClient, provider: ScriptedProvider) -> None:
    provider.chat_answers.append(answer("x"))
    response = await client.request(
        "POST", PATH, body=payload(), headers={"x-request-id": "trace-123"}
    )
    assert response.headers["request-id"] == "trace-123"
    assert response.json()["id"] == "msg_trace-123"


async def test_gateway_bug_is_a_generic_api_error(
    client: AsgiClient, provider: ScriptedProvider, caplog: pytest.LogCaptureFixture
) -> None:
    provider.chat_answers.append(RuntimeError("secret internal detail"))
    with caplog.at_level(logging.ERROR):
        response = await client.request("POST", PATH, body=payload())
    assert response.status == 500
    body = response.json()
    assert body["type"] == "error"
    assert body["error"] == {"type": "api_error", "message": "Internal error in the gateway."}
    assert "secret internal detail" not in response.body.decode()
    # The log keeps the detail (with the request id) for the operator.
    logged = [r for r in caplog.records if r.exc_info and r.exc_info[1] is not None]
    assert any(str(r.exc_info[1]) == "secret internal detail" for r in logged)  # type: ignore[index]
    assert any(response.headers["request-id"] in r.getMessage() for r in logged)


async def test_gateway_bug_mid_stream_is_an_error_event(
    client: AsgiClient, provider: ScriptedProvider
) -> None:
    provider.streams.append([text_frame("partial"), Raise(RuntimeError("boom"))])
    response = await client.request("POST", PATH, body=payload(stream=True))
    assert response.status == 200
    assert response.complete
    events = sse(response.body)
    names = [name for name, _ in events]
    assert names == ["message_start", "content_block_start", "content_block_delta", "error"]
    assert events[-1][1] == {
        "type": "error",
        "error": {"type": "api_error", "message": "Internal error in the gateway."},
    }


async def test_stream_without_final_frame_ends_with_error(
    client: AsgiClient, provider: ScriptedProvider
) -> None:
    provider.streams.append([text_frame("a"), text_frame("b")])
    response = await client.request("POST", PATH, body=payload(stream=True))
    assert response.status == 200
    events = sse(response.body)
    assert events[-1][0] == "error"
    assert "message_stop" not in [name for name, _ in events]
    assert [d["delta"]["text"] for n, d in events if n == "content_block_delta"] == ["a", "b"]


async def test_complete_stream(client: AsgiClient, provider: ScriptedProvider) -> None:
    provider.streams.append([text_frame("Hi"), text_frame(" there"), end_frame()])
    response = await client.request("POST", PATH, body=payload(stream=True))
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse(response.body)
    assert [n for n, _ in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    # end_frame reports 3 prompt tokens of which 1 cached: Anthropic's input excludes it.
    assert events[-2][1]["usage"]["input_tokens"] == 2
    assert events[-2][1]["usage"]["cache_read_input_tokens"] == 1


async def test_oversized_body_is_request_too_large(client: AsgiClient) -> None:
    response = await client.request(
        "POST", PATH, body=payload(), headers={"content-length": str(40 * 1024 * 1024)}
    )
    assert response.status == 413
    assert response.json()["error"]["type"] == "request_too_large"


async def test_auth_comes_before_validation(client: AsgiClient) -> None:
    response = await client.request("POST", PATH, body={"nonsense": True}, key="sb-wrong")
    assert response.status == 401
    assert response.json()["error"]["type"] == "authentication_error"
    response = await client.request("POST", PATH, body={"model": MODEL, "messages": []})
    assert response.status == 400
    assert "max_tokens" in response.json()["error"]["message"]


async def test_core_validation_errors_keep_anthropic_shape(client: AsgiClient) -> None:
    response = await client.request("POST", PATH, body=payload(temperature=5))
    assert response.status == 400
    body = response.json()
    assert body["error"]["type"] == "invalid_request_error"
    assert "temperature" in body["error"]["message"]
    assert body["request_id"] == response.headers["request-id"]
