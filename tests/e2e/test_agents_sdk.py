"""The OpenAI Agents SDK (``openai-agents``) through the gateway, with its default model.

The SDK's default model is ``OpenAIResponsesModel``: it speaks ``/v1/responses``, strips an
``openai/`` prefix (so the gateway sees the bare name ``gpt-4o-mini`` and resolves it), replays
the previous output items as input, and runs function tools itself. The gateway serves it from
a ``FakeOpenAI`` upstream on loopback, so the test sees what the model was sent.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import agents
import openai
import pytest
import pytest_asyncio

from tests.fakes.common import ToolCall
from tests.fakes.openai_upstream import FakeOpenAI, Reply
from tests.support.server import RunningGateway, running_gateway

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def setup() -> AsyncIterator[tuple[FakeOpenAI, RunningGateway]]:
    async with FakeOpenAI() as up:
        env = {"OPENAI_API_KEY": "sk-agents-e2e", "OPENAI_BASE_URL": up.base_url}
        async with running_gateway(env=env) as gw:
            yield up, gw


@pytest.fixture(autouse=True)
def _no_tracing() -> None:
    # Tracing would export to OpenAI's own servers; this test stays on loopback.
    agents.set_tracing_disabled(True)


@pytest.mark.parametrize("stream", [False, True], ids=["run", "run_streamed"])
async def test_an_agent_with_a_function_tool(
    setup: tuple[FakeOpenAI, RunningGateway], stream: bool
) -> None:
    up, gw = setup
    up.clear()
    calls: list[str] = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        calls.append(city)
        return f"sunny in {city}"

    client = openai.AsyncOpenAI(base_url=f"{gw.http_url}/v1", api_key=gw.create_key("agents"))
    agents.set_default_openai_client(client, use_for_tracing=False)
    agent = agents.Agent(
        name="weather",
        instructions="Answer with the weather tool.",
        model="openai/gpt-4o-mini",
        tools=[get_weather],
    )
    up.script(
        Reply(tool_calls=[ToolCall("get_weather", {"city": "Paris"}, id="call_agents_1")]),
        Reply(text="It is sunny in Paris."),
    )
    if stream:
        result = agents.Runner.run_streamed(agent, "What is the weather in Paris?")
        events = [event async for event in result.stream_events()]
        assert any(e.type == "raw_response_event" for e in events)
    else:
        result = await agents.Runner.run(agent, "What is the weather in Paris?")
    assert result.final_output == "It is sunny in Paris."
    assert calls == ["Paris"]
    first, second = up.requests
    # The bare name the SDK sent was resolved to the openai deployment.
    assert first.json["model"] == second.json["model"] == "gpt-4o-mini"
    assert first.json["messages"][0] == {
        "role": "system",
        "content": "Answer with the weather tool.",
    }
    assert first.json["tools"][0]["function"]["name"] == "get_weather"
    tool_messages = [m for m in second.json["messages"] if m["role"] == "tool"]
    assert tool_messages == [
        {"role": "tool", "tool_call_id": "call_agents_1", "content": "sunny in Paris"}
    ]
    assistant = [m for m in second.json["messages"] if m["role"] == "assistant"]
    assert json.loads(assistant[0]["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
    await client.close()
