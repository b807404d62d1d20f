"""The behaviour every state backend must have (``server.core.state``'s protocols).

Each test runs once per backend (``conftest.BACKENDS``). Key ids and secrets are fresh per
test, so backends that share a database between tests (PostgreSQL, Redis) stay isolated.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from switchboard.v1 import chat_pb2, types_pb2

from server.core.context import KeyLimits
from server.core.errors import (
    BudgetExceededError,
    InvalidRequestError,
    NotFoundError,
    RateLimitedError,
)
from server.core.money import month_bounds, month_of
from server.core.state import CircuitState, UsageRow
from tests.conformance.stores.conftest import CIRCUIT, Backend


def fresh(prefix: str = "k") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


# --- KeyStore ------------------------------------------------------------------------------


async def test_a_created_key_is_found_by_its_secret_with_its_limits(backend: Backend) -> None:
    keys = backend.stores.keys
    limits = KeyLimits(requests_per_minute=10, tokens_per_minute=500, monthly_budget_usd=2.5)
    record, secret = await keys.create("svc", limits)
    assert secret.startswith("sb-") and record.prefix and secret.startswith(record.prefix)
    assert secret not in repr(keys)
    principal = await keys.lookup(secret)
    assert principal is not None and principal.key_id == record.id and principal.name == "svc"
    assert principal.limits == limits and not principal.is_admin
    assert await keys.lookup(secret + "x") is None
    assert await keys.lookup("") is None
    assert (await keys.get(record.id)) == record
    assert await keys.get("key_missing") is None


async def test_list_and_revoke(backend: Backend) -> None:
    keys = backend.stores.keys
    first, s1 = await keys.create("a")
    second, _ = await keys.create("b")
    ids = [k.id for k in await keys.list()]
    assert ids.index(first.id) < ids.index(second.id)
    revoked = await keys.revoke(first.id)
    assert revoked.revoked and revoked.HasField("revoke_time")
    assert (await keys.revoke(first.id)).revoke_time == revoked.revoke_time  # idempotent
    assert first.id not in [k.id for k in await keys.list()]
    assert first.id in [k.id for k in await keys.list(include_revoked=True)]
    assert await keys.lookup(s1) is None
    with pytest.raises(NotFoundError):
        await keys.revoke("key_" + uuid.uuid4().hex[:16])


async def test_invalid_keys_are_refused(backend: Backend) -> None:
    keys = backend.stores.keys
    with pytest.raises(InvalidRequestError) as info:
        await keys.create("   ")
    assert info.value.param == "name"
    with pytest.raises(InvalidRequestError) as info:
        await keys.create("x", KeyLimits(requests_per_minute=0, tokens_per_minute=-5))
    assert [v.field for v in info.value.field_violations] == [
        "limits.requests_per_minute",
        "limits.tokens_per_minute",
    ]


async def test_another_replica_sees_keys_created_and_revoked(backend: Backend) -> None:
    other = await backend.replica()
    record, secret = await backend.stores.keys.create("shared")
    assert (await other.keys.lookup(secret)) is not None
    await other.keys.revoke(record.id)
    assert await backend.stores.keys.lookup(secret) is None


# --- RateLimiter -----------------------------------------------------------------------------


async def test_rpm_admits_the_limit_then_refuses_with_when_to_retry(backend: Backend) -> None:
    limiter = backend.stores.limiter
    key = fresh()
    for _ in range(3):
        assert await limiter.acquire(key, 3, None, 0) == 0
    with pytest.raises(RateLimitedError) as info:
        await limiter.acquire(key, 3, None, 0)
    err = info.value
    assert err.retry_after is not None and 0 < err.retry_after <= 20.0 + 0.5
    assert err.quota_violations and key in err.quota_violations[0].subject
    # Another key is not affected.
    assert await limiter.acquire(fresh(), 3, None, 0) == 0


async def test_tpm_reserves_then_reconciles_to_actual_usage(backend: Backend) -> None:
    limiter = backend.stores.limiter
    key = fresh()
    assert await limiter.acquire(key, None, 100, 60) == 60
    with pytest.raises(RateLimitedError):
        await limiter.acquire(key, None, 100, 50)
    limiter.reconcile(key, 60, 10)
    await asyncio.sleep(0.05)  # networked backends apply reconciliations in the background
    assert await limiter.acquire(key, None, 100, 50) == 50


async def test_a_refused_request_takes_nothing_from_either_limit(backend: Backend) -> None:
    limiter = backend.stores.limiter
    key = fresh()
    await limiter.acquire(key, 2, 100, 90)
    with pytest.raises(RateLimitedError):
        await limiter.acquire(key, 2, 100, 50)  # TPM refuses: the RPM count stays at 1
    assert await limiter.acquire(key, 2, 100, 5) == 5


async def test_concurrent_requests_get_exactly_the_limit(backend: Backend) -> None:
    limiter = backend.stores.limiter
    key = fresh()

    async def one() -> bool:
        try:
            await limiter.acquire(key, 30, None, 0)
        except RateLimitedError:
            return False
        return True

    results = await asyncio.gather(*(one() for _ in range(120)))
    assert sum(results) == 30


# --- BudgetStore -----------------------------------------------------------------------------


async def test_reservations_count_against_the_budget_until_settled(backend: Backend) -> None:
    budgets = backend.stores.budgets
    key = fresh()
    assert await budgets.reserve(key, 1000, 300) == 300
    assert await budgets.reserve(key, 1000, 300) == 300
    with pytest.raises(BudgetExceededError) as info:
        await budgets.reserve(key, 1000, 500)
    assert info.value.retry_after is None  # waiting is not the remedy: a smaller request is
    budgets.settle(key, 300, 120)
    await asyncio.sleep(0.05)
    assert await budgets.spent(key) == 120
    assert await budgets.reserve(key, 1000, 500) == 500


async def test_a_spent_budget_refuses_until_the_month_ends(backend: Backend) -> None:
    budgets = backend.stores.budgets
    key = fresh()
    reserved = await budgets.reserve(key, 1000, 400)
    budgets.settle(key, reserved, 1000)
    await asyncio.sleep(0.05)
    with pytest.raises(BudgetExceededError) as info:
        await budgets.reserve(key, 1000, 0)
    _, end = month_bounds(*month_of(time.time()))
    assert info.value.retry_after is not None
    assert info.value.retry_after == pytest.approx(end - time.time(), abs=5.0)


async def test_concurrent_reservations_never_pass_the_budget(backend: Backend) -> None:
    budgets = backend.stores.budgets
    key = fresh()

    async def one() -> bool:
        try:
            await budgets.reserve(key, 100, 10)
        except BudgetExceededError:
            return False
        return True

    results = await asyncio.gather(*(one() for _ in range(60)))
    assert sum(results) == 10


# --- the usage ledger ---------------------------------------------------------------------------


def row(key_id: str, *, nanos: int, when: float, outcome: str = "success") -> UsageRow:
    return UsageRow(
        when, uuid.uuid4().hex, key_id, "http", "m", "m", "p", "m", "p/m", False, outcome, 200, 1,
        10, 5, 2, 0, 0, nanos // 2, nanos - nanos // 2, 0, 0, nanos, 1.5,
    )  # fmt: skip


async def test_rows_are_summed_exactly_per_key_and_month(backend: Backend) -> None:
    ledger = backend.stores.ledger
    a, b = fresh("key"), fresh("key")
    year, month = month_of(time.time())
    start, end = month_bounds(year, month)
    for r in (
        row(a, nanos=3034, when=start + 1),
        row(a, nanos=3034, when=start + 2, outcome="UPSTREAM_TIMEOUT"),
        row(b, nanos=7, when=start + 3),
        row(a, nanos=99, when=start - 10),  # last month
    ):
        ledger.record(r)
    await ledger.flush()
    spend = await ledger.month_spend(start, end)
    assert spend[a] == 2 * 3034 and spend[b] == 7
    (totals,) = await ledger.month_totals(year, month, key_id=a)
    assert (totals.requests, totals.errors, totals.total_nanousd) == (2, 1, 6068)
    assert (totals.input_tokens, totals.output_tokens, totals.cached_input_tokens) == (20, 10, 4)


async def test_rows_come_back_newest_first_within_the_window(backend: Backend) -> None:
    ledger = backend.stores.ledger
    key = fresh("key")
    base = time.time() - 1000
    written = [row(key, nanos=n, when=base + n) for n in (1, 2, 3, 4)]
    for r in (*written, row(key, nanos=9, when=base + 50)):
        ledger.record(r)
    await ledger.flush()
    got = [r for r in await ledger.rows(base, base + 10, limit=1000) if r.key_id == key]
    assert got == written[::-1]
    newest = await ledger.rows(base, base + 10, limit=2)
    assert [r.total_nanousd for r in newest if r.key_id == key] == [4, 3]
    assert await ledger.rows(base + 100, base + 200, limit=10) == []


async def test_a_replica_reads_what_another_wrote_after_it_closed(backend: Backend) -> None:
    key = fresh("key")
    year, month = month_of(time.time())
    start, _ = month_bounds(year, month)
    writer = await backend.replica()
    writer.ledger.record(row(key, nanos=11, when=start + 1))
    await writer.ledger.aclose()
    (totals,) = await backend.stores.ledger.month_totals(year, month, key_id=key)
    assert totals.total_nanousd == 11


# --- HealthStore -------------------------------------------------------------------------------


async def test_a_circuit_opens_then_lets_one_probe_through(backend: Backend) -> None:
    health = backend.stores.health
    name = fresh("dep")
    assert health.acquire(name) and health.retry_in(name) == 0.0
    for _ in range(CIRCUIT.consecutive_failures):
        health.record_failure(name)
    assert health.snapshot(name).state is CircuitState.OPEN
    assert not health.acquire(name) and health.retry_in(name) > 0.0
    await asyncio.sleep(CIRCUIT.cooldown_seconds + 0.02)
    assert health.acquire(name)  # the one probe
    assert not health.acquire(name)
    health.record_success(name, 0.01, 0.01)
    assert health.snapshot(name).state is CircuitState.CLOSED and health.acquire(name)


async def test_a_cooled_key_sits_out_without_touching_its_circuit(backend: Backend) -> None:
    health = backend.stores.health
    name = fresh("dep") + "#0"
    health.cool(name, 0.15)
    assert not health.acquire(name) and 0.0 < health.retry_in(name) <= 0.15
    assert health.snapshot(name).state is CircuitState.CLOSED
    await asyncio.sleep(0.17)
    assert health.acquire(name)


async def test_trip_opens_at_once_and_latency_is_averaged(backend: Backend) -> None:
    health = backend.stores.health
    name = fresh("dep")
    health.record_success(name, 0.5, 0.1)
    snap = health.snapshot(name)
    assert snap.latency == pytest.approx(0.5) and snap.ttft == pytest.approx(0.1)
    health.record_failure(name, trip=True)
    assert health.snapshot(name).state is CircuitState.OPEN
    assert (name, CircuitState.OPEN) in list(health.states())


# --- ResponseStore ---------------------------------------------------------------------------


def _stored(response_id: str, text: str = "hi") -> chat_pb2.StoredResponse:
    stored = chat_pb2.StoredResponse(id=response_id, created=int(time.time()))
    stored.request.model = "demo/echo"
    stored.request.instructions = "be brief"
    stored.request.metadata["k"] = "v"
    stored.request.messages.add(role=types_pb2.ROLE_USER).content.add(text=text)
    stored.response.message.role = types_pb2.ROLE_ASSISTANT
    stored.response.message.content.add(text=f"Echo: {text}")
    stored.response.usage.input_tokens = 3
    return stored


async def test_a_stored_response_reads_back_for_its_key_only(backend: Backend) -> None:
    responses = backend.stores.responses
    assert responses is not None
    owner, other = fresh("key"), fresh("key")
    stored = _stored(fresh("resp"))
    await responses.put(owner, stored)
    assert await responses.get(owner, stored.id) == stored
    # Another key sees nothing, exactly like an unknown id.
    assert await responses.get(other, stored.id) is None
    assert await responses.get(owner, fresh("resp")) is None
    assert await responses.delete(other, stored.id) is False
    assert await responses.get(owner, stored.id) == stored


async def test_a_deleted_response_is_gone_and_ids_are_never_reused(backend: Backend) -> None:
    responses = backend.stores.responses
    assert responses is not None
    key = fresh("key")
    stored = _stored(fresh("resp"), "x " * 10_000)
    await responses.put(key, stored)
    with pytest.raises(Exception):  # noqa: B017 - the backend's own integrity error
        await responses.put(fresh("key"), _stored(stored.id, "hijack"))
    assert (await responses.get(key, stored.id)) == stored
    assert await responses.delete(key, stored.id) is True
    assert await responses.get(key, stored.id) is None
    assert await responses.delete(key, stored.id) is False


async def test_another_replica_sees_stored_responses(backend: Backend) -> None:
    other = await backend.replica()
    assert backend.stores.responses is not None and other.responses is not None
    key = fresh("key")
    stored = _stored(fresh("resp"))
    await backend.stores.responses.put(key, stored)
    assert await other.responses.get(key, stored.id) == stored
    assert await other.responses.delete(key, stored.id) is True
    assert await backend.stores.responses.get(key, stored.id) is None
