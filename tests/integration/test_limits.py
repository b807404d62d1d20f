"""Per-key rate limits and monthly budgets against a real gateway process, over gRPC and HTTP:
RESOURCE_EXHAUSTED with RetryInfo + QuotaFailure, HTTP 429 with Retry-After and OpenAI's error
body, TPM reservations that reconcile to actual usage, and budgets that survive a restart."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc
import grpc.aio
import httpx
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from switchboard.v1 import chat_pb2, chat_pb2_grpc, types_pb2

from server.core.context import KeyLimits
from server.routing.cost import input_token_bound
from server.store.embedded.keys import SqliteKeyStore
from tests.fakes.openai_upstream import Delay, FakeOpenAI, Reply, Usage
from tests.support.server import RunningGateway, running_gateway, start_gateway

# $0.01 per token in and out: the demo's word counts cost whole cents.
DEMO_PRICED = {"provider": "demo", "model": "echo", "price": {"input": 10_000, "output": 10_000}}


@dataclass
class Key:
    id: str
    secret: str

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.secret}"),)

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.secret}"}


def new_key(gw: RunningGateway, name: str, **limits: float) -> Key:
    """A key written to the gateway's key file (as `switchboard keys create` does), with its id."""
    store = SqliteKeyStore(gw.data_dir)
    try:
        record, secret = store.create_sync(name, KeyLimits(**limits))  # type: ignore[arg-type]
    finally:
        store.close()
    return Key(record.id, secret)


def chat_request(text: str = "hello there", *, max_tokens: int = 16, model: str = "demo/echo"):
    req = chat_pb2.ChatRequest(model=model, max_tokens=max_tokens)
    req.messages.add(role=types_pb2.ROLE_USER).content.add().text = text
    return req


def http_body(text: str = "hello there", *, max_tokens: int = 16, stream: bool = False) -> dict:
    return {
        "model": "demo/echo",
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
        "stream": stream,
    }


@dataclass
class Refusal:
    code: grpc.StatusCode
    reason: str
    retry_after: float | None
    violations: list[tuple[str, str]]
    message: str


def refusal(err: grpc.aio.AioRpcError) -> Refusal:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None, err
    return details_of(status, err.code())


def details_of(status: status_pb2.Status, code: grpc.StatusCode) -> Refusal:
    reason, retry, violations = "", None, []
    for any_ in status.details:
        if any_.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            any_.Unpack(info)
            reason = info.reason
        elif any_.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            ri = error_details_pb2.RetryInfo()
            any_.Unpack(ri)
            retry = ri.retry_delay.ToNanoseconds() / 1e9
        elif any_.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
            qf = error_details_pb2.QuotaFailure()
            any_.Unpack(qf)
            violations = [(v.subject, v.description) for v in qf.violations]
    return Refusal(code, reason, retry, violations, status.message)


@pytest.fixture
async def demo_gw() -> AsyncIterator[RunningGateway]:
    async with running_gateway(config={"deployments": [DEMO_PRICED]}) as gw:
        yield gw


