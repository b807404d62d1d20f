"""Routing and resilience as an HTTP client sees them, against a real gateway process: where
the request went (`x-switchboard-*` headers), the strategy override and timeout headers,
fallback of an SSE stream before its first token, an error event (never a clean end) when it
breaks after it, and `/metrics` on the HTTP port."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.openai_upstream import CutStream, FakeOpenAI, Stall, Status
from tests.support.server import RunningGateway, running_gateway

CONFIG = {
    "deployments": [
        {"provider": "openai", "model": "m1", "price": {"input": 5.0, "output": 15.0}},
        {"provider": "groq", "model": "m2", "price": {"input": 0.1, "output": 0.2}},
    ],
    "routes": [
        {"name": "chat-fast", "strategy": "ordered", "deployments": ["openai/m1", "groq/m2"]}
    ],
    "retry": {"initial_delay": 0.01, "max_delay": 0.05},
}


@asynccontextmanager
async def gateway() -> AsyncIterator[
    tuple[RunningGateway, FakeOpenAI, FakeOpenAI, httpx.AsyncClient]
]:
    async with FakeOpenAI() as first, FakeOpenAI() as second:
        env = {
            "OPENAI_API_KEY": "sk-first",
            "OPENAI_BASE_URL": first.base_url,
            "GROQ_API_KEY": "gsk-second",
            "GROQ_BASE_URL": second.base_url,
        }
        async with running_gateway(env=env, config=CONFIG) as gw:
            key = gw.create_key("routing-http")
            headers = {"authorization": f"Bearer {key}"}
            async with httpx.AsyncClient(
                base_url=gw.http_url, headers=headers, timeout=10
            ) as client:
                yield gw, first, second, client


def body(stream: bool = False, text: str = "hello") -> dict[str, object]:
    return {
        "model": "chat-fast",
        "messages": [{"role": "user", "content": text}],
        "stream": stream,
    }


async def test_route_headers_timeout_override_and_stream_fallback() -> None:
    async with gateway() as (_, first, second, client):
        # 1. Fallback: the headers say where it went and how many tries it took.
        first.script(Status(500), Status(500))
        r = await client.post("/v1/chat/completions", json=body())
        assert r.status_code == 200, r.text
        assert r.headers["x-switchboard-provider"] == "groq"
        assert r.headers["x-switchboard-model"] == "m2"
        assert r.headers["x-switchboard-attempts"] == "3"
        assert r.json()["choices"][0]["message"]["content"] == "Fake reply to: hello"

        # 2. Per-request strategy override: `cheapest` prefers groq's prices.
        served_first = len(first.requests)
        r = await client.post(
            "/v1/chat/completions", json=body(), headers={"x-switchboard-route": "cheapest"}
        )
        assert r.headers["x-switchboard-provider"] == "groq"
        assert r.headers["x-switchboard-attempts"] == "1"
        assert len(first.requests) == served_first

        # 3. x-switchboard-timeout bounds the whole request.
        first.script(Stall())
        started = time.monotonic()
        r = await client.post(
            "/v1/chat/completions", json=body(), headers={"x-switchboard-timeout": "0.5"}
        )
        assert 0.4 < time.monotonic() - started < 3.0
        assert r.status_code == 504, r.text
        assert "error" in r.json()

        # 4. An SSE stream cut before its first token falls back and completes normally.
        first.script(CutStream(after_chunks=1), Status(503))
        r = await client.post("/v1/chat/completions", json=body(stream=True, text="a b c"))
        assert r.status_code == 200
        assert r.headers["x-switchboard-provider"] == "groq"
        events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        text = "".join(
            (c["choices"][0]["delta"].get("content") or "")
            for c in map(orjson.loads, events[:-1])
            if c.get("choices")
        )
        assert text == "Fake reply to: a b c"

        # 5. Cut after its first token: the stream ends with an error event, not [DONE].
        first.script(CutStream(after_chunks=3))
        served_second = len(second.requests)
        r = await client.post("/v1/chat/completions", json=body(stream=True, text="a b c d"))
        events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
        assert events and events[-1] != "[DONE]"
        assert "error" in orjson.loads(events[-1])
        assert len(second.requests) == served_second

        # 6. /metrics on the HTTP port saw all of it.
        r = await client.get("/metrics")
        assert r.status_code == 200
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text)
            for s in family.samples
        }
        served = (("deployment", "groq/m2"), ("outcome", "success"), ("route", "chat-fast"))
        assert samples[("switchboard_requests_total", served)] >= 3
        errors = (("deployment", "openai/m1"), ("reason", "UPSTREAM_SERVER_ERROR"))
        assert samples[("switchboard_upstream_errors_total", errors)] >= 2
        assert samples[("switchboard_fallbacks_total", (("route", "chat-fast"),))] >= 2
        assert samples[("switchboard_retries_total", (("deployment", "openai/m1"),))] >= 1
        assert ("switchboard_circuit_state", (("name", "openai/m1"),)) in samples
        timed_out = (("deployment", ""), ("outcome", "DEADLINE_EXCEEDED"), ("route", "chat-fast"))
        assert samples[("switchboard_requests_total", timed_out)] == 1
