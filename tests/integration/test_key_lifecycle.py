"""The key lifecycle end to end, over the REST admin API and the chat endpoints, on both
backends: embedded (one process) and distributed (two processes on one PostgreSQL + Redis,
every change made through one and checked through the other).

Covered: the admin API refuses ordinary keys (403, REST and gRPC); model scoping (403
MODEL_NOT_ALLOWED); rotation with and without a grace period; expiry; a project's shared RPM
and shared budget across its keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import grpc.aio
import httpx
import pytest
from switchboard.v1 import admin_pb2, admin_pb2_grpc

from tests.support.server import DEFAULT_MASTER_KEY, RunningGateway, running_gateway
from tests.support.stores import distributed_env

ADMIN = {"authorization": f"Bearer {DEFAULT_MASTER_KEY}"}
PRICED = {"provider": "demo", "model": "echo", "price": {"input": 0.5, "output": 0.5}}
CHAT = {"model": "demo/echo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


@dataclass
class Pair:
    """Where changes are made (``admin``) and where their effect is checked (``serve``)."""

    name: str
    admin: RunningGateway
    serve: RunningGateway


@pytest.fixture(params=["embedded", "distributed"])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    config: dict[str, Any] = {"deployments": [PRICED]}
    if request.param == "embedded":
        async with running_gateway(config=config) as gw:
            yield Pair("embedded", gw, gw)
        return
    with distributed_env() as (env, store):
        async with contextlib.AsyncExitStack() as stack:
            cfg = {**config, "store": store}
            one = await stack.enter_async_context(running_gateway(env=env, config=cfg))
            two = await stack.enter_async_context(running_gateway(env=env, config=cfg))
            yield Pair("distributed", one, two)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=15.0) as client:
        yield client


async def admin(http: httpx.AsyncClient, pair: Pair, method: str, path: str, **body: Any) -> Any:
    r = await http.request(
        method, f"{pair.admin.http_url}/admin/v1/{path}", headers=ADMIN, json=body or None
    )
    assert r.status_code == 200, r.text
    return r.json()


async def chat(http: httpx.AsyncClient, pair: Pair, secret: str, **extra: Any) -> httpx.Response:
    return await http.post(
        f"{pair.serve.http_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {secret}"},
        json={**CHAT, **extra},
    )


async def eventually_status(
    http: httpx.AsyncClient, pair: Pair, secret: str, status: int, within: float = 3.0
) -> float:
    """Seconds until ``secret``'s chat answers ``status`` (fails after ``within``)."""
    start = time.monotonic()
    while (r := await chat(http, pair, secret)).status_code != status:
        assert time.monotonic() - start < within, (r.status_code, r.text)
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def test_the_admin_api_refuses_ordinary_keys(http: httpx.AsyncClient, pair: Pair) -> None:
    made = await admin(http, pair, "POST", "keys", name="ordinary")
    ordinary = {"authorization": f"Bearer {made['secret']}"}
    for method, path in (("GET", "keys"), ("POST", "keys"), ("GET", "usage"), ("GET", "projects")):
        r = await http.request(
            method, f"{pair.serve.http_url}/admin/v1/{path}", headers=ordinary, json={}
        )
        assert r.status_code == 403, (method, path, r.text)
        assert r.json()["error"]["type"] == "permission_error"
    async with grpc.aio.insecure_channel(pair.serve.grpc_target) as channel:
        stub = admin_pb2_grpc.AdminServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ListKeys(
                admin_pb2.ListKeysRequest(),
                metadata=(("authorization", ordinary["authorization"]),),
            )
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        listed = await stub.ListKeys(
            admin_pb2.ListKeysRequest(), metadata=(("authorization", ADMIN["authorization"]),)
        )
        assert made["key"]["id"] in [k.id for k in listed.keys]


async def test_a_key_may_use_only_its_models(http: httpx.AsyncClient, pair: Pair) -> None:
    made = await admin(http, pair, "POST", "keys", name="scoped", allowed_models=["demo/embed"])
    r = await chat(http, pair, made["secret"])
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "model_not_allowed"
    assert "demo/embed" in r.json()["error"]["message"]
    await admin(http, pair, "PATCH", f"keys/{made['key']['id']}", allowed_models=["demo/*"])
    await eventually_status(http, pair, made["secret"], 200)


async def test_rotation_keeps_the_old_secret_for_its_grace_only(
    http: httpx.AsyncClient, pair: Pair
) -> None:
    made = await admin(http, pair, "POST", "keys", name="rotated", env="prod")
    key_id, old = made["key"]["id"], made["secret"]
    assert (await chat(http, pair, old)).status_code == 200
    rotated = await admin(http, pair, "POST", f"keys/{key_id}/rotate", grace_seconds=1.5)
    new = rotated["secret"]
    assert new != old and new.startswith("sb-prod-")
    assert rotated["key"]["id"] == key_id
    assert (await chat(http, pair, new)).status_code == 200
    assert (await chat(http, pair, old)).status_code == 200
    waited = await eventually_status(http, pair, old, 401, within=4.0)
    assert waited >= 0.5, "the old secret stopped before its grace ended"
    assert (await chat(http, pair, new)).status_code == 200
    # Without a grace the old secret stops at once (within the one-second bound elsewhere).
    again = await admin(http, pair, "POST", f"keys/{key_id}/rotate")
    await eventually_status(http, pair, new, 401, within=1.0)
    assert (await chat(http, pair, again["secret"])).status_code == 200


async def test_an_expired_key_is_refused(http: httpx.AsyncClient, pair: Pair) -> None:
    soon = (datetime.now(UTC) + timedelta(seconds=1.5)).isoformat().replace("+00:00", "Z")
    made = await admin(http, pair, "POST", "keys", name="expiring", expire_time=soon)
    assert (await chat(http, pair, made["secret"])).status_code == 200
    await eventually_status(http, pair, made["secret"], 401, within=4.0)


async def two_keys_in_a_project(
    http: httpx.AsyncClient, pair: Pair, **limits: float
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A new project with ``limits`` and two keys in it (their create responses)."""
    project = await admin(http, pair, "POST", "projects", name="shared", limits=limits)
    pid = project["project"]["id"] if "project" in project else project["id"]
    a = await admin(http, pair, "POST", "keys", name="a", project_id=pid)
    b = await admin(http, pair, "POST", "keys", name="b", project_id=pid)
    return a, b


async def test_a_projects_rpm_is_shared_by_its_keys(http: httpx.AsyncClient, pair: Pair) -> None:
    a, b = await two_keys_in_a_project(http, pair, requests_per_minute=2)
    assert (await chat(http, pair, a["secret"])).status_code == 200
    assert (await chat(http, pair, a["secret"])).status_code == 200
    r = await chat(http, pair, b["secret"])
    assert r.status_code == 429, r.text
    assert r.headers["retry-after"]
    assert "project" in r.json()["error"]["message"].lower()


async def test_a_projects_budget_is_shared_by_its_keys(http: httpx.AsyncClient, pair: Pair) -> None:
    a, b = await two_keys_in_a_project(http, pair, monthly_budget_usd=0.0001)
    served = 0
    for _ in range(60):
        r = await chat(http, pair, a["secret"])
        if r.status_code == 429:
            break
        assert r.status_code == 200, r.text
        served += 1
    else:
        pytest.fail("the project's budget never refused key a")
    assert served > 0
    assert r.json()["error"]["code"] == "insufficient_quota"
    r = await chat(http, pair, b["secret"])
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "insufficient_quota"
