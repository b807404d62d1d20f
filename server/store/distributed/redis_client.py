"""The limit store's Redis client: one pooled connection set per process, shared by the rate
limiter, the budgets and the health replication.

Two kinds of calls:

- ``call`` (awaited on the request path): one Lua script. The calls made in one event-loop
  iteration (admission's checks, gathered) go out as ONE pipelined round trip, so a request's
  checks cost one round trip however many limits it has. Any failure to reach Redis raises
  ``StoreUnavailableError`` naming the store (never its URL);
- ``defer`` (the non-blocking half of the protocols: reconcile, refund, leave, settle, health
  transitions): appended to an ordered in-process queue that a background task sends as ONE
  pipelined round trip per batch. While Redis is down the queue is kept (bounded: past
  ``max_queued`` operations new ones are dropped and counted) and sent in order when it
  returns, without a restart.

Scripts go by ``EVALSHA``; a Redis that restarted (and forgot its script cache) answers
NOSCRIPT once, the scripts are loaded again and the call repeated. ``round_trips`` counts
every network round trip (a pipeline or a script call is one), so the bench can report them
per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError, ResponseError

from server.core.errors import StoreUnavailableError
from server.core.loops import running_loop

log = logging.getLogger(__name__)

UNREACHABLE = "the limit store (Redis) is unreachable"
REFUSED = "the limit store (Redis) refused a command"
BUSY = "the limit store (Redis) is overloaded: no free connection"
# Operations kept while Redis is down; a minute of a busy gateway's settles.
MAX_QUEUED = 100_000
# What a refusal tells the caller to wait: outages are usually seconds (as the PostgreSQL
# stores say).
RETRY_AFTER = 1.0
# Connections per process: enough for a burst of admissions at sub-ms round trips.
MAX_CONNECTIONS = 32
# How long a call waits for a free connection in a burst (not an outage: Redis answers).
POOL_WAIT = 2.0
# Operations per pipelined round trip.
MAX_BATCH = 1_000
# Wait between attempts to send the queue while Redis is down.
RETRY_MIN, RETRY_MAX = 0.05, 1.0

Arg = str | int | float

# Lua: a lease set (sorted set scored by deadline, ms) lives as long as its last lease, so
# processes configured with different leases never cut each other's short.
EXPIRE_WITH_LAST_LEASE = """
local function expire_with_last_lease(key)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if last[2] then redis.call('PEXPIREAT', key, math.ceil(tonumber(last[2]))) end
end
"""


@dataclass(frozen=True, slots=True)
class Script:
    """One Lua script, known to Redis by its SHA-1."""

    source: str
    # Redis names scripts by SHA-1; computed once, not per call.
    sha: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


@dataclass(frozen=True, slots=True)
class _Op:
    script: Script
    keys: tuple[str, ...]
    args: tuple[Arg, ...]


class RedisClient:
    """Scripts awaited or queued against one Redis, with outage tracking for ``/healthz``."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "sb:",
        timeout: float = 0.5,
        max_queued: int = MAX_QUEUED,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.prefix = prefix
        self.round_trips = 0
        # Deferred operations dropped because the queue was full (Redis down too long).
        self.dropped = 0
        self._url = url
        self._timeout = timeout
        self._max_queued = max_queued
        # Bounded: a burst of requests waits (up to POOL_WAIT) for a connection instead of
        # opening hundreds of them.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=POOL_WAIT,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
        self.redis = aioredis.Redis(connection_pool=pool)
        # Awaited calls of this loop iteration, sent together by `_dispatch`.
        self._calls: list[tuple[_Op, asyncio.Future[object]]] = []
        self._running: set[asyncio.Task[None]] = set()
        self._queue: deque[_Op] = deque()
        self._wake = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._sender: asyncio.Task[None] | None = None
        self._down_since: float | None = None
        self._closed = False

    def __repr__(self) -> str:
        # Never the URL: it may carry a password.
        return f"RedisClient(prefix={self.prefix!r})"

    def pubsub_connection(self) -> aioredis.Redis:
        """A separate client for a subscriber (a subscribed connection can do nothing else)."""
        return aioredis.Redis.from_url(
            self._url, socket_timeout=None, socket_connect_timeout=self._timeout
        )

    # --- awaited calls --------------------------------------------------------------------

    async def call(self, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> object:
        """Runs one script now; ``StoreUnavailableError`` if Redis is down.

        Calls made in the same event-loop iteration (admission's checks, gathered) go out
        together as ONE pipelined round trip: each script is atomic, not all together."""
        loop = running_loop()
        done: asyncio.Future[object] = loop.create_future()
        self._calls.append((_Op(script, tuple(keys), tuple(args)), done))
        if len(self._calls) == 1:
            loop.call_soon(self._dispatch)
        return await done

    def _dispatch(self) -> None:
        calls, self._calls = self._calls, []
        for i in range(0, len(calls), MAX_BATCH):
            task = asyncio.get_running_loop().create_task(self._run(calls[i : i + MAX_BATCH]))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, calls: list[tuple[_Op, asyncio.Future[object]]]) -> None:
        ops = [op for op, _ in calls]
        try:
            results = await self._pipeline(ops)
            missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
            if missing:
                # Only those did not run (Redis restarted, or a script's first use); the
                # rest did and must not run twice.
                await self._load({ops[i].script for i in missing})
                again = await self._pipeline([ops[i] for i in missing])
                for i, r in zip(missing, again, strict=True):
                    results[i] = r
        except StoreUnavailableError as exc:
            for _, done in calls:
                if not done.done():
                    done.set_exception(exc)
            return
        for (_, done), result in zip(calls, results, strict=True):
            if done.done():
                continue
            if isinstance(result, ResponseError):
                # Redis answered: a script error is a bug (or a key of the wrong type), not
                # an outage, so /healthz does not say unreachable.
                log.error("limit store: a script failed (%s)", type(result).__name__)
                done.set_exception(StoreUnavailableError(REFUSED, retry_after=RETRY_AFTER))
            else:
                done.set_result(result)

    async def command(self, *args: Arg) -> object:
        """One plain command (one round trip), errors mapped like ``call``."""
        try:
            self.round_trips += 1
            result = await self.redis.execute_command(*args)
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from None
        self._up()
        return result

    # --- queued calls ---------------------------------------------------------------------

    def defer(self, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> None:
        """Queues one script call, sent in order in the background (never blocks)."""
        if self._closed:
            self.dropped += 1
            return
        if len(self._queue) >= self._max_queued:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 10_000 == 0:
                log.warning("limit store: %d queued updates dropped (Redis down)", self.dropped)
            return
        self._queue.append(_Op(script, tuple(keys), tuple(args)))
        self._wake.set()
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send_forever())

    @property
    def queued(self) -> int:
        """Deferred operations not yet sent."""
        return len(self._queue)

    async def flush(self) -> None:
        """Sends every queued operation now; ``StoreUnavailableError`` (queue kept) if Redis is
        down."""
        while self._queue:
            await self._send_batch()

    async def aclose(self) -> None:
        """Drains the queue (within a few timeouts), then closes the connections."""
        if self._closed:
            return
        with contextlib.suppress(StoreUnavailableError, TimeoutError):
            await asyncio.wait_for(self.flush(), 4 * self._timeout + 1.0)
        self._closed = True
        if self._queue:
            self.dropped += len(self._queue)
            log.warning("limit store: %d queued updates lost at shutdown", len(self._queue))
            self._queue.clear()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        await self.redis.aclose()

    # --- health ---------------------------------------------------------------------------

    @property
    def reachable(self) -> bool:
        return self._down_since is None

    def problems(self) -> list[str]:
        """What ``/healthz`` reports about the limit store; empty when all is well."""
        out: list[str] = []
        if self._down_since is not None:
            out.append(
                f"limits: Redis unreachable since {time.monotonic() - self._down_since:.1f} s"
                f" ({len(self._queue)} updates queued)"
            )
        if self.dropped:
            out.append(f"limits: {self.dropped} queued updates dropped while Redis was down")
        return out

    def mark_down(self, exc: BaseException) -> None:
        """Records an outage seen by another connection (the health subscriber)."""
        self._unavailable(exc)

    def mark_up(self) -> None:
        """Records that another connection reached Redis again."""
        self._up()

    # --- internals ------------------------------------------------------------------------

    async def _send_forever(self) -> None:
        delay = RETRY_MIN
        while not self._closed:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                await self._send_batch()
                delay = RETRY_MIN
            except StoreUnavailableError:
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)

    async def _send_batch(self) -> None:
        async with self._send_lock:
            batch = [self._queue[i] for i in range(min(len(self._queue), MAX_BATCH))]
            if not batch:
                return
            results = await self._pipeline(batch)
            for _ in batch:
                self._queue.popleft()
            missing = []
            for op, r in zip(batch, results, strict=True):
                if isinstance(r, NoScriptError):
                    missing.append(op)
                elif isinstance(r, ResponseError):
                    # A script error is a bug, not an outage: log it (no values) and go on.
                    log.error("limit store: a queued update failed (%s)", type(r).__name__)
            if missing:
                # Redis restarted (or never ran this script): those ops did not run, the
                # others did and must not run twice. They go back first in line; the
                # scripts are loaded for the next batch.
                self._queue.extendleft(reversed(missing))
                await self._load({op.script for op in missing})

    async def _load(self, scripts: set[Script]) -> None:
        """Loads scripts Redis does not know (one round trip for all of them)."""
        pipe = self.redis.pipeline(transaction=False)
        for script in scripts:
            pipe.script_load(script.source)
        try:
            self.round_trips += 1
            await pipe.execute()
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from None

    async def _pipeline(self, batch: list[_Op]) -> list[object]:
        pipe = self.redis.pipeline(transaction=False)
        for op in batch:
            pipe.execute_command("EVALSHA", op.script.sha, len(op.keys), *op.keys, *op.args)
        try:
            self.round_trips += 1
            results: list[object] = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from None
        self._up()
        return results

    def _unavailable(self, exc: BaseException) -> StoreUnavailableError:
        if str(exc) == "No connection available.":
            # redis-py's pool ran out of connections for POOL_WAIT: overload, not an outage.
            log.warning("limit store: no free Redis connection within %.1f s", POOL_WAIT)
            return StoreUnavailableError(BUSY, retry_after=RETRY_AFTER)
        if self._down_since is None:
            self._down_since = time.monotonic()
            # The exception's class only: a connection error's text may carry the URL.
            log.warning("limit store: Redis unreachable (%s)", type(exc).__name__)
        return StoreUnavailableError(UNREACHABLE, retry_after=RETRY_AFTER)

    def _up(self) -> None:
        if self._down_since is not None:
            log.info(
                "limit store: Redis reachable again after %.1f s",
                time.monotonic() - self._down_since,
            )
            self._down_since = None
