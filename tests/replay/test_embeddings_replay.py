"""The recorded embeddings traffic (../shared/fixtures/provider-wire/embeddings): what
``/v1/embeddings`` serves, and the upstream answers the adapters parse.

OpenAI recordings: the recorded request is sent to a running gateway as it is (its bare model
name resolves to the ``openai`` deployment) and the recorded answer is what the loopback
``FakeOpenAI`` replies, so the gateway's answer must be the recorded one again: the same
vectors (float arrays number for number, base64 strings byte for byte), ``usage``, and the
same shape. Gemini recordings: the adapter's request for the same input must be the recorded
``batchEmbedContents`` request, and the recorded answer must decode exactly. Recorded errors
map to the gateway's error for their status.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from google.protobuf import struct_pb2
from switchboard.v1 import chat_pb2

from server.core.errors import UpstreamBadRequestError, UpstreamNotFoundError
from server.providers.base import UpstreamCall
from server.providers.gemini import GeminiProvider
from server.providers.gemini.embed import decode_embed_response, encode_embed_request
from server.providers.http_client import close_http_client
from tests.fakes.common import Json, Status
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fixtures_dir import shared_fixtures_dir
from tests.replay.openai_wire import load_cassette, post_json
from tests.support.server import RunningGateway, running_gateway

pytestmark = pytest.mark.asyncio(loop_scope="module")


def fixtures() -> Path:
    return shared_fixtures_dir() / "provider-wire" / "embeddings"


def _body(part: dict[str, Any]) -> Any:
    if "parsed_body" in part:
        return part["parsed_body"]
    return part["body"]["content"]


def _status(response: dict[str, Any]) -> int:
    status = response["status"]
    return status if isinstance(status, int) else status["code"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def setup() -> AsyncIterator[tuple[FakeOpenAI, RunningGateway, str]]:
    async with FakeOpenAI() as up:
        env = {"OPENAI_API_KEY": "sk-replay-embed", "OPENAI_BASE_URL": up.base_url}
        async with running_gateway(env=env) as gw:
            yield up, gw, gw.create_key("replay-embed")


async def post(gw: RunningGateway, key: str, body: Any) -> tuple[int, Any]:
    status, _, text = await post_json(f"{gw.http_url}/v1/embeddings", key, body)
    return status, json.loads(text)


def without_cost(body: dict[str, Any]) -> dict[str, Any]:
    usage = {k: v for k, v in body["usage"].items() if k != "cost_usd"}
    return {**body, "usage": usage}


async def test_recorded_float_answer_is_served_exactly(
    setup: tuple[FakeOpenAI, RunningGateway, str],
) -> None:
    up, gw, key = setup
    recorded = json.loads((fixtures() / "vercel-ai__openai-embedding.json").read_text())
    up.script(Json(recorded))
    status, body = await post(
        gw, key, {"model": "text-embedding-3-small", "input": ["sunny day", "rainy day"]}
    )
    assert status == 200
    # Number for number, the recorded body again (model as the caller named it).
    assert without_cost(body) == recorded
    assert up.last.json["model"] == "text-embedding-3-small"


async def test_recorded_base64_request_and_answer(
    setup: tuple[FakeOpenAI, RunningGateway, str],
) -> None:
    up, gw, key = setup
    (interaction,) = load_cassette(fixtures() / "pydantic-ai__TestOpenAI.test_query.yaml")
    request, recorded = _body(interaction["request"]), _body(interaction["response"])
    up.script(Json(recorded))
    status, body = await post(gw, key, request)
    assert status == 200
    # The base64 float32 vector comes back byte for byte; the rest of the body too.
    assert body["data"][0]["embedding"] == recorded["data"][0]["embedding"]
    assert len(body["data"][0]["embedding"]) == 8192
    assert without_cost(body) == recorded
    assert up.last.json["input"] == request["input"]


async def test_recorded_error_answers(setup: tuple[FakeOpenAI, RunningGateway, str]) -> None:
    up, gw, key = setup
    (interaction,) = load_cassette(fixtures() / "pydantic-ai__TestOpenAI.test_embed_error.yaml")
    request, recorded = _body(interaction["request"]), _body(interaction["response"])
    # The bare name is unknown to the gateway: the same 404 before any upstream call.
    up.clear()
    status, body = await post(gw, key, request)
    assert status == _status(interaction["response"]) == 404
    assert set(body["error"]) == set(recorded["error"])
    assert body["error"]["code"] == recorded["error"]["code"] == "model_not_found"
    assert up.requests == []
    # Addressed to the openai deployment, the upstream's recorded 404 is a 404 too.
    up.script(Status(404, body=recorded))
    status, body = await post(gw, key, {**request, "model": "openai/nonexistent"})
    assert status == 404 and set(body["error"]) == set(recorded["error"])
    limit = json.loads((fixtures() / "vercel-ai__issue-10082-token-limit-error.json").read_text())
    up.script(Status(400, body=limit))
    status, body = await post(gw, key, {"model": "openai/text-embedding-3-small", "input": "x"})
    assert status == 400 and "max 300000 tokens per request" in body["error"]["message"]


@pytest.fixture
async def _closed_client() -> AsyncIterator[None]:
    yield
    await close_http_client()


async def test_gemini_request_and_answer_as_recorded(_closed_client: None) -> None:
    (interaction,) = load_cassette(
        fixtures() / "pydantic-ai__TestGoogle.test_query_with_dimensions.yaml"
    )
    sent, recorded = _body(interaction["request"]), _body(interaction["response"])
    one = sent["requests"][0]
    request = chat_pb2.EmbedRequest(model="gemini/gemini-embedding-001", dimensions=768)
    request.inputs.add(text=one["content"]["parts"][0]["text"])
    request.passthrough.CopyFrom(struct_pb2.Struct(fields={}))
    request.passthrough["task_type"] = one["taskType"]
    assert encode_embed_request(request, "gemini-embedding-001") == sent
    async with FakeGemini() as up:
        up.script(Json(recorded))
        provider = GeminiProvider("gemini", up.base_url)
        answer = await provider.embed(request, UpstreamCall("gemini-embedding-001", "AIza-k"))
        assert up.last.path.endswith("/models/gemini-embedding-001:batchEmbedContents")
        assert up.last.json == sent
    values = recorded["embeddings"][0]["values"]
    assert len(values) == 768 and list(answer.embeddings[0].values) == values
    assert answer.usage.input_tokens == 0  # Google reported none; the core estimates it

    batch = json.loads(
        (fixtures() / "vercel-ai__google-embedding-2-multimodal-batch.json").read_text()
    )
    decoded = decode_embed_response(batch, 2, "gemini")
    assert [list(e.values) for e in decoded.embeddings] == [
        e["values"] for e in batch["embeddings"]
    ]
    assert decoded.usage.input_tokens == batch["usageMetadata"]["promptTokenCount"] == 12


async def test_gemini_recorded_errors(_closed_client: None) -> None:
    (interaction,) = load_cassette(fixtures() / "pydantic-ai__TestGoogle.test_embed_error.yaml")
    too_many = json.loads(
        (fixtures() / "vercel-ai__issue-16101-google-batch-embed-150-error.json").read_text()
    )
    request = chat_pb2.EmbedRequest(model="gemini/x")
    request.inputs.add(text="Hello, world!")
    async with FakeGemini() as up:
        provider = GeminiProvider("gemini", up.base_url)
        up.script(Status(404, body=_body(interaction["response"])))
        with pytest.raises(UpstreamNotFoundError):
            await provider.embed(request, UpstreamCall("nonexistent-model", "AIza-k"))
        up.script(Status(too_many["status"], body=too_many["body"]))
        with pytest.raises(UpstreamBadRequestError) as info:
            await provider.embed(request, UpstreamCall("gemini-embedding-001", "AIza-k"))
        assert "at most 100 requests" in info.value.message
