"""Limits, budgets and revocation are exact whatever the topology (issue 9's "Done means").

Each test runs twice: on the embedded backend with one gateway process, and on the
distributed backend with three gateway processes sharing one PostgreSQL schema and one Redis
prefix (skipped, with the reason, when SWITCHBOARD_TEST_POSTGRES_URL / _REDIS_URL are unset;
CI sets both). Requests are spread round-robin over the processes, all at once, so every
process admits concurrently against the same shared state:

- a key with RPM 30 under 120 concurrent requests: exactly 30 served, 90 refused with 429 and
  `Retry-After`;
- a key with a $0.0001 budget under 60 concurrent requests: spend never passes the budget, the
  ledger's total equals the sum of the served responses' `usage.cost_usd`, one success row per
  served request;
- a key revoked through one process is refused by every process within one second.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from server.core.money import usd_to_nanos
from tests.support.server import DEFAULT_MASTER_KEY, RunningGateway, running_gateway
from tests.support.stores import distributed_env

# $0.50 per million tokens in and out: a demo exchange (3 tokens in, 4 out) costs $0.0000035;
# its worst-case reservation is many times that, so a $0.0001 budget admits some of 60 only.
PRICED = {"provider": "demo", "model": "echo", "price": {"input": 0.5, "output": 0.5}}


@dataclass
class Cluster:
    name: str
    gateways: list[RunningGateway]

    def url(self, i: int) -> str:
        return self.gateways[i % len(self.gateways)].http_url


@contextlib.asynccontextmanager
async def _cluster(name: str, replicas: int, env: dict[str, str], config: dict[str, Any]):
    async with contextlib.AsyncExitStack() as stack:
        gateways = []
        for _ in range(replicas):
            gateways.append(
                await stack.enter_async_context(
                    running_gateway(env=env, config=config, master_key=DEFAULT_MASTER_KEY)
                )
            )
        yield Cluster(name, gateways)


@pytest.fixture(params=["embedded", "distributed"])
async def cluster(request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    config: dict[str, Any] = {"deployments": [PRICED]}
    if request.param == "embedded":
        async with _cluster("embedded", 1, {}, config) as c:
            yield c
        return
    with distributed_env() as (env, store):
        async with _cluster("distributed", 3, env, {**config, "store": store}) as c:
            yield c


ADMIN = {"authorization": f"Bearer {DEFAULT_MASTER_KEY}"}


async def create_key(http: httpx.AsyncClient, url: str, **fields: Any) -> tuple[str, str]:
    r = await http.post(f"{url}/admin/v1/keys", headers=ADMIN, json={"name": "exact", **fields})
    assert r.status_code == 200, r.text
    body = r.json()
    return body["key"]["id"], body["secret"]


def chat(max_tokens: int = 8) -> dict[str, Any]:
    return {
        "model": "demo/echo",
        "messages": [{"role": "user", "content": "one two three"}],
        "max_tokens": max_tokens,
    }


async def test_rpm_30_under_120_concurrent_requests_serves_exactly_30(cluster: Cluster) -> None:
    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(timeout=30.0, limits=limits) as http:
        _, secret = await create_key(http, cluster.url(0), limits={"requests_per_minute": 30})
        headers = {"authorization": f"Bearer {secret}"}

        async def one(i: int) -> httpx.Response:
            return await http.post(
                f"{cluster.url(i)}/v1/chat/completions", headers=headers, json=chat()
            )

        replies = await asyncio.gather(*(one(i) for i in range(120)))
    codes = [r.status_code for r in replies]
    assert codes.count(200) == 30, (cluster.name, sorted(set(codes)))
    assert codes.count(429) == 90
    for r in replies:
        if r.status_code == 429:
            assert float(r.headers["retry-after"]) > 0
            assert r.json()["error"]["code"] == "rate_limit_exceeded", r.text


async def test_a_tiny_budget_under_60_concurrent_requests_is_never_passed(
    cluster: Cluster,
) -> None:
    budget = 0.0001
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(timeout=30.0, limits=limits) as http:
        key_id, secret = await create_key(
            http, cluster.url(0), limits={"monthly_budget_usd": budget}
        )
        headers = {"authorization": f"Bearer {secret}"}

        async def one(i: int) -> httpx.Response:
            return await http.post(
                f"{cluster.url(i)}/v1/chat/completions", headers=headers, json=chat()
            )

        replies = await asyncio.gather(*(one(i) for i in range(60)))
        served = [r for r in replies if r.status_code == 200]
        refused = [r for r in replies if r.status_code == 429]
        assert served, "the budget admits at least one request"
        assert refused, "the budget refuses some: it is what limits this burst"
        assert len(served) + len(refused) == 60, sorted({r.status_code for r in replies})
        served_nanos = sum(usd_to_nanos(r.json()["usage"]["cost_usd"]) for r in served)
        print(f"{cluster.name}: {len(served)} served, {len(refused)} refused, {served_nanos} n$")
        assert 0 < served_nanos <= usd_to_nanos(budget)

        # The ledger (written in batches, in the background) agrees once every process flushed.
        rows: list[dict[str, Any]] = []
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            r = await http.get(
                f"{cluster.url(0)}/admin/v1/usage",
                headers=ADMIN,
                params={"group_by": "key", "key_id": key_id},
            )
            assert r.status_code == 200, r.text
            rows = r.json()["rows"]
            if sum(int(t["requests"]) for t in rows) >= 60:
                break
            await asyncio.sleep(0.1)
    assert [t["group"] for t in rows] == [key_id], rows
    (usage,) = rows
    total, requests, errors = (int(usage[f]) for f in ("total_nanousd", "requests", "errors"))
    assert requests == 60, usage
    assert requests - errors == len(served), usage
    assert total == served_nanos, (total, served_nanos)
    assert total <= usd_to_nanos(budget)


async def test_a_key_revoked_on_one_process_is_refused_by_all_within_a_second(
    cluster: Cluster,
) -> None:
    async with httpx.AsyncClient(timeout=10.0) as http:
        key_id, secret = await create_key(http, cluster.url(0))
        headers = {"authorization": f"Bearer {secret}"}
        for i in range(len(cluster.gateways)):
            r = await http.post(
                f"{cluster.url(i)}/v1/chat/completions", headers=headers, json=chat()
            )
            assert r.status_code == 200, r.text
        last = len(cluster.gateways) - 1
        r = await http.post(f"{cluster.url(last)}/admin/v1/keys/{key_id}/revoke", headers=ADMIN)
        assert r.status_code == 200, r.text
        revoked_at = time.monotonic()

        async def refused_after(i: int) -> float:
            while True:
                r = await http.post(
                    f"{cluster.url(i)}/v1/chat/completions", headers=headers, json=chat()
                )
                if r.status_code == 401:
                    return time.monotonic() - revoked_at
                assert r.status_code == 200, r.text
                if time.monotonic() - revoked_at > 3.0:
                    return float("inf")
                await asyncio.sleep(0.02)

        waits = await asyncio.gather(*(refused_after(i) for i in range(len(cluster.gateways))))
    shown = ", ".join(f"{w * 1000:.0f} ms" for w in waits)
    print(f"{cluster.name}: the revoked key was refused after {shown}")
    assert max(waits) <= 1.0, waits
