"""A fresh PostgreSQL schema per test on the machine's real server
(``SWITCHBOARD_TEST_POSTGRES_URL``), dropped afterwards; tests skip when the variable is unset.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest

URL_ENV = "SWITCHBOARD_TEST_POSTGRES_URL"
SKIP_REASON = f"{URL_ENV} is not set (e.g. postgresql://postgres@127.0.0.1:5432/test)"


def postgres_url() -> str:
    """The test server's URL; skips the test when it is not configured."""
    url = os.environ.get(URL_ENV, "")
    if not url:
        pytest.skip(SKIP_REASON)
    return url


def with_port(url: str, port: int) -> str:
    """``url`` pointed at another port on the same host (a ``TcpProxy`` in front of it)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


@contextlib.asynccontextmanager
async def fresh_schema(url: str) -> AsyncIterator[str]:
    """The name of a schema no one uses (``t_<hex>``; created by whoever opens it first),
    dropped with everything in it when the block ends."""
    schema = "t_" + secrets.token_hex(6)
    try:
        yield schema
    finally:
        conn = await asyncpg.connect(url, timeout=5)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await conn.close()
