"""The distributed ``BudgetStore``: month-to-date spend and in-flight reservations in Redis,
with the refusals of the embedded ``MemoryBudgets`` (``server.store.embedded.budgets``).

Per name (key id or ``project_name(id)``), in integer nano-USD:

- ``<prefix>bud:{<name>}:spent:<YYYY-MM>``: settled spend of that UTC month (a string
  counter). Naming it by month is the roll-over: a new month starts from an absent key. It
  expires some weeks after its month ends;
- ``<prefix>bud:{<name>}:res``: reservations in flight, a sorted set of
  ``<process id>:<seq>:<amount>`` scored by a lease deadline (Redis time, ms). A reservation
  of a process that died holding it is purged once its lease (15 minutes: longer than any
  request) has passed.

``reserve`` is one script call: purge expired leases, refuse when spent + reserved + estimate
would pass the limit, else add a lease. Redis keeps nothing on disk here, so the spend counter
is seeded from the ledger (``seed``: ``UsageReader.month_spend`` over the month's [start,
end)): when the month's key is absent the script says so, the seed is read and the script
runs again writing the counter only if still absent, so replicas seeding at once count once.

``settle`` carries no reservation id: this process keeps name → its leases and releases one of
the settled amount. It never blocks (``RedisClient.defer``); it adds to the spend counter only
where the counter exists, since an absent one will be seeded from the ledger, which carries
the request's row.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Awaitable, Callable

from server.core.money import month_bounds, month_of
from server.store.distributed.redis_client import EXPIRE_WITH_LAST_LEASE, RedisClient, Script
from server.store.embedded.budgets import budget_refusal

# A reservation outlives any request; past this it is a dead process's and is purged.
RESERVATION_LEASE = 15 * 60.0
# How long a spend counter outlives its month (a late settle still lands; then Redis forgets).
SPENT_TTL_AFTER_MONTH = 35 * 86400

Seed = Callable[[float, float], Awaitable[dict[str, int]]]

# KEYS: spend counter, reservations. ARGV: limit, estimate, member, lease ms, expire-at
# (unix s) for a new counter, and the seed ('' when not read yet).
# Returns {0 admitted | 1 refused | 2 needs the seed, spent, reserved}.
RESERVE = Script(
    EXPIRE_WITH_LAST_LEASE
    + """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local spent = redis.call('GET', KEYS[1])
if not spent then
  if ARGV[6] == '' then return {2, 0, 0} end
  redis.call('SET', KEYS[1], ARGV[6], 'EXAT', ARGV[5])
  spent = ARGV[6]
end
spent = tonumber(spent)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms)
local held = 0
for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  held = held + tonumber(string.match(m, ':(%d+)$'))
end
local limit, estimate = tonumber(ARGV[1]), tonumber(ARGV[2])
if spent >= limit or spent + held + estimate > limit then return {1, spent, held} end
if estimate > 0 then
  local lease = tonumber(ARGV[4])
  redis.call('ZADD', KEYS[2], now_ms + lease, ARGV[3])
  expire_with_last_lease(KEYS[2])
end
return {0, spent, held}
"""
)

# KEYS: spend counter, reservations. ARGV: member ('' for none), actual cost.
SETTLE = Script(
    """
if ARGV[1] ~= '' then redis.call('ZREM', KEYS[2], ARGV[1]) end
local actual = tonumber(ARGV[2])
if actual ~= 0 and redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('INCRBY', KEYS[1], actual)
end
return 1
"""
)


class RedisBudgets:
    """Monthly spend limits shared by every process (``server.core.state.BudgetStore``)."""

    def __init__(
        self,
        client: RedisClient,
        seed: Seed,
        *,
        lease: float = RESERVATION_LEASE,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.lease = lease
        self._seed = seed
        self._clock = wall_clock
        # The ledger read in flight: misses that overlap it (every name after a Redis
        # restart) share it rather than each querying the ledger.
        self._seeding: asyncio.Future[dict[str, int]] | None = None
        # This process's reservations: name → [(member, amount)], for settle to release.
        self._leases: dict[str, list[tuple[str, int]]] = {}
        self._process = uuid.uuid4().hex[:12]
        self._seq = itertools.count()

    def _keys(self, key_id: str, month: tuple[int, int]) -> tuple[str, str]:
        base = f"{self.client.prefix}bud:{{{key_id}}}:"
        return f"{base}spent:{month[0]:04d}-{month[1]:02d}", base + "res"

    def spend_key(self, key_id: str) -> str:
        """The Redis key of this month's spend of ``key_id``."""
        return self._keys(key_id, month_of(self._clock()))[0]

    async def reserve(self, key_id: str, limit: int, estimate: int) -> int:
        """Reserves ``estimate`` nano-USD against ``limit`` (one round trip; two more when the
        month's counter must be seeded); ``BudgetExceededError`` as ``MemoryBudgets``."""
        now = self._clock()
        month = month_of(now)
        start, end = month_bounds(*month)
        keys = self._keys(key_id, month)
        member = f"{self._process}:{next(self._seq)}:{estimate}"
        args: list[str | int] = [
            limit, estimate, member, int(self.lease * 1000), int(end) + SPENT_TTL_AFTER_MONTH, ""
        ]  # fmt: skip
        status, spent, held = _ints(await self.client.call(RESERVE, keys, args))
        if status == 2:
            args[-1] = (await self._month_seed(start, end)).get(key_id, 0)
            status, spent, held = _ints(await self.client.call(RESERVE, keys, args))
        if status == 1:
            refusal = budget_refusal(key_id, limit, spent, held, estimate, end - now)
            assert refusal is not None
            raise refusal
        if estimate:
            self._leases.setdefault(key_id, []).append((member, estimate))
        return estimate

    def settle(self, key_id: str, reserved: int, actual: int) -> None:
        """Releases a reservation of ``reserved`` and adds ``actual`` to this month's spend
        (queued)."""
        member = ""
        if reserved:
            held = self._leases.get(key_id, [])
            # One of the settled amount; failing that the oldest, rather than leave a
            # reservation counting against the budget until its lease ends.
            pick = next((i for i, (_, amount) in enumerate(held) if amount == reserved), 0)
            if held:
                member = held.pop(pick)[0]
            if not held:
                self._leases.pop(key_id, None)
        if member or actual:
            keys = self._keys(key_id, month_of(self._clock()))
            self.client.defer(SETTLE, keys, (member, actual))

    async def spent(self, key_id: str) -> int:
        """Settled spend of this key in the current month (the ledger's when Redis has none)."""
        now = self._clock()
        month = month_of(now)
        value = await self.client.command("GET", self._keys(key_id, month)[0])
        if value is None:
            return (await self._month_seed(*month_bounds(*month))).get(key_id, 0)
        assert isinstance(value, bytes | str | int)
        return int(value)

    def problems(self) -> list[str]:
        """The limit store's, for ``/healthz`` (``Stores.problems`` shows them once)."""
        return self.client.problems()

    async def _month_seed(self, start: float, end: float) -> dict[str, int]:
        # Not cached beyond one read: a seed older than Redis's loss of a counter would
        # forget what was spent in between.
        if self._seeding is None:
            self._seeding = asyncio.ensure_future(self._seed(start, end))
            self._seeding.add_done_callback(self._seeded)
        return await asyncio.shield(self._seeding)

    def _seeded(self, done: asyncio.Future[dict[str, int]]) -> None:
        self._seeding = None


def _ints(result: object) -> tuple[int, int, int]:
    assert isinstance(result, list) and len(result) == 3
    return int(result[0]), int(result[1]), int(result[2])
