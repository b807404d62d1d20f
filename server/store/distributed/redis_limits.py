"""The distributed ``RateLimiter``: the embedded token buckets (``server.store.embedded.limits``)
and concurrency slots, shared by every gateway process through Redis.

``acquire`` is one Lua script call (one round trip) that refills and checks both of a name's
buckets and takes from both or neither, so N replicas admit exactly what one process would.
The script reads Redis's clock (``TIME``), so clock skew between replicas does not matter.
A bucket is a hash ``<prefix>rl:{<name>}:rpm`` / ``:tpm`` (level, updated, capacity, rate);
the ``{<name>}`` hash tag keeps one name's keys in one cluster slot. A bucket expires once it
would have refilled, which is the same as full.

Concurrency slots are leases: ``<prefix>cc:{<name>}`` is a sorted set of
``<process id>:<seq>`` members scored by a lease deadline (Redis time, ms); ``enter`` purges
expired members before counting. A heartbeat extends the leases this process holds, so a long
stream keeps its slot while a SIGKILLed process's slots free themselves after ``lease``.

``reconcile``, ``refund`` and ``leave`` never block: they go onto the client's ordered queue
(``RedisClient.defer``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid

from server.store.distributed.redis_client import EXPIRE_WITH_LAST_LEASE, RedisClient, Script
from server.store.embedded.limits import concurrency_limited, rate_limited

# Lease of a concurrency slot; the heartbeat renews held ones every lease / 3.
SLOT_LEASE = 30.0

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
"""

# A bucket as of `now`: level after refill, capacity and rate resized to `limit` (the used
# part kept), exactly as `_Bucket.refill` / `_Bucket.resize`.
_BUCKET = """
local function bucket(key, limit, window, now)
  local h = redis.call('HMGET', key, 'level', 'updated', 'capacity')
  local cap = tonumber(limit)
  if not h[1] then return cap, cap end
  local level, updated, old = tonumber(h[1]), tonumber(h[2]), tonumber(h[3])
  if now > updated then
    level = math.min(level + (now - updated) * old / window, old)
  end
  if old ~= cap then level = cap - (old - level) end
  return level, cap
end
local function save(key, level, cap, window, now)
  redis.call('HSET', key, 'level', tostring(level), 'updated', tostring(now),
             'capacity', tostring(cap))
  local full_in = (cap - level) * window / cap
  redis.call('PEXPIRE', key, math.ceil(full_in * 1000) + 1000)
end
"""

# KEYS: rpm bucket, tpm bucket. ARGV: rpm limit or '', tpm limit or '', tokens to reserve,
# window seconds. Returns {admitted, rpm wait, tpm wait} (waits as strings: Lua numbers
# returned to Redis are truncated to integers).
ACQUIRE = Script(
    _NOW
    + _BUCKET
    + """
local window = tonumber(ARGV[4])
local want = tonumber(ARGV[3])
local rl, rc, tl, tc
local rw, tw = 0, 0
if ARGV[1] ~= '' then
  rl, rc = bucket(KEYS[1], ARGV[1], window, now)
  if 1 - rl > 1e-9 then rw = (1 - rl) * window / rc end
end
if ARGV[2] ~= '' then
  tl, tc = bucket(KEYS[2], ARGV[2], window, now)
  if want - tl > 1e-9 then tw = (want - tl) * window / tc end
end
if rw > 0 or tw > 0 then return {0, tostring(rw), tostring(tw)} end
if rl then save(KEYS[1], rl - 1, rc, window, now) end
if tl then save(KEYS[2], tl - want, tc, window, now) end
return {1, '0', '0'}
"""
)

# KEYS: buckets; ARGV[i]: what to give back to KEYS[i] (negative: take more), then the
# window. A missing bucket is full already (or was never limited): nothing to do.
CREDIT = Script(
    _NOW
    + """
local window = tonumber(ARGV[#ARGV])
for i, key in ipairs(KEYS) do
  local amount = tonumber(ARGV[i])
  local h = redis.call('HMGET', key, 'level', 'updated', 'capacity')
  if h[1] and amount ~= 0 then
    local level, updated, cap = tonumber(h[1]), tonumber(h[2]), tonumber(h[3])
    if now > updated then level = math.min(level + (now - updated) * cap / window, cap) end
    level = math.min(level + amount, cap)
    redis.call('HSET', key, 'level', tostring(level), 'updated', tostring(now))
    redis.call('PEXPIRE', key, math.ceil((cap - level) * window / cap * 1000) + 1000)
  end
end
return 1
"""
)

# KEYS: slot set. ARGV: limit, member, lease ms. Returns 1 when the slot was taken.
ENTER = Script(
    _NOW
    + EXPIRE_WITH_LAST_LEASE
    + """
local now_ms = math.floor(now * 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
local lease = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now_ms + lease, ARGV[2])
expire_with_last_lease(KEYS[1])
return 1
"""
)

