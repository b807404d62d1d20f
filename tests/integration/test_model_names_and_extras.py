"""Model names clients send, and the smaller surfaces the same clients find, on a real gateway.

One gateway with Anthropic enabled (a ``FakeAnthropic`` on loopback), OpenAI not: a model of a
provider that is not enabled is a 404 naming ``OPENAI_API_KEY`` on every dialect and on gRPC;
bare names and aliases resolve; ``/v1/messages/count_tokens`` is exact through Anthropic and an
estimate elsewhere; unknown paths under ``/v1/messages/`` are Anthropic-shaped 404s; embeddings
are held to the key's TPM like chat.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio
from switchboard.v1 import chat_pb2, chat_pb2_grpc, types_pb2

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.support.server import RunningGateway, running_gateway

pytestmark = pytest.mark.asyncio(loop_scope="module")

CONFIG = {"models": {"haiku": "anthropic/claude-haiku-4-5", "mini": "openai/gpt-4o-mini"}}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def setup() -> AsyncIterator[tuple[FakeAnthropic, RunningGateway]]:
    async with FakeAnthropic() as up:
        env = {"ANTHROPIC_API_KEY": "sk-ant-names", "ANTHROPIC_BASE_URL": up.base_url}
        async with running_gateway(env=env, config=CONFIG) as gw:
            yield up, gw


@pytest_asyncio.fixture(loop_scope="module")
async def http(setup: tuple[FakeAnthropic, RunningGateway]) -> AsyncIterator[httpx.AsyncClient]:
    _, gw = setup
    headers = {"authorization": f"Bearer {gw.create_key('names')}"}
    async with httpx.AsyncClient(base_url=gw.http_url, headers=headers, timeout=20) as client:
        yield client


def dialect_bodies(model: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("/v1/chat/completions", {"model": model, "messages": [{"role": "user", "content": "x"}]}),
        (
            "/v1/messages",
            {"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]},
        ),
        ("/v1/responses", {"model": model, "input": "x"}),
        ("/v1/embeddings", {"model": model, "input": "x"}),
    ]


def message_of(path: str, body: Any) -> str:
    return str(body["error"]["message"])


async def test_a_provider_that_is_not_enabled_is_named_on_every_dialect_and_grpc(
    setup: tuple[FakeAnthropic, RunningGateway], http: httpx.AsyncClient
) -> None:
    up, gw = setup
    for model in ("openai/gpt-4o-mini", "gpt-4o-mini", "mini"):
        for path, body in dialect_bodies(model):
            response = await http.post(path, json=body)
            assert response.status_code == 404, (path, model, response.text)
            message = message_of(path, response.json())
            assert "not enabled" in message and "OPENAI_API_KEY" in message, message
            if path == "/v1/messages":
                assert response.json()["error"]["type"] == "not_found_error"
    async with grpc.aio.insecure_channel(gw.grpc_target) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        request = chat_pb2.ChatRequest(
            model="openai/gpt-4o-mini",
            messages=[
                types_pb2.Message(
                    role=types_pb2.ROLE_USER, content=[types_pb2.ContentPart(text="x")]
                )
            ],
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Chat(request, metadata=[("authorization", f"Bearer {gw.master_key}")])
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert "OPENAI_API_KEY" in (info.value.details() or "")
    assert up.requests == []


async def test_bare_names_and_aliases_resolve(
    setup: tuple[FakeAnthropic, RunningGateway], http: httpx.AsyncClient
) -> None:
    up, _ = setup
    for model in ("claude-haiku-4-5", "haiku", "echo"):
        response = await http.post(
            "/v1/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        )
        assert response.status_code == 200, response.text
        assert response.json()["model"] == model
    assert [r.json["model"] for r in up.requests[-2:]] == ["claude-haiku-4-5"] * 2
    unknown = await http.post("/v1/responses", json={"model": "gpt-9", "input": "x"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"


async def test_count_tokens_is_exact_through_anthropic_and_estimated_elsewhere(
    setup: tuple[FakeAnthropic, RunningGateway], http: httpx.AsyncClient
) -> None:
    up, _ = setup
    body = {"messages": [{"role": "user", "content": "one two three"}], "system": "four five"}
    exact = await http.post(
        "/v1/messages/count_tokens", json={"model": "anthropic/claude-haiku-4-5", **body}
    )
    assert exact.status_code == 200 and exact.headers["x-switchboard-token-count"] == "exact"
    assert exact.json() == {"input_tokens": 5}  # the fake counts the words it was sent
    sent = up.last
    assert sent.path == "/v1/messages/count_tokens" and "max_tokens" not in sent.json
    estimate = await http.post("/v1/messages/count_tokens", json={"model": "demo/echo", **body})
    assert estimate.headers["x-switchboard-token-count"] == "estimate"
    assert estimate.json()["input_tokens"] > 0
    bad = await http.post("/v1/messages/count_tokens", json={"model": "demo/echo"})
    assert bad.status_code == 400 and bad.json()["type"] == "error"


async def test_unknown_paths_under_messages_are_anthropic_404s(http: httpx.AsyncClient) -> None:
    for method in ("GET", "POST", "DELETE"):
        response = await http.request(method, "/v1/messages/batches")
        assert response.status_code == 404
        body = response.json()
        assert body["type"] == "error" and body["error"]["type"] == "not_found_error"
        assert response.headers["request-id"]


async def test_embeddings_are_held_to_the_keys_tpm(
    setup: tuple[FakeAnthropic, RunningGateway],
) -> None:
    _, gw = setup
    key = gw.create_key("tpm-embed", tokens_per_minute=200)
    async with httpx.AsyncClient(
        base_url=gw.http_url, headers={"authorization": f"Bearer {key}"}, timeout=20
    ) as client:
        small = await client.post("/v1/embeddings", json={"model": "demo/embed", "input": "hi"})
        assert small.status_code == 200
        large = await client.post(
            "/v1/embeddings", json={"model": "demo/embed", "input": "word " * 400}
        )
        assert large.status_code == 429 and large.headers["retry-after"]
        assert large.json()["error"]["code"] == "rate_limit_exceeded"
