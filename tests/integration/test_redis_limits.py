"""The Redis rate limiter across independent instances (each its own client, as separate
processes would be), against the machine's real Redis: exact limits, slot leases, round trips
and an outage through a loopback proxy."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from server.core.context import CallContext, KeyLimits, Principal
from server.core.errors import RateLimitedError, StoreUnavailableError
from server.core.records import RequestRecord
from server.policy.admission import UsagePolicy
from server.routing.cost import Price
from server.store.distributed.redis_client import Script
from server.store.distributed.redis_limits_backend import RedisLimits, open_redis_limits
from tests.fakes.tcp_proxy import TcpProxy
from tests.support.redis import LimitsFactory, eventually, fresh, via
from tests.support.redis import factory as factory  # the fixture
from tests.unit.policy.support import plan, request

# Against the shared Redis (`-m "not redis"` leaves these out).
pytestmark = pytest.mark.redis


async def _no_spend(start: float, end: float) -> dict[str, int]:
    return {}


async def admitted(limits: list[RedisLimits], key: str, n: int, rpm: int) -> int:
    async def one(i: int) -> bool:
        try:
            await limits[i % len(limits)].limiter.acquire(key, rpm, None, 0)
        except RateLimitedError:
            return False
        return True

    return sum(await asyncio.gather(*(one(i) for i in range(n))))


async def test_three_instances_admit_exactly_the_rpm(factory: LimitsFactory) -> None:
    instances = [await factory.open() for _ in range(3)]
    key = fresh()
    assert await admitted(instances, key, 120, 30) == 30
    with pytest.raises(RateLimitedError) as info:
        await instances[1].limiter.acquire(key, 30, None, 0)
    # 30 per minute refills one every 2 s.
    assert info.value.retry_after is not None and 0 < info.value.retry_after <= 2.0 + 0.1


async def test_a_reconcile_on_one_instance_frees_tokens_for_another(
    factory: LimitsFactory,
) -> None:
    a, b = await factory.open(), await factory.open()
    key = fresh()
    assert await a.limiter.acquire(key, None, 100, 60) == 60
    with pytest.raises(RateLimitedError):
        await b.limiter.acquire(key, None, 100, 50)
    a.limiter.reconcile(key, 60, 10)
    await a.flush()
    assert await b.limiter.acquire(key, None, 100, 50) == 50


async def test_slots_are_shared_and_a_left_slot_is_free_everywhere(
    factory: LimitsFactory,
) -> None:
    a, b, c = [await factory.open() for _ in range(3)]
    name = fresh()
    await a.limiter.enter(name, 2)
    await b.limiter.enter(name, 2)
    with pytest.raises(RateLimitedError):
        await c.limiter.enter(name, 2)
    a.limiter.leave(name)
    await a.flush()
    await c.limiter.enter(name, 2)


async def test_a_dead_process_s_slots_free_themselves_after_the_lease(
    factory: LimitsFactory,
) -> None:
    lease = 0.3
    dying = await factory.open(slot_lease=lease)
    other = await factory.open(slot_lease=lease)
    name = fresh()
    # The survivor holds a slot too: its heartbeat keeps the set alive, so only the purge of
    # expired members can free the dead one's.
    await other.limiter.enter(name, 3)
    await dying.limiter.enter(name, 3)
    await dying.limiter.enter(name, 3)
    # SIGKILL-like: the process stops without leaving (no heartbeat, nothing sent).
    await dying.limiter.aclose()
    await dying.client.redis.aclose()
    with pytest.raises(RateLimitedError):
        await other.limiter.enter(name, 3)
    await asyncio.sleep(lease + 0.05)
    await other.limiter.enter(name, 3)
    await other.limiter.enter(name, 3)
    with pytest.raises(RateLimitedError):
        await other.limiter.enter(name, 3)


async def test_the_heartbeat_keeps_a_long_call_s_slot(factory: LimitsFactory) -> None:
    lease = 0.3
    holder = await factory.open(slot_lease=lease)
    other = await factory.open(slot_lease=lease)
    name = fresh()
    await holder.limiter.enter(name, 1)
    await asyncio.sleep(lease * 3)  # a stream longer than the lease
    with pytest.raises(RateLimitedError):
        await other.limiter.enter(name, 1)
    holder.limiter.leave(name)
    await holder.flush()
    await other.limiter.enter(name, 1)


async def test_round_trips_one_per_acquire_and_one_per_batch(factory: LimitsFactory) -> None:
    limits = await factory.open()
    client = limits.client
    key = fresh()
    await limits.limiter.acquire(key, 10, 1000, 5)  # loads the script once
    before = client.round_trips
    await limits.limiter.acquire(key, 10, 1000, 5)
    assert client.round_trips - before == 1
    before = client.round_trips
    await limits.limiter.enter(key, 5)
    assert client.round_trips - before == 1
    await client.flush()
    for _ in range(50):
        limits.limiter.reconcile(key, 5, 3)
        limits.budgets.settle(key, 0, 7)
    limits.limiter.leave(key)
    before = client.round_trips
    await client.flush()  # 101 queued updates the background task has not sent yet
    assert client.round_trips - before <= 1
    assert client.queued == 0


async def test_an_outage_fails_closed_keeps_the_queue_and_recovers(
    factory: LimitsFactory,
) -> None:
    key = fresh()
    async with TcpProxy("127.0.0.1", 6379) as proxy:
        limits = await factory.open(url=via(factory.url, proxy.port))
        direct = await factory.open()
        assert await limits.limiter.acquire(key, None, 100, 80) == 80
        assert await limits.budgets.reserve(key, 10_000, 4_000) == 4_000
        assert limits.problems() == []
        proxy.cut()
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError) as info:
            await limits.limiter.acquire(key, None, 100, 10)
        assert time.monotonic() - started < 1.5
        assert "limit store (Redis)" in info.value.message and "6379" not in info.value.message
        # Queued while Redis is unreachable, kept, sent in order when it returns.
        limits.limiter.reconcile(key, 80, 0)
        limits.budgets.settle(key, 4_000, 1_500)
        await asyncio.sleep(0.2)
        assert limits.client.queued == 2
        assert limits.problems() and "unreachable" in limits.problems()[0]
        with pytest.raises(RateLimitedError):
            await direct.limiter.acquire(key, None, 100, 50)  # not applied yet
        proxy.restore()
        await eventually(lambda: limits.client.queued == 0)
        assert limits.problems() == []
        assert await direct.limiter.acquire(key, None, 100, 90) == 90
        assert await direct.budgets.spent(key) == 1_500
        assert await direct.budgets.reserve(key, 10_000, 8_500) == 8_500  # reservation gone


async def test_a_script_error_is_not_reported_as_an_outage(factory: LimitsFactory) -> None:
    limits = await factory.open()
    key = fresh()
    rpm_key, _ = limits.limiter._bucket_keys(key)
    await limits.client.command("SET", rpm_key, "not a bucket")
    with pytest.raises(StoreUnavailableError) as info:
        await limits.limiter.acquire(key, 10, None, 0)
    assert "refused" in info.value.message and limits.problems() == []


async def test_acquire_latency_and_throughput_on_loopback(factory: LimitsFactory) -> None:
    limits = await factory.open()
    key = fresh()
    await limits.limiter.acquire(key, 10**9, 10**9, 1)
    times = []
    for _ in range(500):
        started = time.perf_counter()
        await limits.limiter.acquire(key, 10**9, 10**9, 100)
        times.append(time.perf_counter() - started)
    times.sort()
    p50, p99 = times[250] * 1000, times[495] * 1000
    started = time.perf_counter()
    await asyncio.gather(*(limits.limiter.acquire(key, 10**9, 10**9, 100) for _ in range(2000)))
    rate = 2000 / (time.perf_counter() - started)
    print(f"acquire: p50 {p50:.3f} ms, p99 {p99:.3f} ms sequential; {rate:,.0f}/s at c2000")
    assert p50 < 20.0


async def test_a_refusing_port_fails_fast_and_never_shows_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    secret = "s3cret-pw"
    limits = open_redis_limits(f"redis://:{secret}@127.0.0.1:{port}/0", _no_spend, max_queued=3)
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError) as info:
            await limits.limiter.acquire(fresh(), 5, None, 0)
        assert time.monotonic() - started < 1.0
        assert info.value.retry_after == 1.0 and info.value.http_status == 503
        for _ in range(5):
            limits.budgets.settle(fresh(), 0, 10)
        assert limits.client.queued == 3 and limits.client.dropped == 2
        problems = limits.limiter.problems()
        assert problems == limits.budgets.problems() == limits.health.problems()
        assert "unreachable" in problems[0] and "2 queued updates dropped" in problems[1]
        shown = [info.value.message, str(info.value), repr(limits), *problems, caplog.text]
        assert not [s for s in shown if secret in s or str(port) in s]
    finally:
        await limits.aclose()
    assert secret not in caplog.text


async def test_a_batch_with_a_script_redis_does_not_know_runs_each_op_once(
    factory: LimitsFactory,
) -> None:
    limits = await factory.open()
    client = limits.client
    known = Script(f"-- {fresh()}\nreturn redis.call('INCR', KEYS[1])")
    unknown = Script(f"-- {fresh()}\nreturn redis.call('INCR', KEYS[1])")
    a, b = factory.prefix + "a", factory.prefix + "b"
    await client.call(known, (a,), ())  # Redis now knows `known`, never saw `unknown`
    client.defer(known, (a,), ())
    client.defer(unknown, (b,), ())
    client.defer(known, (a,), ())
    await client.flush()
    assert await client.command("MGET", a, b) == [b"3", b"1"]


async def test_calls_made_together_share_one_round_trip(factory: LimitsFactory) -> None:
    limits = await factory.open()
    client = limits.client
    script = Script(f"-- {fresh()}\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])")
    a, b = factory.prefix + "a", factory.prefix + "b"
    first = await asyncio.gather(client.call(script, (a,), (2,)), client.call(script, (b,), (5,)))
    assert first == [2, 5]  # the script's first use: NOSCRIPT, load, the two again
    before = client.round_trips
    assert await asyncio.gather(
        client.call(script, (a,), (1,)), client.call(script, (b,), (1,))
    ) == [3, 6]
    assert client.round_trips - before == 1
    # What admission asks at once: the key's and the project's RPM, the key's slot, budgets.
    key, project = fresh(), "project:" + fresh()

    async def admission() -> None:
        await asyncio.gather(
            limits.limiter.acquire(key, 10, None, 0),
            limits.limiter.acquire(project, 10, None, 0),
            limits.limiter.enter(key, 3),
            limits.budgets.reserve(key, 1_000, 0),
            limits.budgets.reserve(project, 1_000, 0),
        )

    before = client.round_trips
    await admission()
    # At most: scripts Redis has not seen (NOSCRIPT, one load, again), then seeding the budgets.
    assert client.round_trips - before <= 4
    before = client.round_trips
    await admission()
    assert client.round_trips - before == 1


# A gateway process's share of a test: its own interpreter, client and limiter on the prefix.
_CHILD = """
import asyncio, sys
from server.core.errors import RateLimitedError
from server.store.distributed.redis_limits_backend import open_redis_limits

