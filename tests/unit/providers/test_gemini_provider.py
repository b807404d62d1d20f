"""GeminiProvider over real HTTP against tests.fakes.gemini_upstream.FakeGemini."""

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
from server.providers.base import Provider, UpstreamCall
from server.providers.gemini import GeminiProvider
from server.providers.http_client import close_http_client
from tests.fakes.gemini_upstream import (
    CutStream,
    Delay,
    Disconnect,
    FakeGemini,
    Raw,
    Reply,
    Stall,
    Status,
    StreamError,
    ToolCall,
)

R = types_pb2
KEY = "AIzaSyUnitTestKey-0123456789abcdefghij"
CALL = UpstreamCall(model="gemini-2.5-flash", api_key=KEY, timeout=5.0)


@pytest.fixture(autouse=True)
async def _http_client() -> AsyncIterator[None]:
    yield
    await close_http_client()


@pytest.fixture
async def up() -> AsyncIterator[FakeGemini]:
    async with FakeGemini(api_key=KEY) as fake:
        yield fake


def provider(up: FakeGemini, **kw: float) -> GeminiProvider:
    return GeminiProvider("gemini", up.base_url, **kw)  # type: ignore[arg-type]


def request(text: str = "Hello there", **kw: object) -> chat_pb2.ChatRequest:
    message = types_pb2.Message(role=R.ROLE_USER, content=[types_pb2.ContentPart(text=text)])
    return chat_pb2.ChatRequest(model="gemini/x", messages=[message], **kw)  # type: ignore[arg-type]


async def collect(p: GeminiProvider, r: chat_pb2.ChatRequest, call: UpstreamCall = CALL):
    return [frame async for frame in p.stream(r, call)]


async def test_chat_uses_header_key_and_v1beta_path(up: FakeGemini) -> None:
    p = provider(up)
    assert isinstance(p, Provider)
    response = await p.chat(request("Hello there"), CALL)
    assert response.message.content[0].text == "Fake reply to: Hello there"
    assert response.finish_reason == R.FINISH_REASON_STOP
    assert (response.usage.input_tokens, response.usage.output_tokens) == (2, 5)
    sent = up.last
    assert sent.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent.headers["x-goog-api-key"] == KEY
    assert "key" not in sent.query
    assert KEY not in repr(p)
    # A base URL that already names the API version is not doubled.
    await GeminiProvider("g", up.base_url + "/v1beta/").chat(request(), CALL)
    assert up.last.path == "/v1beta/models/gemini-2.5-flash:generateContent"


async def test_stream_text_thoughts_parallel_calls(up: FakeGemini) -> None:
    up.script(
        Reply(
            thought="Two cities",
            tool_calls=[
                ToolCall("weather", {"city": "Paris"}),
                ToolCall("weather", {"city": "Rome"}),
            ],
            thought_signature="SIG",
            chunk_delay=0.01,  # each chunk in a read of its own: nothing to merge
        )
    )
    frames = await collect(provider(up), request())
    assert up.last.path.endswith(":streamGenerateContent") and up.last.query["alt"] == "sse"
    kinds = [f.WhichOneof("frame") for f in frames]
    assert kinds == ["reasoning", "reasoning", "tool_call", "tool_call", "end"]
    assert "".join(f.reasoning.text for f in frames[:2]) == "Two cities"
    a, b = frames[2].tool_call, frames[3].tool_call
    assert (a.index, a.name, a.arguments, a.signature) == (0, "weather", '{"city":"Paris"}', "SIG")
    assert (b.index, b.arguments) == (1, '{"city":"Rome"}') and a.id != b.id
    assert frames[-1].end.finish_reason == R.FINISH_REASON_TOOL_CALLS


async def test_stream_text_signature_is_not_text_and_cached_usage() -> None:
    async with FakeGemini(cached_tokens=2) as up:
        up.script(Reply(text="Paris is nice.", thought_signature="SIG"))
        frames = await collect(provider(up), request("one two three"))
    text = "".join(f.text.text for f in frames if f.WhichOneof("frame") == "text")
    assert text == "Paris is nice."
    signatures = [f.reasoning.signature for f in frames if f.WhichOneof("frame") == "reasoning"]
    assert signatures == ["SIG"]
    usage = frames[-1].end.usage
    assert (usage.input_tokens, usage.cached_input_tokens, usage.output_tokens) == (3, 2, 3)


