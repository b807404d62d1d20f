"""The Redis response cache against a real Redis (SWITCHBOARD_TEST_REDIS_URL), each test under
its own key prefix; and a Redis that is not there reads as a miss instead of failing."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid

import pytest

from server.store.distributed.redis_cache import RedisCache

REDIS_URL = os.environ.get("SWITCHBOARD_TEST_REDIS_URL")
needs_redis = pytest.mark.skipif(not REDIS_URL, reason="SWITCHBOARD_TEST_REDIS_URL is not set")


@pytest.mark.redis
@needs_redis
async def test_put_get_ttl_and_size_cap() -> None:
    assert REDIS_URL is not None
    prefix = f"sbtest:cache:{uuid.uuid4().hex}:"
    cache = RedisCache(REDIS_URL, prefix=prefix, max_entry_bytes=100)
    other = RedisCache(REDIS_URL, prefix=prefix + "other:")
    try:
        assert await cache.get("k") is None
        await cache.put("k", b"answer", 60)
        assert await cache.get("k") == b"answer"
        assert await other.get("k") is None, "another prefix is another cache"
        await cache.put("k", b"newer", 60)
        assert await cache.get("k") == b"newer"
        await cache.put("big", b"x" * 101, 60)
        assert await cache.get("big") is None
        await cache.put("brief", b"soon gone", 0.1)
        assert await cache.get("brief") == b"soon gone"
        await asyncio.sleep(0.3)
        assert await cache.get("brief") is None
    finally:
        await cache._redis.delete(prefix + "k")
        await cache.aclose()
        await other.aclose()


async def test_a_redis_that_is_down_is_a_miss() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Nothing listens on the port now.
    cache = RedisCache(f"redis://127.0.0.1:{port}/0", timeout=0.2)
    try:
        await cache.put("k", b"v", 60)
        assert await cache.get("k") is None
    finally:
        await cache.aclose()
