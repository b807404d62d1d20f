"""Harness for the routing/resilience integration tests: a real ``Gateway`` in this process over
the real adapters (``OpenAICompatProvider``, ``AnthropicProvider``) talking real HTTP to
loopback fake upstreams (``tests/fakes``), with shared health and metrics as ``server.app``
wires them. The one test here checks the harness itself.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from switchboard.v1 import chat_pb2, types_pb2

from server.config import (
    CircuitConfig,
    Config,
    DeploymentConfig,
    PriceConfig,
    RetryConfig,
    RouteConfig,
    TimeoutConfig,
)
from server.core.context import CallContext, Principal
from server.core.service import Gateway
from server.observability.metrics import Metrics
from server.observability.requests import RequestObserver
from server.providers.http_client import close_http_client
from server.providers.openai_compat import OpenAICompatProvider
from server.providers.registry import ProviderEntry
from server.resilience.executor import Executor
from server.routing.catalog import Catalog
from server.routing.router import Router
from server.store.embedded.health import LocalHealth
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.common import FakeUpstream
from tests.fakes.openai_upstream import FakeOpenAI

ROUTE = "chat"


@dataclass
class Harness:
    """A gateway over named fake upstreams; deployment ids are ``<name>/m``."""

    gateway: Gateway
    router: Router
    health: LocalHealth
    metrics: Metrics
    upstreams: dict[str, FakeUpstream]

    def ctx(self, timeout: float = 10.0) -> CallContext:
        return CallContext(
            request_id="req-it",
            principal=Principal(key_id="k1", name="it"),
            deadline=time.monotonic() + timeout,
        )

    async def chat(self, within: float = 10.0, **fields: Any) -> chat_pb2.ChatResponse:
        """One Chat call whose deadline is `within` seconds away."""
        return await self.gateway.chat(request(**fields), self.ctx(within))

    async def stream(
        self, within: float = 10.0, **fields: Any
    ) -> list[chat_pb2.StreamChatResponse]:
        """Every frame of one StreamChat call whose deadline is `within` seconds away."""
        return [f async for f in self.gateway.stream_chat(request(**fields), self.ctx(within))]

    def served(self) -> dict[str, int]:
        """Requests each upstream received."""
        return {name: len(up.requests) for name, up in self.upstreams.items()}


def request(text: str = "hello routing", model: str = ROUTE, **fields: Any) -> chat_pb2.ChatRequest:
    return chat_pb2.ChatRequest(
        model=model,
        messages=[
            types_pb2.Message(role=types_pb2.ROLE_USER, content=[types_pb2.ContentPart(text=text)])
        ],
        **fields,
    )


def attempts(response_route: types_pb2.RouteInfo) -> list[tuple[str, str]]:
    """(deployment, outcome name) per attempt."""
    return [
        (a.deployment, types_pb2.AttemptOutcome.Name(a.outcome).removeprefix("ATTEMPT_OUTCOME_"))
        for a in response_route.attempts
    ]


def _provider(name: str, upstream: FakeUpstream) -> Any:
    if isinstance(upstream, FakeAnthropic):
        from server.providers.anthropic import AnthropicProvider

        return AnthropicProvider(name, base_url=upstream.base_url)
    return OpenAICompatProvider(name, upstream.base_url)


@asynccontextmanager
async def routed(
    upstreams: Mapping[str, FakeUpstream],
    *,
    strategy: str = "ordered",
    prices: Mapping[str, tuple[float, float]] | None = None,
    keys: Sequence[str] = ("sk-test",),
    retry: RetryConfig | None = None,
    circuit: CircuitConfig | None = None,
    timeouts: TimeoutConfig | None = None,
) -> AsyncIterator[Harness]:
    """A harness over already-started fakes, with route ``chat`` over them in order."""
    prices = prices or {}
    config = Config(
        deployments=[
            DeploymentConfig(
                provider=name,
                model="m",
                price=PriceConfig(input=prices[name][0], output=prices[name][1])
                if name in prices
                else None,
            )
            for name in upstreams
        ],
        routes=[
            RouteConfig(
                name=ROUTE,
                strategy=strategy,  # type: ignore[arg-type]
                deployments=[f"{name}/m" for name in upstreams],
            )
        ],
        retry=retry or RetryConfig(initial_delay=0.02, max_delay=0.1, max_retry_after=1.0),
        circuit=circuit or CircuitConfig(),
        timeouts=timeouts or TimeoutConfig(attempt=5.0, stream_idle=5.0),
    )
    entries = {
        name: ProviderEntry(_provider(name, up), tuple(keys)) for name, up in upstreams.items()
    }
    health = LocalHealth(config.circuit)
    metrics = Metrics()
    metrics.watch_health(health)
    router = Router(Catalog(entries, config, prices={}), health=health, explore=0.0)
    gateway = Gateway(
        router,
        Executor(config, health=health, metrics=metrics),
        keys=_NoKeys(),
        master_key="master",
        default_timeout=config.timeouts.request,
        sinks=[RequestObserver(metrics, log_requests=False)],
    )
    try:
        yield Harness(gateway, router, health, metrics, dict(upstreams))
    finally:
        await close_http_client()


class _NoKeys:
    async def lookup(self, secret: str) -> Principal | None:
        return None


async def test_harness_serves_through_real_http() -> None:
    async with FakeOpenAI() as up, routed({"a": up}) as h:
        response = await h.chat(text="ping")
    assert response.message.content[0].text == "Fake reply to: ping"
    assert response.route.deployment == "a/m" and response.route.provider == "a"
    assert attempts(response.route) == [("a/m", "SUCCESS")]
    assert up.requests[0].headers["authorization"] == "Bearer sk-test"
