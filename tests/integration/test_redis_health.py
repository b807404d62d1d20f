"""Circuit and cooldown replication between independent ``RedisHealth`` replicas against the
machine's real Redis: how fast a trip reaches another replica, late starters, outages."""

from __future__ import annotations

import asyncio
import time

import pytest

from server.config import CircuitConfig
from server.core.state import CircuitState
from tests.fakes.tcp_proxy import TcpProxy
from tests.support.redis import LimitsFactory, eventually, fresh, via
from tests.support.redis import factory as factory  # the fixture

# Against the shared Redis (`-m "not redis"` leaves these out).
pytestmark = pytest.mark.redis

CIRCUIT = CircuitConfig(consecutive_failures=3, cooldown_seconds=0.3, window_seconds=30.0)


async def test_a_trip_on_one_replica_is_refused_on_another_within_500_ms(
    factory: LimitsFactory,
) -> None:
    a = await factory.open(circuit=CIRCUIT)
    b = await factory.open(circuit=CIRCUIT)
    figures = []
    for _ in range(5):
        name = fresh("dep")
        assert b.health.acquire(name)
        b.health.release(name)
        started = time.monotonic()
        a.health.record_failure(name, trip=True)
        figures.append(await eventually(lambda n=name: not b.health.acquire(n), within=0.5))
        assert b.health.snapshot(name).state is CircuitState.OPEN
        assert 0 < b.health.retry_in(name) <= CIRCUIT.cooldown_seconds
        assert time.monotonic() - started <= 0.5
    print(f"trip seen by another replica after {max(figures) * 1000:.2f} ms at worst "
          f"(of 5; median {sorted(figures)[2] * 1000:.2f} ms)")  # fmt: skip


async def test_a_closed_circuit_and_a_cooled_key_replicate_too(factory: LimitsFactory) -> None:
    a = await factory.open(circuit=CIRCUIT)
    b = await factory.open(circuit=CIRCUIT)
    name = fresh("dep")
    for _ in range(CIRCUIT.consecutive_failures):
        a.health.record_failure(name)
    await eventually(lambda: b.health.snapshot(name).state is CircuitState.OPEN)
    await asyncio.sleep(CIRCUIT.cooldown_seconds + 0.02)
    assert a.health.acquire(name)  # A's probe
    a.health.record_success(name, 0.01)
    await eventually(lambda: b.health.snapshot(name).state is CircuitState.CLOSED)
    assert b.health.acquire(name)

    key = fresh("dep") + "#1"
    b.health.cool(key, 0.3)
    await eventually(lambda: not a.health.acquire(key))
    assert a.health.snapshot(key).state is CircuitState.CLOSED  # the circuit is untouched
    assert 0 < a.health.retry_in(key) <= 0.3


async def test_a_replica_that_starts_later_sees_open_circuits(factory: LimitsFactory) -> None:
    a = await factory.open(circuit=CIRCUIT)
    name = fresh("dep")
    a.health.record_failure(name, trip=True)
    await a.flush()
    late = await factory.open(circuit=CIRCUIT)  # returns once subscribed and synced
    assert not late.health.acquire(name)
    assert late.health.snapshot(name).state is CircuitState.OPEN


async def test_without_redis_health_works_locally_and_resyncs_on_return(
    factory: LimitsFactory,
) -> None:
    async with TcpProxy("127.0.0.1", 6379) as proxy:
        url = via(factory.url, proxy.port)
        # A cooldown that outlasts the reconnection backoff, so B can still see it open.
        slow = CircuitConfig(consecutive_failures=3, cooldown_seconds=5.0, window_seconds=30.0)
        a = await factory.open(url=url, circuit=slow)
        b = await factory.open(url=url, circuit=slow)
        name = fresh("dep")
        proxy.cut()
        a.health.record_failure(name, trip=True)
        assert not a.health.acquire(name)  # decided locally
        await asyncio.sleep(0.1)
        assert b.health.acquire(name)  # nothing could reach B
        b.health.release(name)
        assert a.client.queued == 1
        await eventually(lambda: bool(b.problems()))
        proxy.restore()
        # A's queued transition is sent and B, resubscribed, applies it: no restart.
        await eventually(lambda: not b.health.acquire(name), within=3.0)
        await eventually(lambda: a.problems() == [] and b.problems() == [])


async def test_the_first_acquire_starts_replication_when_nobody_did(
    factory: LimitsFactory,
) -> None:
    a = await factory.open(circuit=CIRCUIT)
    b = await factory.open(circuit=CIRCUIT, start=False)
    name = fresh("dep")
    assert b.health.acquire(name)  # starts B's subscriber
    await asyncio.wait_for(b.health.synced.wait(), 2.0)
    a.health.record_failure(name, trip=True)
    await eventually(lambda: not b.health.acquire(name))
