"""The usage ledger of a real gateway process: one exact row per request (chat and stream, gRPC
and HTTP), `switchboard usage` while the server runs, and no row lost on SIGTERM."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import grpc.aio
import httpx
import orjson
import pytest
from switchboard.v1 import chat_pb2, chat_pb2_grpc, types_pb2

from tests.fakes.openai_upstream import Delay, FakeOpenAI, Reply, Usage
from tests.integration.test_limits import new_key
from tests.support.server import running_gateway, start_gateway

NANO = 1_000_000_000
MODEL = "openai/gpt-4o-mini"
# Distinct rates for every kind of token, so each cost column is checked on its own.
PRICE = {"input": 0.15, "output": 0.6, "cached_input": 0.075, "cache_write": 0.3}
CONFIG = {"deployments": [{"provider": "openai", "model": "gpt-4o-mini", "price": PRICE}]}
FAKE_USAGE = Usage(1200, 345, cached_tokens=1000, reasoning_tokens=45, cache_write_tokens=100)


def rows(data_dir: Path) -> dict[str, dict[str, Any]]:
    """The ledger by request id, read while the server may be writing (WAL)."""
    conn = sqlite3.connect(data_dir / "usage.db")
    conn.row_factory = sqlite3.Row
    try:
        return {r["request_id"]: dict(r) for r in conn.execute("SELECT * FROM usage")}
    finally:
        conn.close()


async def wait_rows(data_dir: Path, count: int, within: float = 5.0) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + within
    while True:
        found = rows(data_dir)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)


def assert_billed(row: dict[str, Any], usage: dict[str, int], cost: dict[str, float]) -> None:
    """Tokens equal the response's usage; each cost column is its dollars in nano-USD."""
    assert row["input_tokens"] == usage["input"]
    assert row["output_tokens"] == usage["output"]
    assert row["cached_input_tokens"] == usage["cached"]
    assert row["cache_write_tokens"] == usage["cache_write"]
    assert row["reasoning_tokens"] == usage["reasoning"]
    for part in ("input", "output", "cached_input", "cache_write"):
        assert row[f"{part}_nanousd"] == round(cost[part] * NANO), part
        assert row[f"{part}_nanousd"] > 0, part
    parts = sum(row[f"{p}_nanousd"] for p in ("input", "output", "cached_input", "cache_write"))
    assert row["total_nanousd"] == parts
    assert abs(row["total_nanousd"] - cost["total"] * NANO) <= 2


def proto_usage(u: types_pb2.Usage) -> dict[str, int]:
    return {
        "input": u.input_tokens,
        "output": u.output_tokens,
        "cached": u.cached_input_tokens,
        "cache_write": u.cache_write_input_tokens,
        "reasoning": u.reasoning_tokens,
    }


def proto_cost(c: types_pb2.Cost) -> dict[str, float]:
    return {
        "input": c.input_usd,
        "output": c.output_usd,
        "cached_input": c.cached_input_usd,
        "cache_write": c.cache_write_usd,
        "total": c.total_usd,
    }


def openai_usage(u: dict[str, Any]) -> dict[str, int]:
    return {
        "input": u["prompt_tokens"],
        "output": u["completion_tokens"],
        "cached": u["prompt_tokens_details"]["cached_tokens"],
        "cache_write": FAKE_USAGE.cache_write_tokens or 0,
        "reasoning": u["completion_tokens_details"]["reasoning_tokens"],
    }


def request(text: str) -> chat_pb2.ChatRequest:
    req = chat_pb2.ChatRequest(model=MODEL, max_tokens=500)
    req.messages.add(role=types_pb2.ROLE_USER).content.add().text = text
    return req