async def test_json_mode_and_max_tokens(up: FakeGemini) -> None:
    rf = types_pb2.ResponseFormat(type=R.RESPONSE_FORMAT_TYPE_JSON_OBJECT)
    response = await provider(up).chat(request("hi", response_format=rf), CALL)
    assert response.message.content[0].text == '{"answer":"Fake reply to: hi"}'
    assert up.last.json["generationConfig"]["responseMimeType"] == "application/json"
    truncated = await provider(up).chat(request("a b c", max_tokens=2), CALL)
    assert truncated.finish_reason == R.FINISH_REASON_LENGTH
    frames = await collect(provider(up), request("a b c", max_tokens=2))
    assert frames[-1].end.finish_reason == R.FINISH_REASON_LENGTH


async def test_errors(up: FakeGemini) -> None:
    p = provider(up)
    up.script(
        Status(429, message="Quota exceeded", retry_delay="2s"),
        Status(503, message="The model is overloaded."),
        Status(400, message="Penalty is not enabled for models/gemini-2.5-flash"),
    )
    with pytest.raises(UpstreamRateLimitedError) as limited:
        await p.chat(request(), CALL)
    assert limited.value.retry_after == 2.0
    with pytest.raises(UpstreamServerError) as unavailable:
        await p.chat(request(), CALL)
    assert unavailable.value.retryable and unavailable.value.status == 503
    with pytest.raises(UpstreamBadRequestError) as bad:
        await p.chat(request(), CALL)
    assert "Penalty is not enabled" in bad.value.message
    wrong = "AIzaSyWrongKey-abcdefghijklmnopqrstuv"
    with pytest.raises(UpstreamAuthError) as auth:
        await p.chat(request(), UpstreamCall("gemini-2.5-flash", wrong, 5.0))
    assert wrong not in str(auth.value)


async def test_stream_failures(up: FakeGemini) -> None:
    p = provider(up, stream_idle_timeout=0.2)
    up.script(StreamError("backend error", after_chunks=1, code=500))
    with pytest.raises(UpstreamStreamError) as broke:
        await collect(p, request("one two three"))
    assert broke.value.message == "backend error" and broke.value.retryable
    up.script(StreamError("The model is overloaded.", after_chunks=1, code=503))
    with pytest.raises(UpstreamServerError):
        await collect(p, request("one two three"))
    up.script(CutStream(after_chunks=1))
    with pytest.raises(UpstreamStreamError):
        await collect(p, request("one two three"))
    up.script(Stall(after_chunks=1))
    with pytest.raises(UpstreamTimeoutError):
        await collect(p, request("one two three"))
    up.script(Status(429, headers={"retry-after": "1"}))
    with pytest.raises(UpstreamRateLimitedError) as exc:
        await collect(p, request())
    assert exc.value.retry_after == 1.0


async def test_timeouts_and_disconnect(up: FakeGemini) -> None:
    fast = UpstreamCall(model="gemini-2.5-flash", api_key=KEY, timeout=0.2)
    p = provider(up)
    up.script(Delay(1.0))
    with pytest.raises(UpstreamTimeoutError):
        await p.chat(request(), fast)
    up.script(Stall())
    with pytest.raises(UpstreamTimeoutError):
        await collect(p, request(), fast)
    up.script(Disconnect())
    with pytest.raises(UpstreamConnectionError):
        await p.chat(request(), CALL)
    assert (await p.chat(request(), CALL)).finish_reason == R.FINISH_REASON_STOP


async def test_malformed_body_and_a_last_event_without_its_blank_line(up: FakeGemini) -> None:
    p = provider(up)
    up.script(Raw("<html>proxy says no</html>", 200, "application/json"))
    with pytest.raises(UpstreamServerError) as malformed:
        await p.chat(request(), CALL)
    assert malformed.value.retryable and "proxy" not in malformed.value.message
    # The body ends right after the finishing chunk's data line: the event still counts.
    chunk = b'{"candidates":[{"content":{"parts":[{"text":"Hi"}]},"finishReason":"STOP"}]}'
    up.script(Raw(b"data: " + chunk + b"\r\n"))
    frames = await collect(p, request())
    assert [f.WhichOneof("frame") for f in frames] == ["text", "end"]
    assert frames[-1].end.finish_reason == R.FINISH_REASON_STOP
