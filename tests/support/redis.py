"""Tests against the machine's real Redis: the URL from SWITCHBOARD_TEST_REDIS_URL (a clear
skip when unset), a fresh key prefix per test, and cleanup of exactly that prefix's keys
(never FLUSHDB: other tests and helpers share the server)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from server.config import CircuitConfig
from server.store.distributed.redis_budgets import Seed
from server.store.distributed.redis_limits_backend import RedisLimits, open_redis_limits

ENV = "SWITCHBOARD_TEST_REDIS_URL"


def redis_url() -> str:
    """The test Redis URL, or a skip naming the variable to set."""
    url = os.environ.get(ENV)
    if not url:
        pytest.skip(f"{ENV} is unset (e.g. redis://127.0.0.1:6379/0); Redis tests need it")
    return url


def fresh(kind: str = "key") -> str:
    """A name no other test uses."""
    return f"{kind}_{uuid.uuid4().hex[:12]}"


def fresh_prefix() -> str:
    return f"sbtest:{uuid.uuid4().hex[:12]}:"


def via(url: str, port: int) -> str:
    """``url`` pointed at a loopback proxy on ``port`` (same db and credentials)."""
    scheme, rest = url.split("://", 1)
    auth, _, hostpath = rest.rpartition("@")
    path = hostpath.split("/", 1)[1] if "/" in hostpath else "0"
    return f"{scheme}://{auth + '@' if auth else ''}127.0.0.1:{port}/{path}"


async def delete_prefix(url: str, prefix: str) -> None:
    """Deletes the keys under ``prefix`` (ours alone)."""
    client = aioredis.Redis.from_url(url)
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=prefix + "*", count=500):
            batch.append(key)
            if len(batch) >= 500:
                await client.delete(*batch)
                batch.clear()
        if batch:
            await client.delete(*batch)
    finally:
        await client.aclose()


async def _no_spend(start: float, end: float) -> dict[str, int]:
    return {}


class LimitsFactory:
    """Opens independent ``RedisLimits`` (each its own client, as another process would) on
    one fresh prefix; ``aclose`` closes them all and deletes the prefix's keys."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.prefix = fresh_prefix()
        self.opened: list[RedisLimits] = []

    async def open(
        self,
        *,
        url: str | None = None,
        seed: Seed = _no_spend,
        circuit: CircuitConfig | None = None,
        start: bool = True,
        **options: Any,
    ) -> RedisLimits:
        limits = open_redis_limits(
            url or self.url, seed, prefix=self.prefix, circuit=circuit, **options
        )
        self.opened.append(limits)
        if start:
            limits.start()
            await limits.health.synced.wait()
        return limits

    async def aclose(self) -> None:
        for limits in self.opened:
            await limits.aclose()
        await delete_prefix(self.url, self.prefix)


@pytest.fixture
async def factory() -> AsyncIterator[LimitsFactory]:
    """A ``LimitsFactory`` on a fresh prefix (import it into a test module to use it)."""
    factory = LimitsFactory(redis_url())
    try:
        yield factory
    finally:
        await factory.aclose()


async def eventually(check: Callable[[], bool], within: float = 3.0) -> float:
    """Seconds until ``check()`` held (polled every ms); fails the test after ``within`` s."""
    started = time.monotonic()
    while True:
        if check():
            return time.monotonic() - started
        if time.monotonic() - started > within:
            pytest.fail(f"not within {within} s")
        await asyncio.sleep(0.001)
