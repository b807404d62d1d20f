"""The distributed backend's real services for tests: a fresh PostgreSQL schema and Redis key
prefix per test, removed afterwards (other tests and processes share both servers).

``distributed_env()`` yields ``(env, store)``: the environment variables a gateway process or
CLI reads (SWITCHBOARD_DATABASE_URL, _SCHEMA, _REDIS_URL) and the config file's ``store``
section with the same schema and the prefix. Without SWITCHBOARD_TEST_POSTGRES_URL and
SWITCHBOARD_TEST_REDIS_URL the test is skipped, saying which is missing (CI sets both).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

POSTGRES_VAR = "SWITCHBOARD_TEST_POSTGRES_URL"
REDIS_VAR = "SWITCHBOARD_TEST_REDIS_URL"


def service_urls() -> tuple[str, str]:
    """Both test URLs, or a skip naming the variables that are unset."""
    postgres, redis_url = os.environ.get(POSTGRES_VAR), os.environ.get(REDIS_VAR)
    missing = [name for name, url in ((POSTGRES_VAR, postgres), (REDIS_VAR, redis_url)) if not url]
    if missing:
        pytest.skip(f"the distributed backend needs a real server: set {' and '.join(missing)}")
    assert postgres and redis_url
    return postgres, redis_url


@contextlib.contextmanager
def distributed_env() -> Iterator[tuple[dict[str, str], dict[str, Any]]]:
    postgres, redis_url = service_urls()
    tag = secrets.token_hex(4)
    schema, prefix = f"t_{tag}", f"t{tag}:"
    env = {
        "SWITCHBOARD_DATABASE_URL": postgres,
        "SWITCHBOARD_DATABASE_SCHEMA": schema,
        "SWITCHBOARD_REDIS_URL": redis_url,
    }
    try:
        yield env, {"database_schema": schema, "redis_prefix": prefix}
    finally:
        drop_schema(postgres, schema)
        delete_prefix(redis_url, prefix)


def drop_schema(url: str, schema: str) -> None:
    """Drops a test's schema and everything in it (from a thread: callers may be inside a
    running event loop)."""
    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, drop()).result(timeout=30)


def delete_prefix(url: str, prefix: str) -> None:
    """Deletes every Redis key under a test's prefix (never the whole database: it is shared)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        batch = []
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                client.delete(*batch)
                batch.clear()
        if batch:
            client.delete(*batch)
    finally:
        client.close()
