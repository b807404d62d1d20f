"""The distributed response cache: entries in Redis, shared by every gateway process.

One string per entry under ``<prefix><key>`` with Redis's own expiry (``SET ... PX``), so TTL
is enforced by the server and the size cap by its ``maxmemory`` policy (an operator running
the cache gives it ``allkeys-lru`` or ``volatile-lru``); entries larger than ``max_entry_bytes``
are not stored. A Redis that is down or slow must not fail a request that could be answered
upstream: errors on a get read as a miss and on a put are dropped (and logged once per kind).
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "switchboard:cache:"


class RedisCache:
    """A ``server.core.cache.ResponseCache`` in Redis."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        max_entry_bytes: int = 1024 * 1024,
        timeout: float = 0.5,
    ) -> None:
        self.prefix = prefix
        self.max_entry_bytes = max_entry_bytes
        # A cache lookup waits at most `timeout` before the request goes upstream instead.
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._warned: set[str] = set()

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._redis.get(self.prefix + key)
        except (RedisError, OSError) as exc:
            self._warn("get", exc)
            return None
        return value if isinstance(value, bytes) else None

    async def put(self, key: str, value: bytes, ttl: float) -> None:
        if len(value) > self.max_entry_bytes or ttl <= 0:
            return
        try:
            await self._redis.set(self.prefix + key, value, px=max(int(ttl * 1000), 1))
        except (RedisError, OSError) as exc:
            self._warn("put", exc)

    async def aclose(self) -> None:
        await self._redis.aclose()

    def _warn(self, op: str, exc: BaseException) -> None:
        if op not in self._warned:
            self._warned.add(op)
            # The exception's class only: a connection error's text may carry the URL.
            log.warning("response cache: Redis %s failed (%s)", op, type(exc).__name__)
