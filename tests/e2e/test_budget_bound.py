"""Spend never passes a budget, whatever the request carries: a fake upstream that bills a token
per three bytes of the request it receives (tool schemas, system prompt, passthrough fields
alike, as real tokenizers roughly do for JSON-heavy prompts), against keys with small budgets
and TPM limits."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.fakes.common import RecordedRequest
from tests.fakes.openai_upstream import Delay, FakeOpenAI, Reply, Usage
from tests.support.server import RunningGateway, running_gateway

pytestmark = pytest.mark.asyncio(loop_scope="module")

PRICE = {"input": 0.15, "output": 0.6}
CONFIG = {
    "deployments": [{"provider": "openai", "model": "gpt-4o-mini", "price": PRICE}],
    "logging": {"requests": False},
}


class BytesBilledUpstream(FakeOpenAI):
    """Bills what it received: a prompt token per three request bytes, and max_tokens out."""

    def default_reply(self, recorded: RecordedRequest) -> Reply:
        body = recorded.json if isinstance(recorded.json, dict) else {}
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or 200
        return Reply(text="ok " * 3, usage=Usage(len(recorded.body) // 3, int(limit)))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def upstream() -> AsyncIterator[BytesBilledUpstream]:
    async with BytesBilledUpstream() as up:
        yield up


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gw(upstream: BytesBilledUpstream) -> AsyncIterator[RunningGateway]:
    env = {"OPENAI_API_KEY": "sk-budget-bound-0123456789", "OPENAI_BASE_URL": upstream.base_url}
    async with running_gateway(env=env, config=CONFIG) as gateway:
        yield gateway


def big_schema_tool(properties: int = 500) -> dict[str, Any]:
    props = {
        f"field_{i}": {"type": "string", "description": f"Description of field {i}. " * 6}
        for i in range(properties)
    }
    return {
        "type": "function",
        "function": {"name": "fill_form", "parameters": {"type": "object", "properties": props}},
    }


def spent(gw: RunningGateway, key_name: str) -> int:
    conn = sqlite3.connect(gw.data_dir / "usage.db")
    try:
        keys = sqlite3.connect(gw.data_dir / "keys.db")
        (key_id,) = keys.execute(
            "SELECT id FROM gateway_keys WHERE name = ?", (key_name,)
        ).fetchone()
        keys.close()
        (total,) = conn.execute(
            "SELECT COALESCE(SUM(total_nanousd), 0) FROM usage WHERE key_id = ?", (key_id,)
        ).fetchone()
        return int(total)
    finally:
        conn.close()


@pytest.mark.parametrize("budget", [0.0005, 0.05])
async def test_an_oversized_schema_cannot_outspend_the_budget(
    gw: RunningGateway, budget: float
) -> None:
    name = f"schema-{budget}"
    key = gw.create_key(name, monthly_budget_usd=budget)
    body = {
        "model": "openai/gpt-4o-mini",
        "messages": [{"role": "user", "content": "fill the form"}],
        "tools": [big_schema_tool()],
        "max_tokens": 50,
    }
    served = 0
    async with httpx.AsyncClient(
        base_url=gw.http_url, headers={"authorization": f"Bearer {key}"}, timeout=30
    ) as http:
        for _ in range(40):
            r = await http.post("/v1/chat/completions", json=body)
            if r.status_code == 429:
                assert r.json()["error"]["code"] == "insufficient_quota"
                break
            assert r.status_code == 200, r.text
            served += 1
        else:
            pytest.fail("the budget never refused a request")
    await _flush(gw)
    # Every request billed what the upstream counted, and the total stays within the budget.
    assert spent(gw, name) <= round(budget * 1e9)
    if budget >= 0.05:
        assert served >= 1


async def test_tpm_holds_in_flight_requests_to_what_they_may_bill(
    gw: RunningGateway, upstream: BytesBilledUpstream
) -> None:
    body = {
        "model": "openai/gpt-4o-mini",
        "messages": [{"role": "system", "content": "x" * 3000}, {"role": "user", "content": "go"}],
        "tools": [big_schema_tool(200)],
        "max_tokens": 10,
        "metadata": {"note": "y" * 2000},
    }
    probe = gw.create_key("tpm-probe")
    async with httpx.AsyncClient(base_url=gw.http_url, timeout=30) as http:
        r = await http.post(
            "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {probe}"}
        )
        billed = r.json()["usage"]["total_tokens"]
        # Room for one such request a minute and a half, not for two at once.
        key = gw.create_key("tpm-schema", tokens_per_minute=billed * 3 // 2)
        headers = {"authorization": f"Bearer {key}"}
        upstream.script(Delay(1.0))
        first = asyncio.ensure_future(http.post("/v1/chat/completions", json=body, headers=headers))
        await upstream.wait_for_requests(2)
        second = await http.post("/v1/chat/completions", json=body, headers=headers)
        assert (await first).status_code == 200
    # The one in flight reserved at least what it was billed, so the second would overdraw.
    assert second.status_code == 429
    assert second.json()["error"]["code"] == "rate_limit_exceeded"


async def _flush(gw: RunningGateway) -> None:
    # The ledger writes in batches every 0.2 s; a terminated gateway would flush too, but the
    # module's other tests still need this one.
    await asyncio.sleep(0.6)
