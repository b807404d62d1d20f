"""The official ``openai`` SDK's Responses API and embeddings against a running gateway.

One gateway process serves every provider kind: OpenAI-compatible (``FakeOpenAI``), Anthropic
(``FakeAnthropic``), Gemini (``FakeGemini``), all real aiohttp servers on loopback, and the
offline demo model. Each Responses test runs once per provider kind: the SDK speaks
``/v1/responses``, the gateway converts to the contract and each adapter to its wire.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest
import pytest_asyncio

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.anthropic_upstream import Reply as AnthropicReply
from tests.fakes.common import Status, ToolCall, fake_vector
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.gemini_upstream import Reply as GeminiReply
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.openai_upstream import Reply as OpenAIReply
from tests.support.server import RunningGateway, running_gateway

pytestmark = pytest.mark.asyncio(loop_scope="module")

CONFIG = {
    "retry": {"max_attempts_per_deployment": 1},
    "circuit": {"consecutive_failures": 1000, "min_requests": 1000},
    "routes": [
        # The Anthropic deployment serves no embeddings: the executor falls back past it.
        {
            "name": "embed-fallback",
            "deployments": ["anthropic/claude-haiku-4-5", "openai/text-embedding-3-small"],
        }
    ],
}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
CITY_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}


@dataclass
class Upstreams:
    openai: FakeOpenAI
    anthropic: FakeAnthropic
    gemini: FakeGemini

    def clear(self) -> None:
        for up in (self.openai, self.anthropic, self.gemini):
            up.clear()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ups() -> AsyncIterator[Upstreams]:
    async with FakeOpenAI() as o, FakeAnthropic() as a, FakeGemini() as g:
        yield Upstreams(o, a, g)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gateway(ups: Upstreams) -> AsyncIterator[RunningGateway]:
    env = {
        "OPENAI_API_KEY": "sk-responses-e2e",
        "OPENAI_BASE_URL": ups.openai.base_url,
        "ANTHROPIC_API_KEY": "sk-ant-responses-e2e",
        "ANTHROPIC_BASE_URL": ups.anthropic.base_url,
        "GEMINI_API_KEY": "AIza-responses-e2e",
        "GEMINI_BASE_URL": ups.gemini.base_url,
    }
    async with running_gateway(env=env, config=CONFIG) as gw:
        yield gw


@pytest.fixture(scope="module")
def app_key(gateway: RunningGateway) -> str:
    return gateway.create_key("e2e-responses")


@pytest_asyncio.fixture(loop_scope="module")
async def client(
    gateway: RunningGateway, app_key: str, ups: Upstreams
) -> AsyncIterator[openai.AsyncOpenAI]:
    ups.clear()
    async with openai.AsyncOpenAI(
        base_url=f"{gateway.http_url}/v1", api_key=app_key, max_retries=0, timeout=20.0
    ) as c:
        yield c


@dataclass(frozen=True)
class Kind:
    """One provider kind: its model and how to script and read its fake."""

    name: str
    model: str

    @property
    def tool(self) -> dict[str, Any]:
        # Gemini cannot enforce strict schemas, so the gateway refuses `strict: true` there.
        if self.name == "gemini":
            return {k: v for k, v in WEATHER.items() if k != "strict"}
        return WEATHER

    def upstream(self, ups: Upstreams) -> Any:
        return {"openai": ups.openai, "anthropic": ups.anthropic, "gemini": ups.gemini}.get(
            self.name
        )

    def script_call(self, ups: Upstreams, name: str, arguments: dict[str, Any]) -> None:
        call = ToolCall(name, arguments, id="call_e2e_1")
        if self.name == "openai":
            ups.openai.script(OpenAIReply(tool_calls=[call]))
        elif self.name == "anthropic":
            ups.anthropic.script(AnthropicReply(tool_calls=[call]))
        elif self.name == "gemini":
            ups.gemini.script(GeminiReply(tool_calls=[call]))

    def script_text(self, ups: Upstreams, text: str) -> None:
        if self.name == "openai":
            ups.openai.script(OpenAIReply(text=text))
        elif self.name == "anthropic":
            ups.anthropic.script(AnthropicReply(text=text))
        elif self.name == "gemini":
            ups.gemini.script(GeminiReply(text=text))

    def sent_system(self, ups: Upstreams) -> str | None:
        """The system prompt the upstream received last."""
        body = self.upstream(ups).last.json
        if self.name == "openai":
            first = body["messages"][0]
            return first["content"] if first["role"] == "system" else None
        if self.name == "anthropic":
            return body.get("system")
        return " ".join(p["text"] for p in body["systemInstruction"]["parts"])

    def sent_turns(self, ups: Upstreams) -> int:
        """Non-system turns in the upstream's last request."""
        body = self.upstream(ups).last.json
        if self.name == "openai":
            return sum(1 for m in body["messages"] if m["role"] != "system")
        if self.name == "anthropic":
            return len(body["messages"])
        return len(body["contents"])