async def test_rpm_limit_over_grpc_and_http(demo_gw: RunningGateway) -> None:
    gw = demo_gw
    fast = new_key(gw, "sixty-rpm", requests_per_minute=60)
    slow = new_key(gw, "two-rpm", requests_per_minute=2)
    async with grpc.aio.insecure_channel(gw.grpc_target) as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)

        # 60 per minute: a burst of 60 (plus what refills meanwhile, one a second), then 429.
        served, refused = 0, None
        for _ in range(200):
            try:
                await stub.Chat(chat_request(), metadata=fast.metadata)
                served += 1
            except grpc.aio.AioRpcError as err:
                refused = refusal(err)
                break
        assert refused is not None, "never limited"
        assert 60 <= served < 70
        assert refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert refused.reason == "RATE_LIMITED"
        assert refused.violations == [(f"key:{fast.id}", "requests_per_minute limit of 60 reached")]
        assert refused.retry_after is not None and 0 < refused.retry_after <= 1.0
        # Allowed again once the bucket has refilled for one request.
        await asyncio.sleep(refused.retry_after)
        await stub.Chat(chat_request(), metadata=fast.metadata)

        # 2 per minute, streamed: the third stream is refused before its first frame.
        for _ in range(2):
            frames = [
                f
                async for f in stub.StreamChat(
                    chat_pb2.StreamChatRequest(chat=chat_request()), metadata=slow.metadata
                )
            ]
            assert frames[-1].WhichOneof("frame") == "end"
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in stub.StreamChat(
                chat_pb2.StreamChatRequest(chat=chat_request()), metadata=slow.metadata
            ):
                pass
        streamed = refusal(info.value)
        assert streamed.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert streamed.retry_after is not None and 29.0 < streamed.retry_after <= 30.0
        assert streamed.violations[0][0] == f"key:{slow.id}"

    # The same key over HTTP, chat and SSE alike: 429 + Retry-After, OpenAI's error shape.
    async with httpx.AsyncClient(base_url=gw.http_url, headers=slow.headers, timeout=10) as http:
        for stream in (False, True):
            r = await http.post("/v1/chat/completions", json=http_body(stream=stream))
            assert r.status_code == 429, r.text
            assert r.headers["content-type"].startswith("application/json")
            assert 29 <= int(r.headers["retry-after"]) <= 30
            assert 28_000 < int(r.headers["retry-after-ms"]) <= 30_000
            error = r.json()["error"]
            assert error["code"] == "rate_limit_exceeded"
            assert "2 requests per minute" in error["message"]
        # Other keys are not affected.
        r = await http.post(
            "/v1/chat/completions",
            json=http_body(),
            headers={"authorization": f"Bearer {gw.master_key}"},
        )
        assert r.status_code == 200


