"""OpenAICompatProvider against a real loopback FakeOpenAI (wire behaviour beyond conformance)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from switchboard.v1 import chat_pb2, types_pb2

from server.core.errors import (
    UpstreamBadRequestError,
    UpstreamConnectionError,
    UpstreamRateLimitedError,
    UpstreamServerError,
    UpstreamStreamError,
    UpstreamTimeoutError,
)
from server.providers.base import Provider, UpstreamCall
from server.providers.http_client import close_http_client, get_http_client
from server.providers.openai_compat import OpenAICompatProvider
from tests.fakes.common import pieces
from tests.fakes.openai_upstream import (
    Delay,
    Disconnect,
    FakeOpenAI,
    Json,
    Raw,
    Reply,
    Stall,
    Status,
    StreamError,
    ToolCall,
    Usage,
    default_reply_text,
)

KEY = "sk-test-abcdefghijklmnop"


@pytest.fixture(autouse=True)
async def _close_shared_client() -> AsyncIterator[None]:
    yield
    await close_http_client()


@pytest.fixture
async def up() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


def provider_for(up: FakeOpenAI, **options: object) -> OpenAICompatProvider:
    return OpenAICompatProvider("testprov", up.base_url, **options)  # type: ignore[arg-type]


def ask(text: str = "Hello there", **fields: object) -> chat_pb2.ChatRequest:
    return chat_pb2.ChatRequest(
        messages=[
            types_pb2.Message(role=types_pb2.ROLE_USER, content=[types_pb2.ContentPart(text=text)])
        ],
        **fields,  # type: ignore[arg-type]
    )


def call(timeout: float | None = None, key: str = KEY) -> UpstreamCall:
    return UpstreamCall(model="gpt-4o-mini", api_key=key, timeout=timeout)


async def frames(
    provider: Provider, request: chat_pb2.ChatRequest, upstream_call: UpstreamCall | None = None
) -> list[chat_pb2.StreamChatResponse]:
    return [frame async for frame in provider.stream(request, upstream_call or call())]


async def test_chat_sends_openai_request_and_decodes_default_reply(up: FakeOpenAI) -> None:
    provider = provider_for(up, headers={"HTTP-Referer": "https://switchboard.dev"})
    response = await provider.chat(ask("Hello there", temperature=0.2), call())
    sent = up.last
    assert sent.path == "/v1/chat/completions" and sent.method == "POST"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["http-referer"] == "https://switchboard.dev"
    assert sent.json == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Hello there"}],
        "temperature": 0.2,
    }
    expected_text = default_reply_text(sent.json)
    assert response.message.role == types_pb2.ROLE_ASSISTANT
    assert [p.text for p in response.message.content] == [expected_text]
    assert response.finish_reason == types_pb2.FINISH_REASON_STOP
    assert response.usage.input_tokens == 2
    assert response.usage.output_tokens == len(expected_text.split())


async def test_no_key_means_no_authorization_header(up: FakeOpenAI) -> None:
    await provider_for(up).chat(ask(), call(key=""))
    assert "authorization" not in up.last.headers


async def test_chat_tool_calls_reasoning_and_refusal(up: FakeOpenAI) -> None:
    up.script(
        Reply(
            reasoning="Need the weather tool.",
            tool_calls=[ToolCall("get_weather", {"city": "Paris"}, id="call_1")],
            usage=Usage(prompt_tokens=50, completion_tokens=20, reasoning_tokens=6),
        ),
        Reply(text="", refusal="I can't help with that."),
    )
    provider = provider_for(up)
    first = await provider.chat(ask(), call())
    kinds = [p.WhichOneof("part") for p in first.message.content]
    assert kinds == ["reasoning", "tool_call"]
    assert first.message.content[0].reasoning.text == "Need the weather tool."
    tool_call = first.message.content[1].tool_call
    assert (tool_call.id, tool_call.name, tool_call.arguments) == (
        "call_1",
        "get_weather",
        '{"city":"Paris"}',
    )
    assert first.finish_reason == types_pb2.FINISH_REASON_TOOL_CALLS
    assert first.usage.reasoning_tokens == 6
    second = await provider.chat(ask(), call())
    assert second.message.refusal == "I can't help with that."


async def test_stream_request_and_frames(up: FakeOpenAI) -> None:
    # Paced, so each event arrives in a read of its own (events that arrive together are
    # merged: test_events_of_one_read_become_one_frame_each_kind).
    up.script(Reply(text="One two three", reasoning="Thinking hard", chunk_delay=0.01))
    got = await frames(provider_for(up), ask())
    assert up.last.json["stream"] is True
    assert up.last.json["stream_options"] == {"include_usage": True}
    kinds = [f.WhichOneof("frame") for f in got]
    assert kinds == ["reasoning", "reasoning", "text", "text", "text", "end"]
    assert "".join(f.reasoning.text for f in got) == "Thinking hard"
    assert "".join(f.text.text for f in got) == "One two three"
    assert got[-1].end.usage.output_tokens == 5
    assert got[-1].end.usage.reasoning_tokens == 2


async def test_max_completion_tokens_for_openai_style_upstreams(up: FakeOpenAI) -> None:
    provider = provider_for(up, max_tokens_field="max_completion_tokens")
    await provider.chat(ask("a b c d e f g"), call())
    assert "max_completion_tokens" not in up.last.json and "max_tokens" not in up.last.json
    response = await provider.chat(ask("a b c d e f g", max_tokens=2), call())
    assert up.last.json["max_completion_tokens"] == 2 and "max_tokens" not in up.last.json
    assert response.finish_reason == types_pb2.FINISH_REASON_LENGTH
    assert response.message.content[0].text == "Fake reply"


async def test_error_message_redacts_an_echoed_key(up: FakeOpenAI) -> None:
    up.script(Status(400, message=f"Bad things happened with key {KEY} (Bearer {KEY})"))
    with pytest.raises(UpstreamBadRequestError) as caught:
        await provider_for(up).chat(ask(), call())
    assert KEY not in caught.value.message and "[redacted]" in caught.value.message


async def test_openrouter_429_uses_message_not_metadata_raw(up: FakeOpenAI) -> None:
    body = {
        "error": {
            "code": 429,
            "message": "Provider returned error",
            "metadata": {"provider_name": "Google", "raw": "RAW-UPSTREAM-TEXT is rate-limited"},
        },
        "user_id": "user_123",
    }
    up.script(Json(body, status=429, headers={"retry-after-ms": "1500"}))
    with pytest.raises(UpstreamRateLimitedError) as caught:
        await provider_for(up).chat(ask(), call())
    assert caught.value.message == "Provider returned error"
    assert caught.value.retry_after == 1.5
    assert "RAW-UPSTREAM" not in str(caught.value)


async def test_html_error_page_is_never_forwarded(up: FakeOpenAI) -> None:
    up.script(Raw("<html><body>secret proxy page</body></html>", 502, "text/html"))
    with pytest.raises(UpstreamServerError) as caught:
        await provider_for(up).chat(ask(), call())
    assert "secret" not in caught.value.message and caught.value.status == 502


async def test_malformed_success_body(up: FakeOpenAI) -> None:
    up.script(Raw("this is not json", 200, "application/json"))
    with pytest.raises(UpstreamServerError):
        await provider_for(up).chat(ask(), call())


async def test_error_object_in_a_200_json_body(up: FakeOpenAI) -> None:
    up.script(StreamError("Token limit reached", code=400))  # non-streamed: a 200 error body
    with pytest.raises(UpstreamBadRequestError) as caught:
        await provider_for(up).chat(ask(), call())
    assert caught.value.message == "Token limit reached"


async def test_stream_answered_with_a_json_error(up: FakeOpenAI) -> None:
    up.script(Json({"error": {"message": "slow down", "code": 429}}))
    with pytest.raises(UpstreamRateLimitedError):
        await frames(provider_for(up), ask())


async def test_stream_error_after_content_was_sent(up: FakeOpenAI) -> None:
    up.script(StreamError("Internal upstream failure", after_chunks=2))
    seen: list[chat_pb2.StreamChatResponse] = []
    with pytest.raises(UpstreamStreamError) as caught:
        async for frame in provider_for(up).stream(ask(), call()):
            seen.append(frame)
    # The two chunks before the error event are delivered (merged when they arrived in the
    # same read as the error), then the error is raised.
    assert {f.WhichOneof("frame") for f in seen} == {"text"}
    sent = "".join(pieces(default_reply_text(up.last.json))[:2])
    assert "".join(f.text.text for f in seen) == sent
    assert caught.value.message == "Internal upstream failure"


async def test_events_of_one_read_become_one_frame_each_kind(up: FakeOpenAI) -> None:
    chunk = 'data: {{"choices":[{{"index":0,"delta":{delta},"finish_reason":{reason}}}]}}\n\n'
    body = "".join(
        [
            chunk.format(delta='{"reasoning_content":"Let me "}', reason="null"),
            chunk.format(delta='{"reasoning_content":"think."}', reason="null"),
            chunk.format(delta='{"content":"One "}', reason="null"),
            chunk.format(delta='{"content":"two "}', reason="null"),
            chunk.format(delta='{"content":"three"}', reason="null"),
            chunk.format(delta="{}", reason='"stop"'),
            "data: [DONE]\n\n",
        ]
    )
    up.script(Raw(body, 200, "text/event-stream"))  # one write: one read at the gateway
    got = await frames(provider_for(up), ask())
    assert [f.WhichOneof("frame") for f in got] == ["reasoning", "text", "end"]
    assert got[0].reasoning.text == "Let me think." and got[1].text.text == "One two three"


async def test_stream_without_done_but_with_finish_is_complete(up: FakeOpenAI) -> None:
    body = (
        'data: {"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n'
        'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    )
    up.script(Raw(body))
    got = await frames(provider_for(up), ask())
    assert [f.WhichOneof("frame") for f in got] == ["text", "end"]
    assert got[-1].end.finish_reason == types_pb2.FINISH_REASON_STOP


async def test_stream_that_just_ends_is_an_error(up: FakeOpenAI) -> None:
    up.script(Raw('data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'))
    with pytest.raises(UpstreamStreamError) as caught:
        await frames(provider_for(up), ask())
    assert "ended before completion" in caught.value.message


async def test_stream_stalled_mid_way_hits_the_idle_timeout(up: FakeOpenAI) -> None:
    up.script(Stall(after_chunks=2, reply=Reply(text="one two three four")))
    provider = provider_for(up, stream_idle_timeout=0.3)
    seen: list[str] = []
    started = time.monotonic()
    with pytest.raises(UpstreamTimeoutError) as caught:
        async for frame in provider.stream(ask(), call(timeout=5)):
            seen.append(frame.WhichOneof("frame"))
    assert seen == ["text"]  # the role chunk carries no frame
    assert "stalled" in caught.value.message
    assert time.monotonic() - started < 3


async def test_slow_first_chunk_within_timeout_succeeds(up: FakeOpenAI) -> None:
    up.script(Delay(0.1, then=Reply(text="late but fine")))
    got = await frames(provider_for(up), ask(), call(timeout=2.0))
    assert "".join(f.text.text for f in got) == "late but fine"


async def test_delay_beyond_timeout_is_a_timeout(up: FakeOpenAI) -> None:
    up.script(Delay(2.0))
    started = time.monotonic()
    with pytest.raises(UpstreamTimeoutError):
        await provider_for(up).chat(ask(), call(timeout=0.2))
    assert time.monotonic() - started < 1.5


async def test_disconnect_before_answer_is_a_connection_error(up: FakeOpenAI) -> None:
    up.script(Disconnect(), Disconnect())
    with pytest.raises(UpstreamConnectionError):
        await provider_for(up).chat(ask(), call())
    with pytest.raises(UpstreamConnectionError):
        await frames(provider_for(up), ask())


async def test_consumer_leaving_a_stream_cancels_the_upstream(up: FakeOpenAI) -> None:
    up.script(Reply(text=" ".join(["word"] * 200), chunk_delay=0.02))
    stream = provider_for(up).stream(ask(), call())
    first = await anext(stream)
    assert first.WhichOneof("frame") == "text"
    await stream.aclose()  # type: ignore[attr-defined]
    for _ in range(100):
        if up.cancelled:
            break
        await asyncio.sleep(0.02)
    assert up.cancelled == 1


async def test_concurrent_calls_share_the_pooled_client(up: FakeOpenAI) -> None:
    provider = provider_for(up)
    results = await asyncio.gather(*(provider.chat(ask(f"n{i}"), call()) for i in range(20)))
    assert sorted(r.message.content[0].text for r in results) == sorted(
        f"Fake reply to: n{i}" for i in range(20)
    )
    assert get_http_client() is get_http_client()


async def test_repr_hides_configured_headers(up: FakeOpenAI) -> None:
    provider = provider_for(up, headers={"api-key": "azure-secret-value"})
    assert "azure-secret-value" not in repr(provider)
    assert provider.kind == "openai_compat"


async def test_redirect_is_not_followed_and_not_retried(up: FakeOpenAI) -> None:
    location = {"location": "https://elsewhere.invalid/v1/chat/completions"}
    up.script(Raw("", 307, "text/plain", headers=location), Raw("", 307, "text/plain", location))
    with pytest.raises(UpstreamBadRequestError) as chat:
        await provider_for(up).chat(ask(), call())
    assert not chat.value.retryable and chat.value.status == 307
    with pytest.raises(UpstreamBadRequestError) as stream:
        await frames(provider_for(up), ask())
    assert not stream.value.retryable and stream.value.status == 307
    assert len(up.requests) == 2