KINDS = [
    Kind("openai", "openai/gpt-4o-mini"),
    Kind("anthropic", "anthropic/claude-haiku-4-5"),
    Kind("gemini", "gemini/gemini-2.5-flash"),
    Kind("demo", "demo/echo"),
]


@pytest.fixture(params=KINDS, ids=[k.name for k in KINDS])
def kind(request: pytest.FixtureRequest) -> Kind:
    return request.param  # type: ignore[no-any-return]


def expected_text(kind: Kind, said: str) -> str:
    return f"Echo: {said}" if kind.name == "demo" else f"Fake reply to: {said}"


async def test_text_with_instructions(
    client: openai.AsyncOpenAI, ups: Upstreams, kind: Kind
) -> None:
    raw = await client.responses.with_raw_response.create(
        model=kind.model, input="Hello there", instructions="Answer briefly."
    )
    response = raw.parse()
    assert response.object == "response" and response.status == "completed"
    assert response.id.startswith("resp_") and response.store is True
    assert response.output_text == expected_text(kind, "Hello there")
    assert [item.type for item in response.output] == ["message"]
    assert response.output[0].content[0].type == "output_text"
    assert response.instructions == "Answer briefly." and response.model == kind.model
    usage = response.usage
    assert usage is not None and usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.input_tokens_details.cached_tokens == 0
    assert usage.output_tokens_details.reasoning_tokens == 0
    assert raw.headers["x-switchboard-provider"] == kind.name
    if kind.name != "demo":
        assert kind.sent_system(ups) == "Answer briefly."


async def test_function_call_round_trip(
    client: openai.AsyncOpenAI, ups: Upstreams, kind: Kind
) -> None:
    kind.script_call(ups, "get_weather", {"city": "Paris"})
    first = await client.responses.create(
        model=kind.model, input="Weather in Paris?", tools=[kind.tool], store=False
    )
    assert first.store is False
    (call,) = first.output
    assert call.type == "function_call" and call.name == "get_weather"
    # The demo model fills a required string with the user's text.
    city = "Weather in Paris?" if kind.name == "demo" else "Paris"
    assert json.loads(call.arguments)["city"] == city and call.call_id
    kind.script_text(ups, "It is sunny in Paris.")
    second = await client.responses.create(
        model=kind.model,
        tools=[kind.tool],
        store=False,
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            # The output item replayed as it came back (id, status and all), as SDKs do.
            call.model_dump(exclude_none=True),
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"},
        ],
    )
    if kind.name == "demo":
        assert second.output_text == "The tool get_weather returned: sunny, 21C"
    else:
        assert second.output_text == "It is sunny in Paris."
        body = kind.upstream(ups).last.json
        assert "sunny, 21C" in json.dumps(body)
        assert kind.sent_turns(ups) == 3


