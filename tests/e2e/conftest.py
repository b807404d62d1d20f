"""A real gateway process in front of a real fake OpenAI upstream, shared by a test module.

``python -m server serve`` runs as a subprocess (``tests/support/server.py``) with the
``openai`` provider pointed at ``FakeOpenAI`` (an aiohttp server on 127.0.0.1) through
``OPENAI_API_KEY`` / ``OPENAI_BASE_URL``; gateway keys come from the real ``KeyStore``
(``gw.create_key``). One gateway and one upstream serve a whole module (startup is the slow
part); every test starts from an empty upstream script and request log.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.fakes.openai_upstream import FakeOpenAI
from tests.support.server import RunningGateway, running_gateway

UPSTREAM_KEY = "sk-upstream-e2e-0123456789"
MODEL = "openai/gpt-4o-mini"
# One try per deployment and a circuit that does not open: each test scripts exactly the upstream
# answers it needs and never inherits a neighbour's failures.
E2E_CONFIG = {
    "retry": {"max_attempts_per_deployment": 1},
    "circuit": {"consecutive_failures": 1000, "min_requests": 1000},
    "routes": [{"name": "chat", "deployments": [MODEL]}],
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def upstream() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(api_key=UPSTREAM_KEY) as up:
        yield up


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gateway(upstream: FakeOpenAI) -> AsyncIterator[RunningGateway]:
    env = {"OPENAI_API_KEY": UPSTREAM_KEY, "OPENAI_BASE_URL": upstream.base_url}
    async with running_gateway(env=env, config=E2E_CONFIG) as gw:
        yield gw


@pytest.fixture(scope="module")
def app_key(gateway: RunningGateway) -> str:
    return gateway.create_key("e2e-openai-sdk")


@pytest.fixture(autouse=True)
def _fresh_upstream(request: pytest.FixtureRequest) -> None:
    if "upstream" in request.fixturenames:
        request.getfixturevalue("upstream").clear()
