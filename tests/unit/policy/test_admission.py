"""UsagePolicy on its own and wired into the Gateway (demo provider, real ledger file): what is
reserved, how it reconciles for chats, streams, failures and cancels, and the ledger rows."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from switchboard.v1 import chat_pb2

from server.config import Config, DeploymentConfig, PriceConfig
from server.core.context import CallContext, KeyLimits, Principal
from server.core.errors import BudgetExceededError, RateLimitedError, UpstreamNotFoundError
from server.core.records import RequestRecord
from server.core.service import ADMIN, Gateway
from server.policy.admission import NOTHING, UsagePolicy
from server.providers.demo.provider import DemoProvider
from server.resilience.executor import Executor
from server.routing.catalog import Catalog
from server.routing.cost import (
    Price,
    estimate_cost,
    estimate_input_tokens,
    input_token_bound,
)
from server.routing.price_table import DEFAULT_MAX_OUTPUT_TOKENS
from server.routing.router import Router
from server.store.embedded.backend import open_embedded
from server.store.embedded.budgets import MemoryBudgets
from server.store.embedded.ledger import SqliteLedger, UsageRow
from server.store.embedded.limits import MemoryRateLimiter as RateLimiter
from tests.unit.policy.support import Clock, Keys, ctx, plan, request

NANO = 1_000_000_000
# $0.01 per input token, $0.02 per output token: the demo's small counts cost whole cents.
PRICE = PriceConfig(input=10_000.0, output=20_000.0)


def policy(
    clock: Clock, ledger: SqliteLedger | None = None, spent: dict[str, int] | None = None
) -> UsagePolicy:
    return UsagePolicy(RateLimiter(clock=clock), MemoryBudgets(spent), ledger)


def record(c: CallContext, req: chat_pb2.ChatRequest, reservation: object) -> RequestRecord:
    return RequestRecord(c, req, stream=False, reservation=reservation)


async def test_master_key_and_unlimited_keys_reserve_nothing() -> None:
    p = policy(Clock())
    big = request("x " * 5000, max_tokens=100_000)
    master = ctx(admin=True, rpm=1, tpm=1, budget=0.001)
    for _ in range(3):
        assert await p.admit(master, plan(Price(1000.0, 1000.0), req=big)) is NOTHING
    assert await p.admit(ctx(), plan(req=big)) is NOTHING
    assert p.limiter.available("key_a", "rpm") is None
    # An RPM-only key is counted (when the call is admitted) but reserves no tokens.
    rpm_only = ctx("rpm_only", rpm=2)
    await p.admit_call(rpm_only)
    assert await p.admit(rpm_only, plan(req=big)) is NOTHING
    assert p.limiter.available("rpm_only", "rpm") == pytest.approx(1.0)


async def test_tokens_reserved_are_the_input_bound_plus_max_tokens_or_the_models_limit() -> None:
    p = policy(Clock())
    req = request("a fairly ordinary question about sqlite", max_tokens=100)
    r = await p.admit(ctx(tpm=10_000), plan(req=req))
    assert r.tokens == input_token_bound(req) + 100
    assert p.limiter.available("key_a") == pytest.approx(10_000 - r.tokens)
    no_max = request("a fairly ordinary question about sqlite")
    r2 = await p.admit(ctx("key_b", tpm=100_000), plan(req=no_max))
    # Without max_tokens the answer may be as long as the deployment allows (these plans'
    # deployments carry the default limit; the catalog fills in each model's own).
    assert r2.tokens == input_token_bound(no_max) + DEFAULT_MAX_OUTPUT_TOKENS


async def test_the_budget_reserves_the_most_expensive_candidates_estimate() -> None:
    p = policy(Clock())
    req = request("what does this cost", max_tokens=50)
    cheap, dear = Price(1.0, 2.0), Price(3.0, 15.0)
    r = await p.admit(ctx(budget=5.0), plan(cheap, None, dear, req=req))
    expected = estimate_cost(dear, input_token_bound(req), 50)
    assert expected is not None
    assert r.cost == math.ceil(expected * NANO)
    assert p.budgets.reserved("key_a") == r.cost
    # Settling replaces the reservation with the actual cost.
    p.finish(record(ctx(budget=5.0), req, r))
    assert p.budgets.reserved("key_a") == 0


async def test_a_tpm_refusal_gives_back_the_budget_reservation() -> None:
    p = policy(Clock())
    c = ctx(tpm=100, budget=5.0)
    priced = plan(Price(3.0, 15.0), req=request(max_tokens=60))
    first = await p.admit(c, priced)
    with pytest.raises(RateLimitedError):
        await p.admit(c, priced)
    assert p.budgets.reserved("key_a") == first.cost


async def test_the_request_rate_and_a_spent_budget_are_checked_before_anything_else() -> None:
    p = policy(Clock())
    await p.admit_call(ctx(rpm=1))
    with pytest.raises(RateLimitedError):
        await p.admit_call(ctx(rpm=1))
    spent = ctx("broke", budget=1.0)
    p.budgets.settle("broke", 0, 10**9)
    with pytest.raises(BudgetExceededError):
        await p.admit_call(spent)
    assert p.budgets.reserved("broke") == 0


async def test_checks_asked_together_give_back_what_they_took_when_one_refuses() -> None:
    """admit_call asks the slot, the key's RPM and the project's RPM at once: when the project's
    RPM refuses, the key's count and the slot come back (for reservations asked together, see
    test_a_tpm_refusal_gives_back_the_budget_reservation)."""
    p = policy(Clock())
    principal = Principal(
        "k",
        "k",
        limits=KeyLimits(requests_per_minute=5),
        project_id="p1",
        project_limits=KeyLimits(requests_per_minute=1),
        max_concurrent=1,
    )
    first = CallContext(request_id="r1", principal=principal, transport="grpc")
    await p.admit_call(first)
    p.leave_call(first)
    second = CallContext(request_id="r2", principal=principal, transport="grpc")
    with pytest.raises(RateLimitedError) as refused:
        await p.admit_call(second)
    assert "project" in refused.value.message.lower()
    assert second.slots == ()
    assert p.limiter.in_flight("k") == 0
    assert p.limiter.available("k", "rpm") == pytest.approx(4.0)


async def test_a_spent_budget_is_loaded_from_the_ledger_at_start(tmp_path: Path) -> None:
    month_start, _ = MemoryBudgets().month
    SqliteLedger(tmp_path)  # creates the file and its schema
    conn = sqlite3.connect(tmp_path / "usage.db", isolation_level=None)
    fields = UsageRow._fields
    cols, marks = ", ".join(fields), ", ".join("?" * len(fields))
    values: list[object] = [month_start + 5, "r", "key_a", "grpc", "m", "m", "p", "m", "p/m"]
    values += [0, "success", 200, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 2 * NANO, 1.0, "row-1", None]
    conn.execute(f"INSERT INTO usage ({cols}) VALUES ({marks})", values)
    conn.close()
    stores = open_embedded(tmp_path)
    p = UsagePolicy(stores.limiter, stores.budgets, stores.ledger)
    assert await p.budgets.spent("key_a") == 2 * NANO
    with pytest.raises(BudgetExceededError) as info:
        await p.admit(ctx(budget=2.0), plan())
    assert info.value.retry_after is not None and info.value.retry_after > 0
    await stores.aclose()


# --- through the Gateway ------------------------------------------------------------------


@dataclass
class Rig:
    gateway: Gateway
    policy: UsagePolicy
    ledger: SqliteLedger
    clock: Clock
    data_dir: Path

    def rows(self) -> list[sqlite3.Row]:
        conn = sqlite3.connect(self.data_dir / "usage.db")
        conn.row_factory = sqlite3.Row
        try:
            return conn.execute("SELECT * FROM usage ORDER BY id").fetchall()
        finally:
            conn.close()


@dataclass
class _Entry:
    provider: DemoProvider
    api_keys: tuple[str, ...] = ("",)


@pytest_asyncio.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    config = Config(deployments=[DeploymentConfig(provider="demo", model="echo", price=PRICE)])
    entries: dict[str, Any] = {"demo": _Entry(DemoProvider(word_delay=0.01))}
    catalog = Catalog(entries, config, prices={})
    clock = Clock()
    ledger = SqliteLedger(tmp_path, flush_interval=30.0)
    pol = UsagePolicy(RateLimiter(clock=clock), MemoryBudgets(), ledger)
    gw = Gateway(
        Router(catalog), Executor(config), Keys({}), "master", 30.0, admission=pol, sinks=[pol]
    )
    yield Rig(gw, pol, ledger, clock, tmp_path)
    await ledger.aclose()


def assert_row_matches(
    row: sqlite3.Row, usage: object, cost: object, *, key: str, stream: bool
) -> None:
    assert row["key_id"] == key and row["stream"] == int(stream)
    assert (row["provider"], row["upstream_model"], row["deployment"]) == (
        "demo",
        "echo",
        "demo/echo",
    )
    for column, field in (
        ("input_tokens", "input_tokens"),
        ("output_tokens", "output_tokens"),
        ("cached_input_tokens", "cached_input_tokens"),
        ("cache_write_tokens", "cache_write_input_tokens"),
        ("reasoning_tokens", "reasoning_tokens"),
    ):
        assert row[column] == getattr(usage, field), column
    parts = ("input", "output", "cached_input", "cache_write")
    for part in parts:
        assert row[f"{part}_nanousd"] == round(getattr(cost, f"{part}_usd") * NANO), part
    assert row["total_nanousd"] == sum(row[f"{p}_nanousd"] for p in parts)
    assert abs(row["total_nanousd"] - round(cost.total_usd * NANO)) <= 2  # type: ignore[attr-defined]


async def test_chat_reconciles_tokens_and_spend_and_writes_an_exact_row(rig: Rig) -> None:
    c = ctx(tpm=1000, budget=10.0)
    req = request("one two three four five", max_tokens=50)
    response = await rig.gateway.chat(req, c)
    assert response.usage.input_tokens == 5 and response.cost.total_usd > 0
    used = response.usage.input_tokens + response.usage.output_tokens
    assert rig.policy.limiter.available("key_a") == pytest.approx(1000 - used)
    spent = await rig.policy.budgets.spent("key_a")
    assert spent == round(response.cost.input_usd * NANO) + round(response.cost.output_usd * NANO)
    assert rig.policy.budgets.reserved("key_a") == 0
    await rig.ledger.flush()
    (row,) = rig.rows()
    assert_row_matches(row, response.usage, response.cost, key="key_a", stream=False)
    assert (row["outcome"], row["status"], row["attempts"]) == ("success", 200, 1)
    assert row["request_id"] == c.request_id and row["model"] == "demo/echo"


async def test_refusals_and_failures_are_recorded_and_release_their_reservations(
    rig: Rig,
) -> None:
    def c() -> CallContext:
        return ctx(rpm=1, tpm=1000, budget=10.0)

    with pytest.raises(UpstreamNotFoundError):
        await rig.gateway.chat(request("hi", max_tokens=20, model="demo/nope"), c())
    # The failed call used nothing: its tokens and dollars are back.
    assert rig.policy.limiter.available("key_a") == pytest.approx(1000)
    assert rig.policy.budgets.reserved("key_a") == 0
    with pytest.raises(RateLimitedError) as info:
        await rig.gateway.chat(request("hi", max_tokens=20), c())
    assert info.value.retry_after == pytest.approx(60.0)
    await rig.ledger.flush()
    rows = rig.rows()
    assert [(r["outcome"], r["status"]) for r in rows] == [
        ("UPSTREAM_NOT_FOUND", 404),
        ("RATE_LIMITED", 429),
    ]
    assert all(r["total_nanousd"] == 0 and r["input_tokens"] == 0 for r in rows)


async def test_a_stream_is_billed_from_its_end_frame(rig: Rig) -> None:
    c = ctx(tpm=1000, budget=10.0)
    frames = [f async for f in rig.gateway.stream_chat(request("a b c", max_tokens=40), c)]
    end = frames[-1].end
    assert end.usage.output_tokens == 4  # "Echo: a b c"
    assert rig.policy.limiter.available("key_a") == pytest.approx(1000 - 3 - 4)
    assert await rig.policy.budgets.spent("key_a") == 3 * NANO // 100 + 4 * 2 * NANO // 100
    await rig.ledger.flush()
    (row,) = rig.rows()
    assert_row_matches(row, end.usage, end.cost, key="key_a", stream=True)


async def test_a_cancelled_stream_is_billed_for_what_it_delivered(rig: Rig) -> None:
    c = ctx(tpm=1000, budget=10.0)
    req = request("one two three four five six seven eight", max_tokens=100)
    stream = rig.gateway.stream_chat(req, c)
    assert isinstance(stream, AsyncGenerator)
    assert (await anext(stream)).WhichOneof("frame") == "start"
    first = await anext(stream)
    assert first.WhichOneof("frame") == "text"
    reserved = input_token_bound(req) + 100
    assert rig.policy.limiter.available("key_a") == pytest.approx(1000 - reserved)
    assert rig.policy.budgets.reserved("key_a") > 0
    # The client goes away mid-stream: the demo reported no usage before its end, so the
    # prompt is billed at its estimate and the output at one token per 4 delivered characters.
    await stream.aclose()
    billed_in = estimate_input_tokens(req)
    billed_out = -(-len(first.text.text) // 4)
    assert rig.policy.limiter.available("key_a") == pytest.approx(1000 - billed_in - billed_out)
    assert rig.policy.budgets.reserved("key_a") == 0
    assert await rig.policy.budgets.spent("key_a") == billed_in * NANO // 100 + billed_out * 2 * (
        NANO // 100
    )
    await rig.ledger.flush()
    (row,) = rig.rows()
    assert (row["outcome"], row["status"], row["stream"]) == ("cancelled", 499, 1)
    assert (row["input_tokens"], row["output_tokens"]) == (billed_in, billed_out)
    assert row["total_nanousd"] > 0


async def test_the_master_key_is_never_limited_but_always_recorded(rig: Rig) -> None:
    master = ctx("master", admin=True)
    assert master.principal.is_admin and ADMIN.is_admin
    for _ in range(5):
        await rig.gateway.chat(request("hi", max_tokens=100_000), master)
    assert rig.policy.limiter.available("master") is None
    await rig.ledger.flush()
    assert [r["key_id"] for r in rig.rows()] == ["master"] * 5
    assert all(r["total_nanousd"] > 0 for r in rig.rows())


def test_settle_never_raises() -> None:
    p = policy(Clock())
    # A reservation for a key the limiter never saw, and an execution with nothing in it.
    p.finish(RequestRecord(ctx(tpm=5), chat_pb2.ChatRequest(), stream=True, reservation=NOTHING))