async def test_json_schema(client: openai.AsyncOpenAI, ups: Upstreams, kind: Kind) -> None:
    if kind.name == "openai":
        ups.openai.script(OpenAIReply(text='{"city": "Paris"}'))
    response = await client.responses.create(
        model=kind.model,
        input="Which city?",
        text={
            "format": {"type": "json_schema", "name": "City", "schema": CITY_SCHEMA, "strict": True}
        },
    )
    assert isinstance(json.loads(response.output_text), dict)
    assert response.text.format.type == "json_schema"
    if kind.name == "openai":
        sent = ups.openai.last.json["response_format"]
        assert sent["type"] == "json_schema" and sent["json_schema"]["name"] == "City"
    elif kind.name == "gemini":
        assert ups.gemini.last.json["generationConfig"]["responseMimeType"] == "application/json"
    elif kind.name == "anthropic":
        assert ups.anthropic.last.json["output_config"]["format"]["type"] == "json_schema"


async def test_stream_text_events_in_order(client: openai.AsyncOpenAI, kind: Kind) -> None:
    async with client.responses.stream(model=kind.model, input="one two three") as stream:
        events = [event async for event in stream]
        final = await stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:5] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == expected_text(kind, "one two three") == final.output_text
    assert final.usage is not None and final.usage.output_tokens > 0
    assert events[-1].response.usage == final.usage


async def test_stream_function_call_events(
    client: openai.AsyncOpenAI, ups: Upstreams, kind: Kind
) -> None:
    kind.script_call(ups, "get_weather", {"city": "Oslo"})  # the demo's city is its input
    async with client.responses.stream(
        model=kind.model, input="Oslo", tools=[kind.tool], tool_choice="required"
    ) as stream:
        events = [event async for event in stream]
        final = await stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert events[2].item.type == "function_call" and events[2].item.name == "get_weather"
    assert "response.function_call_arguments.delta" in kinds
    assert kinds[-3:] == [
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    arguments = "".join(
        e.delta for e in events if e.type == "response.function_call_arguments.delta"
    )
    assert json.loads(arguments) == {"city": "Oslo"} == json.loads(final.output[0].arguments)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert final.usage is not None


async def test_previous_response_id_retrieve_and_delete(
    client: openai.AsyncOpenAI, ups: Upstreams, kind: Kind
) -> None:
    first = await client.responses.create(model=kind.model, input="My name is Ada.")
    second = await client.responses.create(
        model=kind.model, input="What is my name?", previous_response_id=first.id
    )
    assert second.previous_response_id == first.id
    if kind.name != "demo":
        # The upstream saw the whole conversation: question, answer, question.
        assert kind.sent_turns(ups) == 3
    got = await client.responses.retrieve(second.id)
    assert got.id == second.id and got.output_text == second.output_text
    assert [i.id for i in got.output] == [i.id for i in second.output]
    items = await client.responses.input_items.list(second.id, order="asc")
    roles = [(i.type, getattr(i, "role", None)) for i in items.data]
    assert roles == [("message", "user"), ("message", "assistant"), ("message", "user")]
    # Streams are stored too, and can be continued.
    async with client.responses.stream(
        model=kind.model, input="And again?", previous_response_id=second.id
    ) as stream:
        streamed = await stream.get_final_response()
    assert (await client.responses.retrieve(streamed.id)).output_text == streamed.output_text
    await client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError) as info:
        await client.responses.retrieve(first.id)
    assert first.id in str(info.value)
    # The conversation already stored does not depend on the deleted turn.
    third = await client.responses.create(
        model=kind.model, input="Still there?", previous_response_id=second.id
    )
    assert third.status == "completed"


