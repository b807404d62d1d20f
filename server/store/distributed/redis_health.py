"""The distributed ``HealthStore``: the embedded ``LocalHealth`` for every decision, with its
circuit transitions and key cooldowns replicated to every other process through Redis.

The protocol is synchronous (the executor asks it several times per attempt), so nothing here
waits on Redis: a transition on this replica (a circuit opening, tripping or closing; a key
cooled) is queued (``RedisClient.defer``) as one script that records it in the hash
``<prefix>health`` (name → JSON, kept until the longest open/cool ends, for replicas that start
later) and PUBLISHes it on the channel ``<prefix>health``. A subscriber task applies other
replicas' transitions to the local copy. Deadlines travel as wall-clock unix seconds (replicas'
monotonic clocks are unrelated; NTP skew is small next to a cooldown).

Half-open is not replicated: each replica lets its own single probe through once the shared
cooldown ends, and the first probe to succeed closes the circuit everywhere.

When Redis is down every replica goes on deciding alone; the subscriber reconnects, then reads
the hash again (subscribing first, so nothing published in between is missed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid

from redis.exceptions import RedisError

from server.config import CircuitConfig
from server.core.state import CircuitState
from server.store.distributed.redis_client import RETRY_MAX, RETRY_MIN, RedisClient, Script
from server.store.embedded.health import LocalHealth

log = logging.getLogger(__name__)

# KEYS: the hash. ARGV: channel, field, record ('' for a closed circuit: forget it), ms to
# keep it, message.
PUBLISH = Script(
    """
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[2])
else
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
  local keep = tonumber(ARGV[4])
  if redis.call('PTTL', KEYS[1]) < keep then redis.call('PEXPIRE', KEYS[1], keep) end
end
redis.call('PUBLISH', ARGV[1], ARGV[5])
return 1
"""
)


class RedisHealth(LocalHealth):
    """``LocalHealth`` whose transitions reach every replica (``server.core.state.HealthStore``).

    Subclassed rather than wrapped so that remote transitions can be applied to the entries
    without a second copy of the breaker's state machine."""

    def __init__(self, client: RedisClient, config: CircuitConfig | None = None) -> None:
        super().__init__(config)
        self.client = client
        self._key = client.prefix + "health"
        self._origin = uuid.uuid4().hex[:12]
        self._applying = False
        self._subscriber: asyncio.Task[None] | None = None
        # Set once the subscriber is subscribed and has read the hash (tests await it).
        self.synced = asyncio.Event()
        self.listeners.append(self._replicate)

    def start(self) -> None:
        """Starts the subscriber (needs the running loop; the first ``acquire`` starts it
        otherwise, so a composition root that forgets cannot silently stop replication)."""
        if self._subscriber is None or self._subscriber.done():
            self._subscriber = asyncio.get_running_loop().create_task(self._subscribe_forever())

    def acquire(self, name: str) -> bool:
        if self._subscriber is None:
            self.start()
        return super().acquire(name)

    async def aclose(self) -> None:
        if self._subscriber is not None:
            self._subscriber.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._subscriber

    def problems(self) -> list[str]:
        """The limit store's, for ``/healthz`` (``Stores.problems`` shows them once)."""
        return self.client.problems()

    # --- outgoing -------------------------------------------------------------------------

    def cool(self, name: str, seconds: float) -> None:
        super().cool(name, seconds)
        if seconds > 0 and not self._applying:
            self._send(name, "cool", time.time() + seconds, seconds)

    def _replicate(self, name: str, state: CircuitState) -> None:
        if self._applying or state is CircuitState.HALF_OPEN:
            return
        if state is CircuitState.OPEN:
            seconds = self.retry_in(name)
            self._send(name, "open", time.time() + seconds, seconds)
        else:
            self._send(name, "closed", 0.0, 0.0)

    def _send(self, name: str, kind: str, until: float, seconds: float) -> None:
        message = json.dumps({"o": self._origin, "n": name, "k": kind, "u": until})
        # One field per name and kind, so a cooldown never hides an open circuit's record.
        field, stored = (f"open:{name}", "") if kind == "closed" else (f"{kind}:{name}", message)
        keep = int(seconds * 1000) + 1000
        self.client.defer(PUBLISH, (self._key,), (self._key, field, stored, keep, message))

    # --- incoming -------------------------------------------------------------------------

    def apply(self, message: str | bytes) -> None:
        """Applies one transition published by another replica."""
        try:
            m = json.loads(message)
            origin, name, kind, until = m["o"], str(m["n"]), m["k"], float(m["u"])
        except (ValueError, KeyError, TypeError):
            return
        if origin == self._origin:
            return
        left = until - time.time()
        self._applying = True
        try:
            if kind == "open" and left > 0:
                e = self._entries.get(name) or self._new(name)
                deadline = self._clock() + left
                if e.state is not CircuitState.OPEN or e.open_until < deadline:
                    e.open_until = deadline
                    e.probe = False
                    if e.state is not CircuitState.OPEN:
                        self._set(name, e, CircuitState.OPEN)
            elif kind == "closed":
                entry = self._entries.get(name)
                if entry is not None and entry.state is not CircuitState.CLOSED:
                    entry.probe = False
                    entry.consecutive = 0
                    entry.total, entry.errors = 1.0, 0.0
                    self._set(name, entry, CircuitState.CLOSED)
            elif kind == "cool" and left > 0:
                super().cool(name, left)
        finally:
            self._applying = False

    async def _subscribe_forever(self) -> None:
        delay = RETRY_MIN
        while True:
            conn = self.client.pubsub_connection()
            pubsub = conn.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._key)
                for value in (await conn.hgetall(self._key)).values():
                    self.apply(value)
                self.synced.set()
                self.client.mark_up()
                delay = RETRY_MIN
                while True:
                    msg = await pubsub.get_message(timeout=5.0)
                    if msg is not None and msg.get("type") == "message":
                        self.apply(msg["data"])
            except (RedisError, OSError) as exc:
                self.synced.clear()
                self.client.mark_down(exc)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                with contextlib.suppress(Exception):
                    await conn.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)
