"""POST /v1/chat/completions through the ASGI app: JSON, SSE framing, headers, errors."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from switchboard.v1 import chat_pb2, types_pb2

from server.core.errors import (
    UpstreamBadRequestError,
    UpstreamRateLimitedError,
    UpstreamServerError,
    UpstreamStreamError,
)
from tests.unit.http_shim.support import (
    MASTER,
    MODEL,
    AsgiClient,
    Raise,
    ScriptedProvider,
    Wait,
    end_frame,
    text_frame,
    tool_frame,
)


def body(**extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **extra}


def answer(text: str = "Hello there") -> chat_pb2.ChatResponse:
    return chat_pb2.ChatResponse(
        message=types_pb2.Message(
            role=types_pb2.ROLE_ASSISTANT, content=[types_pb2.ContentPart(text=text)]
        ),
        finish_reason=types_pb2.FINISH_REASON_STOP,
        usage=types_pb2.Usage(input_tokens=5, output_tokens=2),
    )


async def test_completion_json_and_headers(client: AsgiClient, provider: ScriptedProvider) -> None:
    provider.chat_answers.append(answer())
    r = await client.chat(body(), headers={"x-request-id": "my-req-1"})
    assert r.status == 200 and r.complete
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-request-id"] == "my-req-1"
    assert r.headers["x-switchboard-provider"] == "script"
    assert r.headers["x-switchboard-model"] == "m1"
    assert r.headers["x-switchboard-attempts"] == "1"
    # No price is known for the scripted deployment.
    assert r.headers["x-switchboard-cost-usd"] == "0"
    assert int(r.headers["content-length"]) == len(r.body)
    out = r.json()
    assert out["id"] == "chatcmpl-my-req-1"
    assert out["object"] == "chat.completion"
    assert out["model"] == MODEL
    assert out["choices"][0]["message"]["content"] == "Hello there"
    assert out["usage"]["total_tokens"] == 7
    # The provider got the converted request, the upstream model and the pool's key.
    assert provider.requests[0].messages[0].content[0].text == "hi"
    assert provider.calls[0].model == "m1"


async def test_master_key_works_and_unsafe_request_ids_are_replaced(
    client: AsgiClient, provider: ScriptedProvider
) -> None:
    provider.chat_answers.append(answer())
    r = await client.chat(body(), key=MASTER, headers={"x-request-id": "bad id\twith spaces"})
    assert r.status == 200
    rid = r.headers["x-request-id"]
    assert rid != "bad id\twith spaces" and len(rid) == 24
    assert r.json()["id"] == f"chatcmpl-{rid}"


async def test_body_in_several_asgi_messages(
    client: AsgiClient, provider: ScriptedProvider
) -> None:
    provider.chat_answers.append(answer())
    r = await client.chat(body(messages=[{"role": "user", "content": "x" * 5000}]), chunks=7)
    assert r.status == 200
    assert provider.requests[0].messages[0].content[0].text == "x" * 5000


async def test_stream_with_usage_is_framed_like_openai(
    client: AsgiClient, provider: ScriptedProvider
) -> None:
    provider.streams.append([text_frame("Hel"), text_frame("lo"), end_frame()])
    r = await client.chat(
        body(stream=True, stream_options={"include_usage": True}),
        headers={"x-request-id": "s1"},
    )
    assert r.status == 200 and r.complete
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["x-switchboard-provider"] == "script"
    assert r.headers["x-switchboard-attempts"] == "1"
    events = r.events()
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    for chunk in chunks:
        assert chunk["id"] == "chatcmpl-s1"
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["model"] == MODEL
        assert isinstance(chunk["created"], int)
    assert [c["choices"] for c in chunks] == [
        [
            {
                "index": 0,
                "delta": {"role": "assistant", "content": "", "refusal": None},
                "logprobs": None,
                "finish_reason": None,
            }
        ],
        [{"index": 0, "delta": {"content": "Hel"}, "logprobs": None, "finish_reason": None}],
        [{"index": 0, "delta": {"content": "lo"}, "logprobs": None, "finish_reason": None}],
        [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}],
        [],
    ]
    assert [c["usage"] for c in chunks[:-1]] == [None] * 4
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": 2,
        "total_tokens": 5,
        "prompt_tokens_details": {"cached_tokens": 1},
        "completion_tokens_details": {"reasoning_tokens": 0},
        "cost_usd": 0.0,
    }


async def test_stream_without_usage_has_no_usage_key(
    client: AsgiClient, provider: ScriptedProvider
) -> None:
    provider.streams.append([text_frame("a"), end_frame(types_pb2.FINISH_REASON_LENGTH)])
    r = await client.chat(body(stream=True))
    events = r.events()
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert events[-1] == "[DONE]"
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


async def test_streamed_tool_calls(client: AsgiClient, provider: ScriptedProvider) -> None:
    provider.streams.append(
        [
            tool_frame(0, id="call_a", name="get_weather", arguments=""),
            tool_frame(0, arguments='{"city":'),
            tool_frame(1, id="call_b", name="get_time", arguments="{}"),
            tool_frame(0, arguments='"Paris"}'),
            end_frame(types_pb2.FINISH_REASON_TOOL_CALLS),
        ]
    )
    r = await client.chat(body(stream=True))
    chunks = [orjson.loads(e) for e in r.events()[:-1]]
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas == [
        # Before a tool call OpenAI sends content null, not "".
        {"role": "assistant", "content": None},
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]},
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": "{}"},
                }
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]},
        {},
    ]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_error_before_first_frame_is_a_json_error(
    client: AsgiClient, provider: ScriptedProvider
) -> None:
    provider.streams.append([Raise(UpstreamServerError("upstream said 500", status=500))])
    r = await client.chat(body(stream=True, stream_options={"include_usage": True}))
    assert r.status == 502
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {
        "error": {
            "message": "upstream said 500",
            "type": "server_error",
            "param": None,
            "code": "upstream_server_error",
        }
    }


async def test_error_after_start_ends_with_an_error_event_and_no_done(
    client: AsgiClient, provider: ScriptedProvider
) -> None:
    provider.streams.append(
        [text_frame("partial"), Raise(UpstreamStreamError("stream broke", status=200))]
    )
    r = await client.chat(body(stream=True))
    assert r.status == 200 and r.complete
    events = r.events()
    assert "[DONE]" not in events
    assert orjson.loads(events[1])["choices"][0]["delta"] == {"content": "partial"}
    assert orjson.loads(events[-1]) == {
        "error": {
            "message": "stream broke",
            "type": "server_error",
            "param": None,
            "code": "upstream_stream_error",
        }
    }


async def test_stream_that_ends_without_end_frame_is_an_error(
    client: AsgiClient, provider: ScriptedProvider
) -> None:
    provider.streams.append([text_frame("a"), text_frame("b")])
    r = await client.chat(body(stream=True))
    events = r.events()
    assert "[DONE]" not in events
    assert orjson.loads(events[-1])["error"]["code"] == "upstream_stream_error"


async def test_unexpected_exception_is_a_500_without_a_trace(
    client: AsgiClient, provider: ScriptedProvider
) -> None:
    provider.chat_answers.append(RuntimeError("secret internals /etc/passwd"))
    r = await client.chat(body())
    assert r.status == 500
    assert r.json() == {
        "error": {
            "message": "Internal error in the gateway.",
            "type": "server_error",
            "param": None,
            "code": "internal_error",
        }
    }
    assert b"secret" not in r.body and b"Traceback" not in r.body


async def test_unexpected_exception_mid_stream_is_an_error_event(
    client: AsgiClient, provider: ScriptedProvider
) -> None:
    provider.streams.append([text_frame("a"), Raise(RuntimeError("boom internals"))])
    r = await client.chat(body(stream=True))
    assert r.complete
    assert orjson.loads(r.events()[-1])["error"]["code"] == "internal_error"
    assert b"boom" not in r.body


@pytest.mark.parametrize(("key", "status"), [(None, 401), ("sb-wrong", 401), ("", 401)])
async def test_auth_errors(client: AsgiClient, key: str | None, status: int) -> None:
    r = await client.chat(body(), key=key)
    assert r.status == status
    error = r.json()["error"]
    assert error["code"] == "invalid_api_key" and error["type"] == "invalid_request_error"
    assert "sb-wrong" not in error["message"]
    assert r.headers["x-request-id"]


async def test_auth_is_checked_before_the_body(client: AsgiClient) -> None:
    r = await client.chat(b"{not json", key=None)
    assert r.status == 401


async def test_unknown_model_is_404(client: AsgiClient) -> None:
    r = await client.chat(body(model="nope/model"))
    assert r.status == 404
    error = r.json()["error"]
    assert error["code"] == "model_not_found" and error["param"] == "model"


async def test_malformed_json_and_bad_schema_are_400(client: AsgiClient) -> None:
    r = await client.chat(b'{"model": ')
    assert r.status == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    r = await client.chat(body(messages=[{"role": "user", "content": 42}]))
    assert r.status == 400
    assert r.json()["error"]["param"] == "messages[0].content"
    # Core validation (the same for gRPC) is reported the same way.
    r = await client.chat(body(temperature=3))
    assert r.status == 400 and r.json()["error"]["param"] == "temperature"
    r = await client.chat(body(messages=[]))
    assert r.status == 400 and r.json()["error"]["param"] == "messages"


async def test_rate_limit_carries_retry_after(
    client: AsgiClient, provider: ScriptedProvider
) -> None:
    provider.chat_answers.append(UpstreamRateLimitedError("slow down", status=429, retry_after=2.5))
    r = await client.chat(body())
    assert r.status == 429
    assert r.headers["retry-after"] == "3"
    assert r.headers["retry-after-ms"] == "2500"
    assert r.json()["error"]["code"] == "rate_limit_exceeded"


async def test_upstream_bad_request_is_400(client: AsgiClient, provider: ScriptedProvider) -> None:
    provider.chat_answers.append(UpstreamBadRequestError("bad param x", status=400, param="x"))
    r = await client.chat(body())
    assert r.status == 400 and r.json()["error"]["param"] == "x"


async def test_route_and_timeout_headers(client: AsgiClient, provider: ScriptedProvider) -> None:
    provider.chat_answers.append(answer())
    r = await client.chat(
        body(), headers={"x-switchboard-route": "Cheapest", "x-switchboard-timeout": "2.5"}
    )
    assert r.status == 200
    assert provider.requests[0].routing.strategy == types_pb2.ROUTE_STRATEGY_CHEAPEST
    timeout = provider.calls[0].timeout
    assert timeout is not None and 0 < timeout <= 2.5


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("x-switchboard-route", "random"),
        ("x-switchboard-timeout", "soon"),
        ("x-switchboard-timeout", "-1"),
        ("x-switchboard-timeout", "inf"),
    ],
)
async def test_bad_switchboard_headers_are_400(client: AsgiClient, name: str, value: str) -> None:
    r = await client.chat(body(), headers={name: value})
    assert r.status == 400 and r.json()["error"]["param"] == name


async def test_client_disconnect_mid_stream_cancels_the_upstream(
    client: AsgiClient, provider: ScriptedProvider
) -> None:
    hang = Wait()
    provider.streams.append([text_frame("a"), hang, end_frame()])
    gone = asyncio.Event()
    sent: list[dict[str, Any]] = []

    def on_send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message.get("body", b"").count(b"data:") >= 2:
            gone.set()  # the client goes away after the first content chunk

    r = await asyncio.wait_for(
        client.chat(body(stream=True), disconnect=gone, on_send=on_send), timeout=5
    )
    assert r.status == 200 and not r.complete
    assert provider.cancelled == 1 and provider.closed_streams == 1
    assert b"[DONE]" not in r.body


async def test_client_disconnect_cancels_a_non_streamed_call(
    client: AsgiClient, provider: ScriptedProvider
) -> None:
    provider.chat_answers.extend([Wait(), answer()])
    gone = asyncio.Event()
    task = asyncio.create_task(client.chat(body(), disconnect=gone))
    await asyncio.wait_for(provider.arrived.wait(), timeout=5)
    gone.set()
    with pytest.raises(AssertionError, match="sent nothing"):
        await asyncio.wait_for(task, timeout=5)
    assert provider.cancelled == 1


async def test_completed_stream_is_not_cancelled_by_the_final_disconnect(
    client: AsgiClient, provider: ScriptedProvider
) -> None:
    # After a complete response the server reports http.disconnect; that must not count.
    provider.streams.append([text_frame("a"), end_frame()])
    r = await client.chat(body(stream=True))
    assert r.complete and r.events()[-1] == "[DONE]"
    await asyncio.sleep(0)
    assert provider.cancelled == 0