# KEYS: slot set. ARGV: members.
LEAVE = Script("return redis.call('ZREM', KEYS[1], unpack(ARGV))")

# KEYS: slot set. ARGV: lease ms, then the members this process still holds there.
EXTEND = Script(
    _NOW
    + EXPIRE_WITH_LAST_LEASE
    + """
local deadline = math.floor(now * 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', deadline, ARGV[i]) end
expire_with_last_lease(KEYS[1])
return 1
"""
)


class RedisRateLimiter:
    """RPM and TPM buckets and concurrency leases in Redis (``server.core.state.RateLimiter``),
    the same semantics as ``MemoryRateLimiter``."""

    def __init__(
        self, client: RedisClient, *, window: float = 60.0, slot_lease: float = SLOT_LEASE
    ) -> None:
        self.client = client
        self.window = window
        self.slot_lease = slot_lease
        # Members of the slot sets this process holds, per name (leave picks one; the
        # heartbeat renews them all).
        self._slots: dict[str, list[str]] = {}
        self._process = uuid.uuid4().hex[:12]
        self._seq = itertools.count()
        self._heartbeat: asyncio.Task[None] | None = None

    def _bucket_keys(self, key_id: str) -> tuple[str, str]:
        base = f"{self.client.prefix}rl:{{{key_id}}}:"
        return base + "rpm", base + "tpm"

    def _slot_key(self, name: str) -> str:
        return f"{self.client.prefix}cc:{{{name}}}"

    async def acquire(self, key_id: str, rpm: int | None, tpm: int | None, tokens: int) -> int:
        """Counts one request and reserves ``tokens`` (one round trip); ``RateLimitedError``
        (nothing taken) as ``MemoryRateLimiter.acquire``, ``StoreUnavailableError`` when Redis
        cannot be reached."""
        if rpm is None and tpm is None:
            return 0
        reserved = 0 if tpm is None else min(tokens, tpm)
        result = await self.client.call(
            ACQUIRE,
            self._bucket_keys(key_id),
            ("" if rpm is None else rpm, "" if tpm is None else tpm, reserved, self.window),
        )
        admitted, rpm_wait, tpm_wait = _triple(result)
        if not admitted:
            raise rate_limited(key_id, rpm, tpm, reserved, float(rpm_wait), float(tpm_wait))
        return reserved

    def reconcile(self, key_id: str, reserved: int, actual: int) -> None:
        """Replaces a reservation of ``reserved`` tokens by the ``actual`` count (queued)."""
        if reserved != actual:
            _, tpm_key = self._bucket_keys(key_id)
            self.client.defer(CREDIT, (tpm_key,), (reserved - actual, self.window))

    def refund(self, key_id: str, requests: int, tokens: int) -> None:
        """Gives back ``requests`` and ``tokens`` taken by ``acquire`` (queued)."""
        if requests or tokens:
            self.client.defer(CREDIT, self._bucket_keys(key_id), (requests, tokens, self.window))

    async def enter(self, name: str, limit: int) -> None:
        """Takes one of ``limit`` slots of ``name`` as a lease (one round trip), or raises
        ``RateLimitedError`` (nothing taken)."""
        member = f"{self._process}:{next(self._seq)}"
        taken = await self.client.call(
            ENTER, (self._slot_key(name),), (limit, member, _ms(self.slot_lease))
        )
        if not taken:
            raise concurrency_limited(name, limit)
        self._slots.setdefault(name, []).append(member)
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.get_running_loop().create_task(self._renew_forever())

    def leave(self, name: str) -> None:
        """Gives back a slot taken by ``enter`` (queued)."""
        held = self._slots.get(name)
        if not held:
            return
        member = held.pop()
        if not held:
            del self._slots[name]
        self.client.defer(LEAVE, (self._slot_key(name),), (member,))

    def problems(self) -> list[str]:
        """The limit store's, for ``/healthz`` (``Stores.problems`` shows them once)."""
        return self.client.problems()

    def held(self, name: str) -> int:
        """Slots of ``name`` this process holds now."""
        return len(self._slots.get(name, ()))

    def renew(self) -> None:
        """Extends every lease this process holds (queued; the heartbeat calls it)."""
        for name, members in self._slots.items():
            self.client.defer(EXTEND, (self._slot_key(name),), (_ms(self.slot_lease), *members))

    async def aclose(self) -> None:
        """Stops the heartbeat (the client is closed by its owner)."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat

    async def _renew_forever(self) -> None:
        while self._slots:
            await asyncio.sleep(self.slot_lease / 3)
            self.renew()


def _ms(seconds: float) -> int:
    return max(int(seconds * 1000), 1)


def _triple(result: object) -> tuple[int, str, str]:
    assert isinstance(result, list) and len(result) == 3
    flag, a, b = result
    return (
        int(flag),
        a.decode() if isinstance(a, bytes) else str(a),
        (b.decode() if isinstance(b, bytes) else str(b)),
    )