async def test_every_request_is_billed_exactly_and_usage_reports_it_while_running() -> None:
    async with FakeOpenAI(default=Reply(usage=FAKE_USAGE)) as up:
        env = {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": up.base_url}
        async with running_gateway(env=env, config=CONFIG) as gw:
            key = new_key(gw, "billing")
            expected: dict[str, tuple[dict[str, int], dict[str, float], bool, str]] = {}
            async with grpc.aio.insecure_channel(gw.grpc_target) as channel:
                stub = chat_pb2_grpc.ChatServiceStub(channel)
                md = (*key.metadata, ("x-request-id", "grpc-chat-1"))
                response = await stub.Chat(request("hello"), metadata=md)
                expected["grpc-chat-1"] = (
                    proto_usage(response.usage),
                    proto_cost(response.cost),
                    False,
                    "grpc",
                )
                md = (*key.metadata, ("x-request-id", "grpc-stream-1"))
                frames = [
                    f
                    async for f in stub.StreamChat(
                        chat_pb2.StreamChatRequest(chat=request("stream me")), metadata=md
                    )
                ]
                end = frames[-1].end
                expected["grpc-stream-1"] = (
                    proto_usage(end.usage),
                    proto_cost(end.cost),
                    True,
                    "grpc",
                )
            async with httpx.AsyncClient(base_url=gw.http_url, headers=key.headers) as http:
                body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
                r = await http.post(
                    "/v1/chat/completions", json=body, headers={"x-request-id": "http-chat-1"}
                )
                assert r.status_code == 200, r.text
                usage = openai_usage(r.json()["usage"])
                expected["http-chat-1"] = (usage, {}, False, "http")
                header_cost = float(r.headers["x-switchboard-cost-usd"])
                r = await http.post(
                    "/v1/chat/completions",
                    json={**body, "stream": True, "stream_options": {"include_usage": True}},
                    headers={"x-request-id": "http-stream-1"},
                )
                events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
                assert events[-1] == "[DONE]"
                final = orjson.loads(events[-2])
                expected["http-stream-1"] = (openai_usage(final["usage"]), {}, True, "http")

            # Flushed within a few hundred ms while the server keeps running.
            found = await wait_rows(gw.data_dir, 4)
            assert sorted(found) == sorted(expected)
            for request_id, (usage, cost, stream, transport) in expected.items():
                row = found[request_id]
                assert row["key_id"] == key.id and row["transport"] == transport
                assert (row["stream"], row["outcome"], row["status"]) == (
                    int(stream),
                    "success",
                    200,
                )
                assert (row["provider"], row["upstream_model"]) == ("openai", "gpt-4o-mini")
                assert (row["model"], row["deployment"], row["attempts"]) == (MODEL, MODEL, 1)
                assert row["latency_ms"] > 0
                if cost:
                    assert_billed(row, usage, cost)
                else:
                    assert row["input_tokens"] == usage["input"]
                    assert row["output_tokens"] == usage["output"]
                    assert row["cached_input_tokens"] == usage["cached"]
                    assert row["reasoning_tokens"] == usage["reasoning"]
            # Same usage, same price: every request cost the same to the nano-dollar.
            totals = {row["total_nanousd"] for row in found.values()}
            assert len(totals) == 1
            assert abs(totals.pop() - header_cost * NANO) <= 2
            total = sum(row["total_nanousd"] for row in found.values())

            # `switchboard usage` reads the ledger while the server runs.
            done = gw.cli("usage", "--json")
            assert done.returncode == 0, done.stderr
            report = orjson.loads(done.stdout)
            (mine,) = report["keys"]
            assert mine["key_id"] == key.id and mine["name"] == "billing"
            assert mine["requests"] == 4 and mine["errors"] == 0
            assert mine["input_tokens"] == 4 * 1200 and mine["output_tokens"] == 4 * 345
            assert mine["cached_input_tokens"] == 4 * 1000
            assert mine["cache_write_tokens"] == 4 * 100
            assert mine["reasoning_tokens"] == 4 * 45
            assert mine["total_nanousd"] == total
            assert mine["cost_usd"] == pytest.approx(total / NANO)

            text = gw.cli("usage")
            assert text.returncode == 0, text.stderr
            lines = text.stdout.splitlines()
            assert lines[1].split()[:3] == ["KEY", "NAME", "REQUESTS"]
            cells = lines[2].split()
            assert cells[:4] == [key.id, "billing", "4", "0"]
            assert cells[4:9] == ["4800", "4000", "400", "1380", "180"]
            assert cells[9] == f"${total / NANO:.9f}".rstrip("0")

            none = gw.cli("usage", "--month", "2020-01")
            assert none.returncode == 0
            assert none.stdout.strip() == "No usage recorded in 2020-01 (UTC)."
            bad = gw.cli("usage", "--month", "January")
            assert bad.returncode == 2 and "not a month" in bad.stderr


async def test_sigterm_right_after_requests_loses_no_ledger_row() -> None:
    async with FakeOpenAI() as up:
        env = {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": up.base_url}
        async with running_gateway(env=env, config=CONFIG) as gw:
            key = new_key(gw, "shutdown")
            ids: list[str] = []
            async with grpc.aio.insecure_channel(gw.grpc_target) as channel:
                stub = chat_pb2_grpc.ChatServiceStub(channel)

                async def chat(request_id: str, text: str) -> chat_pb2.ChatResponse:
                    md = (*key.metadata, ("x-request-id", request_id))
                    return await stub.Chat(request(text), metadata=md)

                async def stream(request_id: str) -> chat_pb2.StreamEnd:
                    md = (*key.metadata, ("x-request-id", request_id))
                    call = stub.StreamChat(
                        chat_pb2.StreamChatRequest(chat=request("one two three")), metadata=md
                    )
                    frames = [f async for f in call]
                    return frames[-1].end

                # Three slow requests are still in flight when SIGTERM arrives.
                up.script(*(Delay(0.8) for _ in range(3)))
                slow = [
                    asyncio.ensure_future(chat(f"slow-{i}", "take your time")) for i in range(3)
                ]
                await up.wait_for_requests(3)
                fast: list[Awaitable[Any]] = [chat(f"fast-{i}", f"q {i}") for i in range(30)]
                fast += [stream(f"stream-{i}") for i in range(10)]
                done = await asyncio.gather(*fast)
                ids = [f"fast-{i}" for i in range(30)] + [f"stream-{i}" for i in range(10)]
                assert len(done) == 40
                # Right away: the rows are still in the gateway's memory (200 ms flush tick).
                terminated = asyncio.ensure_future(asyncio.to_thread(gw.terminate))
                slow_done = await asyncio.gather(*slow)
                assert await terminated == 0
            assert all(r.usage.output_tokens > 0 for r in slow_done)
            found = rows(gw.data_dir)
            expected = set(ids) | {f"slow-{i}" for i in range(3)}
            assert expected <= set(found), sorted(expected - set(found))
            assert all(found[i]["outcome"] == "success" for i in expected)
            for i, response in enumerate(done[:30]):
                row = found[f"fast-{i}"]
                assert row["input_tokens"] == response.usage.input_tokens
                assert row["output_tokens"] == response.usage.output_tokens
                assert row["total_nanousd"] == sum(
                    round(getattr(response.cost, f"{p}_usd") * NANO)
                    for p in ("input", "output", "cached_input", "cache_write")
                )
            for i, end in enumerate(done[30:]):
                assert found[f"stream-{i}"]["output_tokens"] == end.usage.output_tokens
            assert "Traceback" not in gw.output()


async def test_requests_refused_at_the_edge_are_rows_of_their_key() -> None:
    # What the ledger holds of refusals (README "Limits, budgets and usage"): every request of a
    # known key is one row, refused at the edge or not; a request without a valid key is not.
    config = {"limits": {"max_messages": 2}, "logging": {"requests": False}}
    async with running_gateway(config=config) as gw:
        key = gw.create_key("edge", requests_per_minute=3)
        headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
        ok = {"model": "demo/echo", "messages": [{"role": "user", "content": "hi"}]}
        async with httpx.AsyncClient(base_url=gw.http_url, timeout=10) as http:
            statuses = [
                (await http.post("/v1/chat/completions", content=b"{not json", headers=headers)),
                (
                    await http.post(
                        "/v1/messages",
                        json={**ok, "messages": ok["messages"] * 3, "max_tokens": 5},
                        headers=headers,
                    )
                ),
                (await http.post("/v1/chat/completions", json=ok, headers=headers)),
                (await http.post("/v1/chat/completions", json=ok, headers=headers)),
                (
                    await http.post(
                        "/v1/chat/completions",
                        json=ok,
                        headers={**headers, "authorization": "Bearer sb-wrong"},
                    )
                ),
            ]
        assert [r.status_code for r in statuses] == [400, 413, 200, 429, 401]
        found = sorted(
            (r["outcome"], r["status"]) for r in (await wait_rows(gw.data_dir, 4)).values()
        )
    assert found == [
        ("INVALID_REQUEST", 400),
        ("RATE_LIMITED", 429),
        ("REQUEST_TOO_LARGE", 413),
        ("success", 200),
    ]


async def test_sigkill_loses_no_row_of_a_request_that_finished(tmp_path: Path) -> None:
    # A gateway killed mid-traffic: every request whose answer reached its client has its row
    # (the journal), once the next process on the data dir has started.
    config = {"logging": {"requests": False}}
    done: set[str] = set()
    async with running_gateway(config=config, data_dir=tmp_path) as gw:
        key = gw.create_key("killed")
        headers = {"authorization": f"Bearer {key}"}

        async def client(n: int) -> None:
            async with httpx.AsyncClient(base_url=gw.http_url, headers=headers, timeout=5) as http:
                for i in range(10_000):
                    rid = f"kill-{n}-{i}"
                    body = {
                        "model": "demo/echo",
                        "messages": [{"role": "user", "content": "hello there"}],
                        "stream": i % 2 == 0,
                    }
                    try:
                        r = await http.post(
                            "/v1/chat/completions", json=body, headers={"x-request-id": rid}
                        )
                    except httpx.HTTPError:
                        return
                    if r.status_code == 200 and (not body["stream"] or "[DONE]" in r.text):
                        done.add(rid)

        clients = [asyncio.ensure_future(client(n)) for n in range(12)]
        await asyncio.sleep(1.5)
        assert gw.process is not None
        gw.process.kill()
        await asyncio.gather(*clients)
    assert len(done) > 100
    restarted = await asyncio.to_thread(start_gateway, config=config, data_dir=tmp_path)
    try:
        recorded = rows(tmp_path)
    finally:
        await asyncio.to_thread(restarted.terminate)
        restarted.close()
    missing = done - set(recorded)
    assert not missing, f"{len(missing)} of {len(done)} finished requests have no row"