async def test_unknown_or_foreign_ids_are_404(
    client: openai.AsyncOpenAI, gateway: RunningGateway, kind: Kind
) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        await client.responses.create(
            model=kind.model, input="hi", previous_response_id="resp_doesnotexist"
        )
    assert "resp_doesnotexist" in info.value.message
    assert info.value.body["param"] == "previous_response_id"  # type: ignore[index]
    mine = await client.responses.create(model=kind.model, input="secret")
    async with openai.AsyncOpenAI(
        base_url=f"{gateway.http_url}/v1", api_key=gateway.create_key("other"), max_retries=0
    ) as other:
        for call in (
            other.responses.retrieve(mine.id),
            other.responses.create(model=kind.model, input="x", previous_response_id=mine.id),
            other.responses.delete(mine.id),
        ):
            with pytest.raises(openai.NotFoundError) as foreign:
                await call
            assert mine.id in foreign.value.message
    assert (await client.responses.retrieve(mine.id)).id == mine.id


async def test_errors_are_the_sdk_exception_classes(
    client: openai.AsyncOpenAI, gateway: RunningGateway, ups: Upstreams
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await client.responses.create(model="demo/echo", input="x", tools=[{"type": "web_search"}])
    assert info.value.code == "unsupported_feature" and "web_search" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        await client.responses.create(model="demo/echo", input="x", temperature=-1)
    assert info.value.body["param"] == "temperature"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError) as info:
        await client.responses.create(model="no-such-model", input="x")
    assert info.value.code == "model_not_found"
    ups.openai.script(Status(429, headers={"retry-after": "0"}))
    with pytest.raises(openai.RateLimitError):
        await client.responses.create(model="openai/gpt-4o-mini", input="x")
    async with openai.AsyncOpenAI(
        base_url=f"{gateway.http_url}/v1", api_key="sb-wrong", max_retries=0
    ) as bad:
        with pytest.raises(openai.AuthenticationError):
            await bad.responses.create(model="demo/echo", input="x")


async def test_a_stream_that_fails_after_its_start_ends_with_response_failed(
    client: openai.AsyncOpenAI, ups: Upstreams
) -> None:
    from tests.fakes.openai_upstream import CutStream

    ups.openai.script(CutStream(after_chunks=3, reply=OpenAIReply(text="one two three four")))
    async with client.responses.stream(model="openai/gpt-4o-mini", input="x") as stream:
        kinds = []
        with pytest.raises(openai.APIError):
            async for event in stream:
                kinds.append(event.type)
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert "response.completed" not in kinds


# --- embeddings ------------------------------------------------------------------------------


def float32(values: list[float]) -> list[float]:
    return list(struct.unpack(f"<{len(values)}f", struct.pack(f"<{len(values)}f", *values)))


@pytest.mark.parametrize("encoding", ["float", "base64"])
@pytest.mark.parametrize(
    ("model", "provider"),
    [("openai/text-embedding-3-small", "openai"), ("gemini/gemini-embedding-001", "gemini")],
)
async def test_embeddings_from_upstreams(
    client: openai.AsyncOpenAI, ups: Upstreams, model: str, provider: str, encoding: str
) -> None:
    texts = ["the cat sat", "a dog"]
    raw = await client.embeddings.with_raw_response.create(
        model=model,
        input=texts,
        dimensions=6,
        encoding_format=encoding,  # type: ignore[arg-type]
    )
    result = raw.parse()
    assert [d.index for d in result.data] == [0, 1] and result.model == model
    for item, text in zip(result.data, texts, strict=True):
        vector = item.embedding
        if encoding == "base64":
            assert isinstance(vector, str)
            vector = list(struct.unpack("<6f", base64.b64decode(vector)))
            assert vector == float32(fake_vector(text, 6))
        else:
            assert vector == fake_vector(text, 6)
    assert raw.headers["x-switchboard-provider"] == provider
    assert float(raw.headers["x-switchboard-cost-usd"]) > 0
    if provider == "openai":
        sent = ups.openai.last.json
        assert sent["input"] == texts and sent["dimensions"] == 6
        assert result.usage.prompt_tokens == 5  # the fake counts words
    else:
        sent = ups.gemini.last.json
        assert ups.gemini.last.path.endswith(":batchEmbedContents")
        assert [r["outputDimensionality"] for r in sent["requests"]] == [6, 6]
        # Gemini reports no usage for embeddings: the gateway estimates it (4 bytes a token).
        assert result.usage.prompt_tokens == 3 + 2


