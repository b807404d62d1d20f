"""``ChatRequest.reasoning_effort`` on every adapter, and what the demo model refuses."""

from __future__ import annotations

import pytest
from switchboard.v1 import chat_pb2, types_pb2

from server.core.errors import UnsupportedFeatureError
from server.providers.anthropic.encode import encode_request as anthropic_encode
from server.providers.base import UpstreamCall
from server.providers.demo import DemoProvider
from server.providers.gemini.encode import encode_request as gemini_encode
from server.providers.openai_compat.encode import encode_request as openai_encode

_R = types_pb2


def request(
    effort: int = _R.REASONING_EFFORT_UNSPECIFIED, **fields: object
) -> chat_pb2.ChatRequest:
    out = chat_pb2.ChatRequest(model="x", reasoning_effort=effort, **fields)  # type: ignore[arg-type]
    out.messages.add(role=_R.ROLE_USER).content.add(text="hi")
    return out


def test_openai_compatible_upstreams_get_reasoning_effort() -> None:
    body = openai_encode(request(_R.REASONING_EFFORT_HIGH), "o4-mini", stream=False)
    assert body["reasoning_effort"] == "high"
    assert "reasoning_effort" not in openai_encode(request(), "gpt-4o-mini", stream=False)


def test_anthropic_gets_a_thinking_budget_below_max_tokens() -> None:
    body = anthropic_encode(request(_R.REASONING_EFFORT_MEDIUM), "claude-sonnet-4-5").body
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 8192}
    capped = anthropic_encode(
        request(_R.REASONING_EFFORT_HIGH, max_tokens=5000), "claude-sonnet-4-5"
    ).body
    assert capped["thinking"]["budget_tokens"] == 4999
    assert (
        "thinking"
        not in anthropic_encode(request(_R.REASONING_EFFORT_NONE), "claude-sonnet-4-5").body
    )
    with pytest.raises(UnsupportedFeatureError) as info:
        anthropic_encode(request(_R.REASONING_EFFORT_LOW, max_tokens=100), "claude-sonnet-4-5")
    assert info.value.param == "reasoning_effort"


def test_gemini_gets_a_thinking_budget() -> None:
    config = gemini_encode(request(_R.REASONING_EFFORT_LOW))["generationConfig"]
    assert config["thinkingConfig"] == {"thinkingBudget": 1024, "includeThoughts": True}
    off = gemini_encode(request(_R.REASONING_EFFORT_NONE))["generationConfig"]
    assert off["thinkingConfig"] == {"thinkingBudget": 0, "includeThoughts": False}


async def test_the_demo_refuses_what_it_cannot_honour() -> None:
    demo = DemoProvider()
    call = UpstreamCall(model="echo", api_key="")
    logprobs = request()
    logprobs.passthrough["logprobs"] = True
    logprobs.passthrough["top_logprobs"] = 2
    with pytest.raises(UnsupportedFeatureError) as info:
        await demo.chat(logprobs, call)
    assert info.value.param == "logprobs" and "top_logprobs" in info.value.message
    with pytest.raises(UnsupportedFeatureError):
        await demo.chat(request(_R.REASONING_EFFORT_HIGH), call)
    # Effort `none` asks for nothing the demo lacks.
    answer = await demo.chat(request(_R.REASONING_EFFORT_NONE), call)
    assert answer.message.content[0].text == "Echo: hi"
    with pytest.raises(UnsupportedFeatureError):
        await demo.chat(request(), UpstreamCall(model="embed", api_key=""))


async def test_demo_embeddings_respect_dimensions_and_refuse_extras() -> None:
    demo = DemoProvider()
    embed = chat_pb2.EmbedRequest(model="demo/embed", dimensions=4)
    embed.inputs.add(text="a b")
    out = await demo.embed(embed, UpstreamCall(model="embed", api_key=""))
    assert len(out.embeddings[0].values) == 4
    assert out == await demo.embed(embed, UpstreamCall(model="embed", api_key=""))
    embed.passthrough["task_type"] = "x"
    with pytest.raises(UnsupportedFeatureError):
        await demo.embed(embed, UpstreamCall(model="embed", api_key=""))
