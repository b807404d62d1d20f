"""Runs the conformance suite once per ``harness_*.py`` module in this directory."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from server.providers.http_client import close_http_client

HARNESS_MODULES = sorted(path.stem for path in Path(__file__).parent.glob("harness_*.py"))


def _load(module: str) -> Any:
    # An import error here fails the run: an adapter's harness must never vanish silently.
    return importlib.import_module(f"tests.conformance.{module}").HARNESS


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "harness" in metafunc.fixturenames:
        harnesses = [_load(module) for module in HARNESS_MODULES]
        metafunc.parametrize("harness", harnesses, ids=[h.name for h in harnesses])


@pytest.fixture(autouse=True)
async def _close_shared_client() -> AsyncIterator[None]:
    yield
    await close_http_client()
