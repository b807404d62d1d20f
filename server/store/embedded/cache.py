"""The embedded response cache: an in-process LRU bounded by the bytes it holds.

One ``OrderedDict`` from key to (expiry, value), oldest use first; a get moves an entry to the
end, a put evicts from the front until the values fit ``max_bytes``. Everything runs on the
event loop's thread (the Gateway calls it between awaits), so no lock is needed. An entry past
its TTL is dropped when it is next read; an expired entry that is never read again is evicted
by size like any other.
"""

from __future__ import annotations

import time
from collections import OrderedDict


class MemoryCache:
    """A ``server.core.cache.ResponseCache`` in this process's memory."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if time.monotonic() >= expires:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return value

    async def put(self, key: str, value: bytes, ttl: float) -> None:
        if key in self._entries:
            self._drop(key)
        if len(value) > self.max_bytes or ttl <= 0:
            return
        self._entries[key] = (time.monotonic() + ttl, value)
        self.size += len(value)
        while self.size > self.max_bytes:
            self._drop(next(iter(self._entries)))

    async def aclose(self) -> None:
        self._entries.clear()
        self.size = 0

    def _drop(self, key: str) -> None:
        _, value = self._entries.pop(key)
        self.size -= len(value)