async def nothing(start, end):
    return {}

async def main(url, prefix, mode, name):
    limits = open_redis_limits(url, nothing, prefix=prefix, slot_lease=0.4)
    if mode == "acquire":
        async def one():
            try:
                await limits.limiter.acquire(name, 30, None, 0)
                return 1
            except RateLimitedError:
                return 0
        print(sum(await asyncio.gather(*(one() for _ in range(40)))), flush=True)
        await limits.aclose()
    else:
        await limits.limiter.enter(name, 2)
        await limits.limiter.enter(name, 2)
        print("held", flush=True)
        await asyncio.sleep(60)

asyncio.run(main(*sys.argv[1:]))
"""

_ROOT = str(Path(__file__).resolve().parents[2])


async def _child(url: str, prefix: str, mode: str, name: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CHILD, url, prefix, mode, name,
        stdout=asyncio.subprocess.PIPE, cwd=_ROOT,
    )  # fmt: skip


async def test_three_processes_admit_exactly_the_rpm(factory: LimitsFactory) -> None:
    key = fresh()
    children = [await _child(factory.url, factory.prefix, "acquire", key) for _ in range(3)]
    outputs = await asyncio.wait_for(asyncio.gather(*(c.communicate() for c in children)), 30)
    assert sum(int(out) for out, _ in outputs) == 30
    assert all(c.returncode == 0 for c in children)


async def test_a_sigkilled_process_s_slots_free_themselves(factory: LimitsFactory) -> None:
    name = fresh()
    survivor = await factory.open(slot_lease=0.4)
    child = await _child(factory.url, factory.prefix, "enter", name)
    try:
        assert child.stdout is not None
        assert await asyncio.wait_for(child.stdout.readline(), 30) == b"held\n"
        await asyncio.sleep(0.5)  # longer than the lease: the child's heartbeat keeps them
        with pytest.raises(RateLimitedError):
            await survivor.limiter.enter(name, 2)
        child.send_signal(signal.SIGKILL)
        await child.wait()
        await asyncio.sleep(0.45)
        await survivor.limiter.enter(name, 2)
        await survivor.limiter.enter(name, 2)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()


async def test_a_request_through_the_usage_policy_costs_two_round_trips(
    factory: LimitsFactory,
) -> None:
    limits = await factory.open()
    client = limits.client
    policy = UsagePolicy(limits.limiter, limits.budgets)
    limited = KeyLimits(requests_per_minute=100, tokens_per_minute=100_000, monthly_budget_usd=5.0)
    principal = Principal(
        fresh(), "svc", limits=limited, max_concurrent=4,
        project_id=fresh("proj"), project_limits=limited,
    )  # fmt: skip
    req = request("what is a token bucket?", max_tokens=50)

    async def one(i: int) -> int:
        c = CallContext(request_id=f"req-{i}", principal=principal, transport="grpc")
        before = client.round_trips
        await policy.admit_call(c)
        reservation = await policy.admit(c, plan(Price(1000.0, 2000.0), req=req))
        used = client.round_trips - before
        policy.finish(RequestRecord(c, req, stream=False, reservation=reservation))
        before = client.round_trips
        await client.flush()  # its reconciles, settles and leave (the background's batch)
        assert client.round_trips - before <= 1
        return used

    await one(0)  # first use: scripts and the month's seed
    used = [await one(i) for i in range(1, 21)]
    assert used == [2] * 20
    print(f"usage policy over Redis: {used[0]} round trips per request (key + project: RPM, "
          f"TPM, budget, slot) + 1 per batch of settles")  # fmt: skip