async def test_embeddings_sdk_default_is_base64_and_decoded(
    client: openai.AsyncOpenAI, ups: Upstreams
) -> None:
    # No encoding_format: the SDK asks for base64 and decodes it into floats itself.
    result = await client.embeddings.create(model="gemini/gemini-embedding-001", input="hi")
    assert result.data[0].embedding == float32(fake_vector("hi", 8))
    assert ups.gemini.last.path.endswith(":batchEmbedContents")
    assert len(ups.gemini.last.json["requests"]) == 1


@pytest.mark.parametrize("encoding", ["float", "base64"])
async def test_demo_embeddings_are_deterministic_unit_vectors(
    client: openai.AsyncOpenAI, encoding: str
) -> None:
    one = await client.embeddings.create(
        model="demo/embed",
        input=["cat dog", "cat", "cat dog"],
        encoding_format=encoding,  # type: ignore[arg-type]
    )
    vectors = []
    for item in one.data:
        vector = item.embedding
        if isinstance(vector, str):
            raw = base64.b64decode(vector)
            vector = list(struct.unpack(f"<{len(raw) // 4}f", raw))
        vectors.append(vector)
    assert len(vectors[0]) == 256
    assert abs(sum(x * x for x in vectors[0]) - 1.0) < 1e-6
    assert vectors[0] == vectors[2] != vectors[1]
    assert sum(a * b for a, b in zip(vectors[0], vectors[1], strict=True)) > 0.5
    assert one.usage.prompt_tokens == 5


async def test_embeddings_fall_back_past_a_provider_without_them(
    client: openai.AsyncOpenAI, ups: Upstreams
) -> None:
    raw = await client.embeddings.with_raw_response.create(
        model="embed-fallback", input="hello", encoding_format="float"
    )
    assert raw.headers["x-switchboard-provider"] == "openai"
    assert raw.headers["x-switchboard-attempts"] == "2"
    assert ups.anthropic.requests == []


async def test_embedding_errors_are_sdk_exceptions(
    client: openai.AsyncOpenAI, ups: Upstreams
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await client.embeddings.create(model="demo/echo", input="x")
    assert info.value.code == "unsupported_feature"
    with pytest.raises(openai.BadRequestError):
        await client.embeddings.create(model="demo/embed", input="")
    ups.openai.script(Status(404, message="The model `x` does not exist", code="model_not_found"))
    with pytest.raises(openai.NotFoundError):
        await client.embeddings.create(model="openai/text-embedding-x", input="x")


async def test_embeddings_are_in_the_ledger(
    client: openai.AsyncOpenAI, gateway: RunningGateway
) -> None:
    key = gateway.create_key("ledger-embed")
    async with openai.AsyncOpenAI(
        base_url=f"{gateway.http_url}/v1", api_key=key, max_retries=0
    ) as mine:
        result = await mine.embeddings.create(
            model="openai/text-embedding-3-small", input="one two three four"
        )
    assert result.usage.prompt_tokens == 4
    # Rows are written in batches off the request path; the CLI reads the ledger file.
    for _ in range(50):
        out = gateway.cli("usage", "--json")
        rows = json.loads(out.stdout)["keys"]
        mine_rows = [r for r in rows if r["name"] == "ledger-embed"]
        if mine_rows:
            break
        import asyncio

        await asyncio.sleep(0.1)
    assert mine_rows and mine_rows[0]["requests"] == 1
    assert mine_rows[0]["input_tokens"] == 4 and mine_rows[0]["output_tokens"] == 0
    assert mine_rows[0]["total_nanousd"] == 80  # 4 tokens at $0.02 per million
