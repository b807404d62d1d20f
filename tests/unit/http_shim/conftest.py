"""Fixtures for the shim's unit tests (helpers live in ``support.py``)."""

from __future__ import annotations

import pytest

from server.http_shim import create_app
from tests.unit.http_shim.support import AsgiClient, ScriptedProvider, build_gateway


@pytest.fixture
def provider() -> ScriptedProvider:
    return ScriptedProvider()


@pytest.fixture
def client(provider: ScriptedProvider) -> AsgiClient:
    return AsgiClient(create_app(build_gateway(provider)))
