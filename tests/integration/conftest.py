"""Integration fixtures: a real gateway subprocess (see tests/support/server.py)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc.aio
import pytest
import pytest_asyncio

# `tests.*` imports need the repository root on sys.path until pyproject sets
# `pythonpath = ["."]` for pytest.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.support.server import RunningGateway, start_gateway  # noqa: E402


@pytest.fixture(scope="session")
def demo_gateway() -> Iterator[RunningGateway]:
    """One gateway with only the demo provider, shared by the tests that need nothing else."""
    gw = start_gateway()
    try:
        yield gw
    finally:
        gw.terminate()
        gw.close()


@pytest_asyncio.fixture
async def demo_channel(demo_gateway: RunningGateway) -> AsyncIterator[grpc.aio.Channel]:
    """A grpc.aio channel to the demo gateway, in the test's own event loop."""
    async with grpc.aio.insecure_channel(demo_gateway.grpc_target) as channel:
        yield channel
