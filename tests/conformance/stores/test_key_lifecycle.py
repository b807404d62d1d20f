"""Conformance for issue 9's seams: key specs, updates, rotation grace, expiry, projects,
concurrency slots, refunds and usage breakdowns. Every backend must pass these.

Expiry and grace are wall-clock deadlines, so a few tests wait a fraction of a second for one
to pass; they assert what the store answers, never how long anything took.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from server.core.context import KeyLimits, project_name
from server.core.errors import (
    FailedPreconditionError,
    InvalidRequestError,
    NotFoundError,
    RateLimitedError,
)
from server.core.money import month_bounds, month_of
from server.core.state import KeySpec, KeyUpdate, UsageRow
from tests.conformance.stores.conftest import Backend

# Long enough for a lookup on a loaded machine to land inside it, short enough to wait out.
GRACE = 0.6


def fresh(prefix: str = "k") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


# --- keys ----------------------------------------------------------------------------------


async def test_a_key_created_from_a_spec_carries_all_of_it(backend: Backend) -> None:
    keys = backend.stores.keys
    project = await keys.create_project("team", KeyLimits(requests_per_minute=50))
    expires = time.time() + 3600
    spec = KeySpec(
        name="svc",
        limits=KeyLimits(requests_per_minute=10),
        env="prod",
        allowed_models=("gpt-*", "demo/echo"),
        max_concurrent=4,
        expires_at=expires,
        project_id=project.id,
    )
    record, secret = await keys.create(spec)
    assert secret.startswith("sb-prod-") and secret.startswith(record.prefix)
    assert len(record.prefix) == len("sb-prod-") + 8
    assert record.env == "prod" and record.project_id == project.id
    assert list(record.allowed_models) == ["gpt-*", "demo/echo"]
    assert record.max_concurrent == 4 and not record.expired
    assert record.expire_time.ToSeconds() == int(expires)
    principal = await keys.lookup(secret)
    assert principal is not None and principal.key_id == record.id
    assert principal.env == "prod" and principal.project_id == project.id
    assert principal.project_limits == KeyLimits(requests_per_minute=50)
    assert principal.allowed_models == ("gpt-*", "demo/echo")
    assert principal.max_concurrent == 4
    assert principal.expires_at == pytest.approx(expires)
    # A key without env or project keeps the old shape.
    plain, plain_secret = await keys.create("plain")
    assert plain.env == "" and plain.project_id == "" and not plain.HasField("max_concurrent")
    assert not plain_secret.startswith("sb-prod-")
    found = await keys.lookup(plain_secret)
    assert found is not None and found.project_id is None and found.project_limits is None


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (KeySpec("x", env="Prod"), "env"),
        (KeySpec("x", env="a-b"), "env"),
        (KeySpec("x", max_concurrent=0), "max_concurrent"),
        (KeySpec("x", expires_at=1.0), "expire_time"),
        (KeySpec("x", allowed_models=("",)), "allowed_models"),
    ],
)
async def test_an_invalid_spec_is_refused_naming_its_field(
    backend: Backend, spec: KeySpec, field: str
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        await backend.stores.keys.create(spec)
    assert info.value.param == field


async def test_a_key_in_an_unknown_project_is_refused(backend: Backend) -> None:
    with pytest.raises(NotFoundError) as info:
        await backend.stores.keys.create(KeySpec("x", project_id=fresh("proj")))
    assert info.value.param == "project_id"


async def test_update_changes_and_clears_fields_and_every_replica_sees_it(
    backend: Backend,
) -> None:
    keys = backend.stores.keys
    other = await backend.replica()
    project = await keys.create_project("p")
    record, secret = await keys.create(KeySpec("a", max_concurrent=2))
    assert (await other.keys.lookup(secret)) is not None  # cached there now
    updated = await keys.update(
        record.id,
        KeyUpdate(
            name="b",
            limits=KeyLimits(tokens_per_minute=99),
            allowed_models=("demo/*",),
            project_id=project.id,
        ),
    )
    assert updated.name == "b" and updated.limits.tokens_per_minute == 99
    assert list(updated.allowed_models) == ["demo/*"] and updated.project_id == project.id
    assert updated.max_concurrent == 2  # not named: unchanged
    seen = await other.keys.lookup(secret)
    assert seen is not None and seen.name == "b" and seen.project_id == project.id
    assert seen.limits == KeyLimits(tokens_per_minute=99)
    cleared = await keys.update(
        record.id,
        KeyUpdate(limits=KeyLimits(), allowed_models=(), max_concurrent=0, project_id=""),
    )
    assert not cleared.HasField("max_concurrent") and not cleared.allowed_models
    assert cleared.project_id == "" and not cleared.limits.HasField("tokens_per_minute")
    seen = await other.keys.lookup(secret)
    assert seen is not None and seen.max_concurrent is None and seen.project_id is None
    with pytest.raises(NotFoundError):
        await keys.update(fresh("key"), KeyUpdate(name="x"))
    with pytest.raises(NotFoundError):
        await keys.update(record.id, KeyUpdate(project_id=fresh("proj")))
    with pytest.raises(InvalidRequestError):
        await keys.update(record.id, KeyUpdate(limits=KeyLimits(requests_per_minute=-1)))


async def test_expiry_is_enforced_at_lookup_even_from_a_warm_cache(backend: Backend) -> None:
    keys = backend.stores.keys
    record, secret = await keys.create(KeySpec("short", expires_at=time.time() + GRACE))
    assert await keys.lookup(secret) is not None
    await asyncio.sleep(GRACE + 0.2)
    # Nothing was written since the lookup above: only the clock can refuse it.
    assert await keys.lookup(secret) is None
    got = await keys.get(record.id)
    assert got is not None and got.expired and not got.revoked
    # Expiring a key now (an expiry in the past) is allowed and reaches other replicas.
    other = await backend.replica()
    live, live_secret = await keys.create("live")
    assert await other.keys.lookup(live_secret) is not None
    await keys.update(live.id, KeyUpdate(expires_at=time.time() - 1))
    assert await other.keys.lookup(live_secret) is None
    # And giving it a future expiry again (or none: 0) brings it back.
    await keys.update(live.id, KeyUpdate(expires_at=0.0))
    assert await other.keys.lookup(live_secret) is not None


async def test_rotation_keeps_the_old_secret_for_the_grace_then_refuses_it(
    backend: Backend,
) -> None:
    keys = backend.stores.keys
    other = await backend.replica()
    record, old = await keys.create(KeySpec("rot", env="dev", limits=KeyLimits(5)))
    assert await other.keys.lookup(old) is not None
    rotated, new = await keys.rotate(record.id, GRACE)
    assert new != old and new.startswith("sb-dev-") and rotated.id == record.id
    assert rotated.prefix == new[: len(rotated.prefix)]
    assert rotated.HasField("rotate_time") and rotated.HasField("previous_secret_expire_time")
    for store in (keys, other.keys):
        by_new, by_old = await store.lookup(new), await store.lookup(old)
        assert by_new is not None and by_new.key_id == record.id
        assert by_new.limits == KeyLimits(5)
        assert by_old is not None and by_old.key_id == record.id
    await asyncio.sleep(GRACE + 0.2)
    assert await keys.lookup(old) is None and await other.keys.lookup(old) is None
    assert await keys.lookup(new) is not None


async def test_rotation_without_grace_and_revocation_stop_every_secret(backend: Backend) -> None:
    keys = backend.stores.keys
    record, first = await keys.create("r")
    _, second = await keys.rotate(record.id)
    assert await keys.lookup(first) is None and await keys.lookup(second) is not None
    _, third = await keys.rotate(record.id, 3600)
    assert await keys.lookup(second) is not None  # in its grace
    await keys.revoke(record.id)
    assert await keys.lookup(second) is None and await keys.lookup(third) is None
    with pytest.raises(FailedPreconditionError):
        await keys.rotate(record.id)
    with pytest.raises(NotFoundError):
        await keys.rotate(fresh("key"))
    with pytest.raises(InvalidRequestError):
        await keys.rotate(record.id, -1)


# --- projects --------------------------------------------------------------------------------


async def test_projects_are_created_listed_and_updated(backend: Backend) -> None:
    keys = backend.stores.keys
    first = await keys.create_project("alpha", KeyLimits(requests_per_minute=10))
    second = await keys.create_project("beta")
    assert first.id.startswith("proj_") and first.id != second.id
    assert first.limits.requests_per_minute == 10 and first.HasField("create_time")
    assert await keys.get_project(first.id) == first
    assert await keys.get_project(fresh("proj")) is None
    ids = [p.id for p in await keys.list_projects()]
    assert ids.index(first.id) < ids.index(second.id)
    renamed = await keys.update_project(first.id, name="gamma")
    assert renamed.name == "gamma" and renamed.limits.requests_per_minute == 10
    limited = await keys.update_project(first.id, limits=KeyLimits(monthly_budget_usd=3.0))
    assert limited.limits.monthly_budget_usd == 3.0
    assert not limited.limits.HasField("requests_per_minute")
    with pytest.raises(NotFoundError):
        await keys.update_project(fresh("proj"), name="x")
    with pytest.raises(InvalidRequestError):
        await keys.create_project("  ")
    with pytest.raises(InvalidRequestError):
        await keys.update_project(first.id, limits=KeyLimits(tokens_per_minute=0))


async def test_a_project_change_reaches_cached_principals(backend: Backend) -> None:
    keys = backend.stores.keys
    other = await backend.replica()
    project = await keys.create_project("shared", KeyLimits(requests_per_minute=5))
    _, secret = await keys.create(KeySpec("member", project_id=project.id))
    before = await other.keys.lookup(secret)
    assert before is not None and before.project_limits == KeyLimits(requests_per_minute=5)
    await keys.update_project(project.id, limits=KeyLimits(requests_per_minute=1))
    after = await other.keys.lookup(secret)
    assert after is not None and after.project_limits == KeyLimits(requests_per_minute=1)


# --- concurrency slots and refunds ------------------------------------------------------------


async def test_concurrency_slots_are_held_until_left(backend: Backend) -> None:
    limiter = backend.stores.limiter
    key = fresh()
    await limiter.enter(key, 2)
    await limiter.enter(key, 2)
    with pytest.raises(RateLimitedError) as info:
        await limiter.enter(key, 2)
    assert info.value.retry_after is not None and info.value.retry_after > 0
    assert info.value.quota_violations and key in info.value.quota_violations[0].subject
    await limiter.enter(fresh(), 2)  # another name is not affected
    limiter.leave(key)
    await asyncio.sleep(0.05)  # networked backends may apply it in the background
    await limiter.enter(key, 2)


async def test_concurrent_entries_get_exactly_the_limit(backend: Backend) -> None:
    limiter = backend.stores.limiter
    key = fresh()

    async def one() -> bool:
        try:
            await limiter.enter(key, 30)
        except RateLimitedError:
            return False
        return True

    results = await asyncio.gather(*(one() for _ in range(120)))
    assert sum(results) == 30


async def test_refund_gives_back_a_request_and_tokens(backend: Backend) -> None:
    limiter = backend.stores.limiter
    key = fresh()
    assert await limiter.acquire(key, 1, 100, 80) == 80
    with pytest.raises(RateLimitedError):
        await limiter.acquire(key, 1, None, 0)
    limiter.refund(key, 1, 80)
    await asyncio.sleep(0.05)
    assert await limiter.acquire(key, 1, 100, 90) == 90


async def test_project_names_are_limited_and_named_as_projects(backend: Backend) -> None:
    limiter = backend.stores.limiter
    name = project_name(fresh("proj"))
    await limiter.acquire(name, 1, None, 0)
    with pytest.raises(RateLimitedError) as info:
        await limiter.acquire(name, 1, None, 0)
    assert info.value.quota_violations[0].subject == name
    assert "project" in info.value.message


# --- usage breakdowns --------------------------------------------------------------------------


def usage_row(
    key_id: str,
    *,
    nanos: int,
    when: float,
    project: str | None = None,
    model: str = "m",
    provider: str = "p",
    outcome: str = "success",
) -> UsageRow:
    return UsageRow(
        when, uuid.uuid4().hex, key_id, "http", model, model, provider, "um", "d", False,
        outcome, 200, 1, 10, 5, 2, 0, 0, nanos // 2, nanos - nanos // 2, 0, 0, nanos, 1.5,
        uuid.uuid4().hex, project,
    )  # fmt: skip


async def test_usage_is_grouped_by_key_project_model_provider_and_day(backend: Backend) -> None:
    ledger = backend.stores.ledger
    a, b = fresh("key"), fresh("key")
    project = fresh("proj")
    model_x, model_y = fresh("model"), fresh("model")
    start, end = month_bounds(*month_of(time.time()))
    day = 86400.0
    for r in (
        usage_row(a, nanos=100, when=start + 10, project=project, model=model_x),
        usage_row(b, nanos=300, when=start + 20, project=project, model=model_y, provider="q"),
        usage_row(b, nanos=5, when=start + day + 1, model=model_y, outcome="RATE_LIMITED"),
        usage_row(a, nanos=1000, when=start - 1, project=project),  # the month before
    ):
        ledger.record(r)
    await ledger.flush()
    spend = await ledger.month_spend(start, end)
    assert spend[a] == 100 and spend[b] == 305 and spend[project_name(project)] == 400

    by_key = await ledger.usage_by("key", start, end, project_id=project)
    assert [(t.group, t.requests, t.total_nanousd) for t in by_key] == [(b, 1, 300), (a, 1, 100)]
    (by_project,) = await ledger.usage_by("project", start, end, key_id=a)
    assert (by_project.group, by_project.total_nanousd) == (project, 100)
    projects = {t.group: t for t in await ledger.usage_by("project", start, end, key_id=b)}
    assert projects[project].total_nanousd == 300 and projects[""].total_nanousd == 5
    models = {t.group: t for t in await ledger.usage_by("model", start, end, key_id=b)}
    assert models[model_y].requests == 2 and models[model_y].errors == 1
    assert models[model_y].total_nanousd == 305
    providers = {
        t.group: t.total_nanousd for t in await ledger.usage_by("provider", start, end, key_id=b)
    }
    assert providers == {"q": 300, "p": 5}
    days = await ledger.usage_by("day", start, end, key_id=b)
    assert [t.group for t in days] == sorted(t.group for t in days) and len(days) == 2
    assert days[0].group == time.strftime("%Y-%m-%d", time.gmtime(start))
    assert days[0].to_json()["cost_usd"] == pytest.approx(300e-9)
    assert await ledger.usage_by("key", start, end, key_id=fresh("key")) == []