async def test_tpm_reserves_max_tokens_in_flight_and_reconciles_to_usage() -> None:
    async with FakeOpenAI() as up:
        config = {
            "deployments": [
                {"provider": "openai", "model": "gpt-4o-mini", "price": {"input": 1, "output": 2}}
            ]
        }
        env = {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": up.base_url}
        async with running_gateway(env=env, config=config) as gw:
            key = new_key(gw, "tpm", tokens_per_minute=1000)
            req = chat_request("how many tokens", max_tokens=600, model="openai/gpt-4o-mini")
            up.script(Delay(1.0, then=Reply(text="ok", usage=Usage(20, 10))))
            async with grpc.aio.insecure_channel(gw.grpc_target) as channel:
                stub = chat_pb2_grpc.ChatServiceStub(channel)
                first = asyncio.ensure_future(stub.Chat(req, metadata=key.metadata))
                await up.wait_for_requests(1)
                # The call in flight reserved its input's upper bound plus max_tokens: the
                # same again does not fit.
                reserved = input_token_bound(req) + 600
                assert 2 * reserved > 1000
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.Chat(req, metadata=key.metadata)
                held = refusal(info.value)
                assert held.code == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert held.reason == "RATE_LIMITED"
                assert held.violations[0][0] == f"key:{key.id}"
                assert held.violations[0][1].startswith("tokens_per_minute limit of 1000 reached")
                # The missing tokens refill at 1000/60 per second.
                wait = (2 * reserved - 1000) / (1000 / 60)
                assert held.retry_after is not None
                assert held.retry_after == pytest.approx(wait, abs=2.0)
                assert len(up.requests) == 1
                response = await first
                assert response.usage.input_tokens + response.usage.output_tokens == 30
                # Reconciled to the 30 tokens it used: the same request fits now.
                await stub.Chat(req, metadata=key.metadata)
                assert len(up.requests) == 2

            # More than the whole minute's allowance waits for a full bucket (~2 requests used).
            async with httpx.AsyncClient(base_url=gw.http_url, headers=key.headers) as http:
                body = {
                    "model": "openai/gpt-4o-mini",
                    "messages": [{"role": "user", "content": "long answer please"}],
                    "max_tokens": 5000,
                }
                r = await http.post("/v1/chat/completions", json=body)
                assert r.status_code == 429, r.text
                assert 1 <= int(r.headers["retry-after"]) <= 60
                assert "tokens per minute" in r.json()["error"]["message"]


async def test_monthly_budget_refuses_once_spent_and_after_a_restart(tmp_path: Path) -> None:
    config = {"deployments": [DEMO_PRICED]}
    first = chat_request("a " * 60, max_tokens=5)
    # $0.01 a token: the first call reserves its upper bound, which the budget just covers.
    bound = round((input_token_bound(first) + 5) * 0.01, 2) + 0.01
    async with running_gateway(config=config, data_dir=tmp_path) as gw:
        spender = new_key(gw, "spender", monthly_budget_usd=bound)
        careful = new_key(gw, "careful", monthly_budget_usd=bound)
        async with grpc.aio.insecure_channel(gw.grpc_target) as channel:
            stub = chat_pb2_grpc.ChatServiceStub(channel)
            # The demo counts 60 input + 5 output = $0.65: within the budget, as reserved.
            response = await stub.Chat(first, metadata=spender.metadata)
            assert response.cost.total_usd == pytest.approx(0.65)
            # What is left does not cover the next call's bound: refused, no Retry-After
            # (waiting is not the remedy; a smaller request is).
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Chat(chat_request("a " * 60, max_tokens=5), metadata=spender.metadata)
            too_big = refusal(info.value)
            assert too_big.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert too_big.reason == "BUDGET_EXCEEDED" and too_big.retry_after is None
            assert "lower max_tokens" in too_big.message
            await stub.Chat(chat_request("hi", max_tokens=10), metadata=careful.metadata)

        # The operator lowers the budget below what was spent: refused until the month ends.
        conn = sqlite3.connect(gw.data_dir / "keys.db")
        with conn:
            conn.execute(
                "UPDATE gateway_keys SET monthly_budget_usd = 0.5 WHERE id = ?", (spender.id,)
            )
        conn.close()
        async with grpc.aio.insecure_channel(gw.grpc_target) as channel:
            stub = chat_pb2_grpc.ChatServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Chat(chat_request("hi", max_tokens=1), metadata=spender.metadata)
            spent = refusal(info.value)
            assert spent.reason == "BUDGET_EXCEEDED"
            assert spent.violations == [
                (f"key:{spender.id}", "monthly_budget_usd limit of $0.50 reached ($0.65 spent)")
            ]
            assert spent.retry_after == pytest.approx(seconds_to_next_month(), abs=30)
        async with httpx.AsyncClient(base_url=gw.http_url, headers=spender.headers) as http:
            r = await http.post("/v1/chat/completions", json=http_body(max_tokens=1))
            assert r.status_code == 429
            assert r.json()["error"]["code"] == "insufficient_quota"
            assert abs(int(r.headers["retry-after"]) - seconds_to_next_month()) < 30

    # The month's spend is read back from the usage ledger by the next process.
    gw2 = await asyncio.to_thread(start_gateway, config=config, data_dir=tmp_path)
    try:
        async with grpc.aio.insecure_channel(gw2.grpc_target) as channel:
            stub = chat_pb2_grpc.ChatServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Chat(chat_request("hi", max_tokens=1), metadata=spender.metadata)
            assert refusal(info.value).reason == "BUDGET_EXCEEDED"
            await stub.Chat(chat_request("hi", max_tokens=10), metadata=careful.metadata)
    finally:
        await asyncio.to_thread(gw2.terminate)
        gw2.close()


def seconds_to_next_month() -> float:
    now = datetime.now(UTC)
    year, month = (now.year + 1, 1) if now.month == 12 else (now.year, now.month + 1)
    return datetime(year, month, 1, tzinfo=UTC).timestamp() - time.time()
