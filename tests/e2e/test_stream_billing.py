"""Streams that end early are billed for what they delivered, on every transport: a client that
disconnects mid-stream (OpenAI and Anthropic dialects, gRPC StreamChat and Converse), and an
upstream that sends its usage and then holds the connection open."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import httpx
import pytest
import pytest_asyncio
from switchboard.v1 import chat_pb2, chat_pb2_grpc, types_pb2

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.anthropic_upstream import Reply as AnthropicReply
from tests.fakes.anthropic_upstream import Usage as AnthropicUsage
from tests.fakes.openai_upstream import FakeOpenAI, Reply, Stall, Usage
from tests.support.server import RunningGateway, running_gateway

pytestmark = pytest.mark.asyncio(loop_scope="module")

PRICE = {"input": 1.0, "output": 2.0}
CONFIG = {
    "deployments": [
        {"provider": "openai", "model": "m", "price": PRICE},
        {"provider": "anthropic", "model": "claude-haiku-4-5", "price": PRICE},
    ],
    "retry": {"max_attempts_per_deployment": 1},
    "logging": {"requests": False},
}
LONG = " ".join(f"word{i}" for i in range(60))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env() -> AsyncIterator[tuple[FakeOpenAI, FakeAnthropic, RunningGateway]]:
    async with (
        FakeOpenAI() as oai,
        FakeAnthropic() as ant,
        running_gateway(
            env={
                "OPENAI_API_KEY": "sk-billing-openai-0123456789",
                "OPENAI_BASE_URL": oai.base_url,
                "ANTHROPIC_API_KEY": "sk-ant-billing-0123456789",
                "ANTHROPIC_BASE_URL": ant.base_url,
            },
            config=CONFIG,
        ) as gw,
    ):
        yield oai, ant, gw


def row(data_dir: Path, request_id: str) -> dict[str, Any] | None:
    conn = sqlite3.connect(data_dir / "usage.db")
    conn.row_factory = sqlite3.Row
    try:
        found = conn.execute("SELECT * FROM usage WHERE request_id = ?", (request_id,)).fetchone()
        return dict(found) if found else None
    finally:
        conn.close()


async def wait_row(gw: RunningGateway, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = row(gw.data_dir, request_id)
        if found is not None:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"no ledger row for {request_id}")


def assert_billed_delivery(found: dict[str, Any], *, input_tokens: int | None = None) -> None:
    assert found["outcome"] == "cancelled" and found["stream"] == 1
    assert found["output_tokens"] >= 1 and found["input_tokens"] >= 1
    if input_tokens is not None:
        assert found["input_tokens"] == input_tokens
    assert found["total_nanousd"] > 0
    assert found["total_nanousd"] == found["input_nanousd"] + found["output_nanousd"]


async def read_then_leave(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], rid: str
) -> None:
    headers = {"x-request-id": rid}
    async with client.stream("POST", path, json=body, headers=headers) as response:
        assert response.status_code == 200
        chunks = 0
        async for _ in response.aiter_bytes():
            chunks += 1
            if chunks >= 3:
                break


async def test_openai_dialect_client_gone(
    env: tuple[FakeOpenAI, FakeAnthropic, RunningGateway],
) -> None:
    oai, _, gw = env
    oai.script(Reply(text=LONG, chunk_delay=0.05))
    body = {"model": "openai/m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with httpx.AsyncClient(
        base_url=gw.http_url, headers={"authorization": f"Bearer {gw.master_key}"}, timeout=10
    ) as client:
        await read_then_leave(client, "/v1/chat/completions", body, "bill-openai-1")
    assert_billed_delivery(await wait_row(gw, "bill-openai-1"))


async def test_anthropic_upstream_reported_input_is_billed_as_reported(
    env: tuple[FakeOpenAI, FakeAnthropic, RunningGateway],
) -> None:
    _, ant, gw = env
    ant.script(AnthropicReply(text=LONG, chunk_delay=0.05, usage=AnthropicUsage(777, 60)))
    body = {
        "model": "anthropic/claude-haiku-4-5",
        "max_tokens": 200,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
    }
    async with httpx.AsyncClient(
        base_url=gw.http_url, headers={"x-api-key": gw.master_key}, timeout=10
    ) as client:
        await read_then_leave(client, "/v1/messages", body, "bill-anthropic-1")
    # message_start carried the input tokens: they are billed as the upstream reported them.
    assert_billed_delivery(await wait_row(gw, "bill-anthropic-1"), input_tokens=777)


def _chat(model: str) -> chat_pb2.ChatRequest:
    return chat_pb2.ChatRequest(
        model=model,
        messages=[
            types_pb2.Message(role=types_pb2.ROLE_USER, content=[types_pb2.ContentPart(text="hi")])
        ],
    )


async def test_grpc_stream_chat_client_gone(
    env: tuple[FakeOpenAI, FakeAnthropic, RunningGateway],
) -> None:
    oai, _, gw = env
    oai.script(Reply(text=LONG, chunk_delay=0.05))
    metadata = (("authorization", f"Bearer {gw.master_key}"), ("x-request-id", "bill-grpc-1"))
    async with grpc.aio.insecure_channel(gw.grpc_target) as channel:
        call = chat_pb2_grpc.ChatServiceStub(channel).StreamChat(
            chat_pb2.StreamChatRequest(chat=_chat("openai/m")), metadata=metadata, timeout=10
        )
        frames = 0
        async for _ in call:
            frames += 1
            if frames >= 3:
                break
        call.cancel()
    assert_billed_delivery(await wait_row(gw, "bill-grpc-1"))


async def test_grpc_converse_client_gone(
    env: tuple[FakeOpenAI, FakeAnthropic, RunningGateway],
) -> None:
    oai, _, gw = env
    oai.script(Reply(text=LONG, chunk_delay=0.05))
    metadata = (("authorization", f"Bearer {gw.master_key}"), ("x-request-id", "bill-conv"))
    async with grpc.aio.insecure_channel(gw.grpc_target) as channel:
        call = chat_pb2_grpc.ChatServiceStub(channel).Converse(metadata=metadata, timeout=10)
        await call.write(chat_pb2.ConverseRequest(start=_chat("openai/m")))
        for _ in range(3):
            await call.read()
        call.cancel()
    # Each Converse turn is a request of its own: `<request id>.<turn>`.
    assert_billed_delivery(await wait_row(gw, "bill-conv.1"))


async def test_usage_then_held_open_is_a_complete_stream(
    env: tuple[FakeOpenAI, FakeAnthropic, RunningGateway],
) -> None:
    oai, _, gw = env
    reply = Reply(text="short answer here", usage=Usage(321, 3))
    # Everything but the final [DONE]: the finish chunk, then the usage chunk, then silence.
    oai.script(Stall(after_chunks=6, reply=reply))
    body = {
        "model": "openai/m",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with httpx.AsyncClient(
        base_url=gw.http_url, headers={"authorization": f"Bearer {gw.master_key}"}, timeout=10
    ) as client:
        with contextlib.suppress(httpx.ReadTimeout):
            r = await client.post(
                "/v1/chat/completions", json=body, headers={"x-request-id": "bill-held"}
            )
    assert r.status_code == 200 and r.text.rstrip().endswith("data: [DONE]")
    found = await wait_row(gw, "bill-held")
    assert (found["outcome"], found["input_tokens"], found["output_tokens"]) == ("success", 321, 3)
