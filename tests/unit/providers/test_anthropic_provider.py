"""AnthropicProvider over real HTTP against tests.fakes.anthropic_upstream.FakeAnthropic."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from switchboard.v1 import chat_pb2, types_pb2

from server.core.errors import (
    UpstreamAuthError,
    UpstreamBadRequestError,
    UpstreamConnectionError,
    UpstreamRateLimitedError,
    UpstreamServerError,
    UpstreamStreamError,
    UpstreamTimeoutError,
)
from server.providers.anthropic import AnthropicProvider
from server.providers.base import Provider, UpstreamCall
from server.providers.http_client import close_http_client
from tests.fakes.anthropic_upstream import (
    CutStream,
    Delay,
    Disconnect,
    FakeAnthropic,
    Reply,
    Stall,
    Status,
    StreamError,
    ToolCall,
)

R = types_pb2
KEY = "sk-ant-api03-unit-test-key-0123456789"


@pytest.fixture(autouse=True)
async def _http_client() -> AsyncIterator[None]:
    yield
    await close_http_client()


@pytest.fixture
async def up() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic(api_key=KEY) as fake:
        yield fake


def provider(up: FakeAnthropic, **kw: float) -> AnthropicProvider:
    return AnthropicProvider("anthropic", up.base_url, **kw)  # type: ignore[arg-type]


def request(text: str = "Hello there", **kw: object) -> chat_pb2.ChatRequest:
    message = types_pb2.Message(role=R.ROLE_USER, content=[types_pb2.ContentPart(text=text)])
    return chat_pb2.ChatRequest(model="anthropic/claude", messages=[message], **kw)  # type: ignore[arg-type]


CALL = UpstreamCall(model="claude-sonnet-4-5", api_key=KEY, timeout=5.0)


async def collect(p: AnthropicProvider, r: chat_pb2.ChatRequest, call: UpstreamCall = CALL):
    return [frame async for frame in p.stream(r, call)]


async def test_chat_sends_headers_and_decodes_text(up: FakeAnthropic) -> None:
    p = provider(up)
    assert isinstance(p, Provider)
    response = await p.chat(request("Hello there"), CALL)
    assert response.message.content[0].text == "Fake reply to: Hello there"
    assert response.finish_reason == R.FINISH_REASON_STOP
    assert (response.usage.input_tokens, response.usage.output_tokens) == (2, 5)
    sent = up.last
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.json["max_tokens"] == 64000 and sent.json["model"] == "claude-sonnet-4-5"
    assert KEY not in repr(p) and KEY not in repr(CALL)


async def test_base_url_with_v1_suffix_and_default_headers(up: FakeAnthropic) -> None:
    p = AnthropicProvider(
        "a", up.base_url + "/v1/", default_headers={"anthropic-beta": "x-2025-01-01"}
    )
    await p.chat(request(), CALL)
    assert up.last.path == "/v1/messages"
    assert up.last.headers["anthropic-beta"] == "x-2025-01-01"


async def test_cached_usage_counts_reads_and_writes_as_input() -> None:
    async with FakeAnthropic(cached_tokens=3, cache_write_tokens=2) as up:
        response = await provider(up).chat(request("one two three four five six"), CALL)
    u = response.usage
    assert (u.input_tokens, u.cached_input_tokens, u.cache_write_input_tokens) == (6, 3, 2)


async def test_max_tokens_truncation_is_length(up: FakeAnthropic) -> None:
    response = await provider(up).chat(request("a b c d e", max_tokens=2), CALL)
    assert response.message.content[0].text == "Fake reply"
    assert response.finish_reason == R.FINISH_REASON_LENGTH
    frames = await collect(provider(up), request("a b c d e", max_tokens=2))
    assert frames[-1].end.finish_reason == R.FINISH_REASON_LENGTH


async def test_stream_text_tools_and_thinking(up: FakeAnthropic) -> None:
    up.script(
        Reply(
            text="Looking up both.",
            thinking="I should call twice",
            tool_calls=[
                ToolCall("weather", {"city": "Paris"}, id="toolu_1"),
                ToolCall("weather", {"city": "Rome"}, id="toolu_2"),
            ],
        )
    )
    frames = await collect(provider(up), request())
    kinds = [f.WhichOneof("frame") for f in frames]
    assert kinds[-1] == "end" and kinds.count("end") == 1 and "start" not in kinds
    reasoning = [f.reasoning for f in frames if f.WhichOneof("frame") == "reasoning"]
    assert "".join(r.text for r in reasoning) == "I should call twice"
    assert reasoning[-1].signature == "fake-signature"
    assert "".join(f.text.text for f in frames if f.WhichOneof("frame") == "text") == (
        "Looking up both."
    )
    calls: dict[int, list[chat_pb2.ToolCallDelta]] = {}
    for f in frames:
        if f.WhichOneof("frame") == "tool_call":
            calls.setdefault(f.tool_call.index, []).append(f.tool_call)
    assert sorted(calls) == [0, 1]
    assert (calls[0][0].id, calls[0][0].name) == ("toolu_1", "weather")
    assert "".join(d.arguments for d in calls[1]) == '{"city":"Rome"}'
    assert all(not d.id for d in calls[0][1:])
    assert frames[-1].end.finish_reason == R.FINISH_REASON_TOOL_CALLS
    assert up.last.json["stream"] is True


async def test_json_mode_forced_tool_round_trip(up: FakeAnthropic) -> None:
    rf = types_pb2.ResponseFormat(type=R.RESPONSE_FORMAT_TYPE_JSON_OBJECT)
    response = await provider(up).chat(request("hi", response_format=rf), CALL)
    assert response.message.content[0].text == '{"answer":"Fake reply to: hi"}'
    assert response.finish_reason == R.FINISH_REASON_STOP
    frames = await collect(provider(up), request("hi", response_format=rf))
    text = "".join(f.text.text for f in frames if f.WhichOneof("frame") == "text")
    assert text == '{"answer":"Fake reply to: hi"}'
    assert frames[-1].end.finish_reason == R.FINISH_REASON_STOP


async def test_http_errors_map_to_gateway_errors(up: FakeAnthropic) -> None:
    p = provider(up)
    up.script(
        Status(429, message="Number of requests exceeded", headers={"retry-after": "3"}),
        Status(529, message="Overloaded"),
        Status(500),
        Status(400, message="max_tokens: too large"),
    )
    with pytest.raises(UpstreamRateLimitedError) as limited:
        await p.chat(request(), CALL)
    assert limited.value.retry_after == 3.0 and limited.value.retryable
    with pytest.raises(UpstreamServerError) as overloaded:
        await p.chat(request(), CALL)
    assert overloaded.value.status == 529 and overloaded.value.retryable
    with pytest.raises(UpstreamServerError):
        await p.chat(request(), CALL)
    with pytest.raises(UpstreamBadRequestError) as bad:
        await p.chat(request(), CALL)
    assert bad.value.message == "max_tokens: too large" and not bad.value.retryable


async def test_wrong_key_is_an_auth_error_that_never_shows_the_key(up: FakeAnthropic) -> None:
    wrong = "sk-ant-api03-wrong-key-abcdefghijklmnop"
    with pytest.raises(UpstreamAuthError) as exc:
        await provider(up).chat(request(), UpstreamCall("claude-sonnet-4-5", wrong, 5.0))
    assert wrong not in str(exc.value) and KEY not in str(exc.value)
    with pytest.raises(UpstreamAuthError):
        await collect(provider(up), request(), UpstreamCall("claude-sonnet-4-5", wrong, 5.0))


async def test_stream_error_event_cut_stream_and_status_before_stream(up: FakeAnthropic) -> None:
    p = provider(up)
    up.script(StreamError("Overloaded", after_chunks=2))
    with pytest.raises(UpstreamServerError) as exc:
        await collect(p, request())
    assert exc.value.message == "Overloaded"
    up.script(StreamError("Mystery", type="weird_error"))
    with pytest.raises(UpstreamStreamError):
        await collect(p, request())
    up.script(CutStream(after_chunks=3))
    with pytest.raises(UpstreamStreamError):
        await collect(p, request())
    up.script(Status(429, headers={"retry-after": "1"}))
    with pytest.raises(UpstreamRateLimitedError):
        await collect(p, request())


async def test_timeouts_stalls_and_disconnects(up: FakeAnthropic) -> None:
    fast = UpstreamCall(model="claude-sonnet-4-5", api_key=KEY, timeout=0.2)
    p = provider(up, stream_idle_timeout=0.2)
    up.script(Delay(1.0))
    with pytest.raises(UpstreamTimeoutError):
        await p.chat(request(), fast)
    up.script(Stall())
    with pytest.raises(UpstreamTimeoutError):
        await collect(p, request(), fast)
    up.script(Stall(after_chunks=2))
    frames: list[chat_pb2.StreamChatResponse] = []
    with pytest.raises(UpstreamTimeoutError):
        async for frame in p.stream(request(), CALL):
            frames.append(frame)
    assert all(f.WhichOneof("frame") != "end" for f in frames)
    up.script(Disconnect())
    with pytest.raises(UpstreamConnectionError):
        await p.chat(request(), CALL)
    # The fake still answers normally afterwards: nothing was left broken.
    assert (await p.chat(request(), CALL)).finish_reason == R.FINISH_REASON_STOP


async def test_fake_speaks_what_the_anthropic_sdk_parses() -> None:
    """The fake's wire format is the real one: the official SDK parses it (e2e tests rely on it)."""
    import anthropic

    async with FakeAnthropic(api_key=KEY) as up:
        client = anthropic.AsyncAnthropic(base_url=up.base_url, api_key=KEY, max_retries=0)
        up.script(
            Reply(text="Sure.", thinking="hmm", tool_calls=[ToolCall("f", {"a": 1}, id="toolu_x")])
        )
        async with client.messages.stream(
            model="claude-test", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            final = await stream.get_final_message()
        assert [block.type for block in final.content] == ["thinking", "text", "tool_use"]
        assert final.content[2].input == {"a": 1}  # type: ignore[union-attr]
        assert final.stop_reason == "tool_use"
        up.script(Status(529, message="Overloaded"))
        with pytest.raises(anthropic.APIStatusError) as exc:
            await client.messages.create(
                model="claude-test", max_tokens=5, messages=[{"role": "user", "content": "x"}]
            )
        assert exc.value.status_code == 529
        await client.close()
