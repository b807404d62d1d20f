"""Tests against the machine's real Redis: the URL from SWITCHBOARD_TEST_REDIS_URL (a clear
skip when unset), a fresh key prefix per test, and cleanup of exactly that prefix's keys
(never FLUSHDB: other tests and helpers share the server)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

ENV = "SWITCHBOARD_TEST_REDIS_URL"


def redis_url() -> str:
    """The test Redis URL, or a skip naming the variable to set."""
    url = os.environ.get(ENV)
    if not url:
        pytest.skip(f"{ENV} is unset (e.g. redis://127.0.0.1:6379/0); Redis tests need it")
    return url


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


async def prefix_keys(url: str, prefix: str) -> AsyncIterator[bytes]:
    client = aioredis.Redis.from_url(url)
    try:
        async for key in client.scan_iter(match=prefix + "*", count=500):
            yield key
    finally:
        await client.aclose()
