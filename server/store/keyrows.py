"""Key and project rows as every key store reads them: SQL row → ``GatewayKey`` / ``Project`` /
``Principal``, and the errors a key store raises.

Shared by the embedded (SQLite) and distributed (PostgreSQL) key stores, whose SELECTs return
the columns in the orders documented here, so a key looks the same from either backend.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from switchboard.v1 import admin_pb2

from server.core.context import KeyLimits, Principal
from server.core.errors import (
    FailedPreconditionError,
    FieldViolation,
    InvalidRequestError,
    NotFoundError,
)
from server.core.ids import hash_key, new_gateway_key
from server.core.state import KeySpec, KeyUpdate
from server.policy.keys import (
    check_key_spec,
    check_key_update,
    check_limits,
    check_name,
    key_prefix,
    limits_to_proto,
)

# What ``key_record`` reads, in this order, from ``gateway_keys k`` (the subquery: the end of
# the latest rotation grace).
KEY_COLUMNS = (
    "k.id, k.name, k.prefix, k.create_time, k.revoke_time, "
    "k.requests_per_minute, k.tokens_per_minute, k.monthly_budget_usd, "
    "k.env, k.project_id, k.allowed_models, k.max_concurrent, k.expire_time, k.rotate_time, "
    "(SELECT MAX(s.expire_time) FROM key_secrets s WHERE s.key_id = k.id)"
)
# What ``project_record`` reads, in this order, from ``projects``.
PROJECT_COLUMNS = (
    "id, name, create_time, requests_per_minute, tokens_per_minute, monthly_budget_usd"
)
# What ``principal_from_row`` reads, in this order (``k``: the key, ``p``: its project).
PRINCIPAL_COLUMNS = (
    "k.id, k.name, k.requests_per_minute, k.tokens_per_minute, k.monthly_budget_usd, "
    "k.env, k.project_id, k.allowed_models, k.max_concurrent, k.expire_time, "
    "p.requests_per_minute, p.tokens_per_minute, p.monthly_budget_usd"
)


def principal_from_row(row: tuple[Any, ...] | Any) -> Principal:
    """The principal of a key row selected as ``PRINCIPAL_COLUMNS``."""
    (
        key_id, name, rpm, tpm, budget, env, project_id, models, max_concurrent, expires,
        p_rpm, p_tpm, p_budget,
    ) = row  # fmt: skip
    return Principal(
        key_id=key_id,
        name=name,
        limits=KeyLimits(rpm, tpm, budget),
        env=env,
        project_id=project_id,
        project_limits=KeyLimits(p_rpm, p_tpm, p_budget) if project_id else None,
        allowed_models=models_from_json(models),
        max_concurrent=max_concurrent,
        expires_at=expires,
    )


def key_not_found(key_id: str) -> NotFoundError:
    return NotFoundError(f"No gateway key has the id {key_id!r}.", param="id")


def project_not_found(project_id: str, param: str) -> NotFoundError:
    return NotFoundError(f"No project has the id {project_id!r}.", param=param)


def invalid_grace() -> InvalidRequestError:
    return InvalidRequestError(
        "Invalid request: grace_seconds: grace_seconds must not be negative",
        param="grace_seconds",
        field_violations=[FieldViolation("grace_seconds", "grace_seconds must not be negative")],
    )


def earliest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def models_from_json(text: str) -> tuple[str, ...]:
    return tuple(json.loads(text)) if text else ()


def models_json(models: tuple[str, ...]) -> str:
    return json.dumps(list(models)) if models else ""


def timestamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def key_record(row: tuple[Any, ...] | Any, now: float) -> admin_pb2.GatewayKey:
    """The contract's ``GatewayKey`` of a row selected as ``KEY_COLUMNS`` (``expired`` and the
    grace shown as of ``now``)."""
    (
        key_id, name, prefix, created, revoked, rpm, tpm, budget,
        env, project_id, models, max_concurrent, expires, rotated, grace_end,
    ) = row  # fmt: skip
    record = admin_pb2.GatewayKey(
        id=key_id,
        name=name,
        prefix=prefix,
        create_time=timestamp(created),
        env=env,
        project_id=project_id or "",
        allowed_models=models_from_json(models),
    )
    if revoked is not None:
        record.revoked = True
        record.revoke_time.CopyFrom(timestamp(revoked))
    limits_to_proto(KeyLimits(rpm, tpm, budget), record.limits)
    if max_concurrent is not None:
        record.max_concurrent = max_concurrent
    if expires is not None:
        record.expire_time.CopyFrom(timestamp(expires))
        record.expired = now >= expires
    if rotated is not None:
        record.rotate_time.CopyFrom(timestamp(rotated))
    if grace_end is not None and grace_end > now and revoked is None:
        record.previous_secret_expire_time.CopyFrom(timestamp(grace_end))
    return record


def project_record(row: tuple[Any, ...] | Any) -> admin_pb2.Project:
    """The contract's ``Project`` of a row selected as ``PROJECT_COLUMNS``."""
    project_id, name, created, rpm, tpm, budget = row
    project = admin_pb2.Project(id=project_id, name=name, create_time=timestamp(created))
    limits_to_proto(KeyLimits(rpm, tpm, budget), project.limits)
    return project


# --- writes -------------------------------------------------------------------------------

# The columns ``NewKey.values`` fills, in this order.
KEY_INSERT_COLUMNS = (
    "id", "name", "prefix", "key_hash", "create_time", "requests_per_minute",
    "tokens_per_minute", "monthly_budget_usd", "env", "project_id", "allowed_models",
    "max_concurrent", "expire_time",
)  # fmt: skip
PROJECT_INSERT_COLUMNS = (
    "id", "name", "create_time", "requests_per_minute", "tokens_per_minute",
    "monthly_budget_usd",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key about to be inserted: its checked spec, id and secret (``new_key``)."""

    spec: KeySpec
    key_id: str
    secret: str
    now: float

    def values(self) -> tuple[object, ...]:
        """The row, in ``KEY_INSERT_COLUMNS`` order (the secret only hashed)."""
        spec, limits = self.spec, self.spec.limits
        return (
            self.key_id,
            spec.name,
            key_prefix(self.secret, spec.env),
            hash_key(self.secret),
            self.now,
            limits.requests_per_minute,
            limits.tokens_per_minute,
            limits.monthly_budget_usd,
            spec.env,
            spec.project_id,
            models_json(spec.allowed_models),
            spec.max_concurrent,
            spec.expires_at,
        )


def new_key(name: str | KeySpec, limits: KeyLimits | None, now: float) -> NewKey:
    """What ``KeyStore.create(name, limits)`` inserts: the spec checked, a new id and secret."""
    spec = name if isinstance(name, KeySpec) else KeySpec(name, limits or KeyLimits())
    spec = check_key_spec(spec, now)
    return NewKey(spec, "key_" + secrets.token_hex(8), new_gateway_key(spec.env), now)


def new_project(name: str, limits: KeyLimits | None, now: float) -> tuple[object, ...]:
    """The row of a new project, in ``PROJECT_INSERT_COLUMNS`` order (name and limits
    checked)."""
    name = check_name(name)
    limits = limits or KeyLimits()
    check_limits(limits)
    return (
        "proj_" + secrets.token_hex(8),
        name,
        now,
        limits.requests_per_minute,
        limits.tokens_per_minute,
        limits.monthly_budget_usd,
    )


def key_update_columns(changes: KeyUpdate) -> dict[str, object]:
    """``changes`` checked, as the ``gateway_keys`` columns to set (empty: nothing to do)."""
    changes = check_key_update(changes)
    sets: dict[str, object] = {}
    if changes.name is not None:
        sets["name"] = changes.name
    if changes.limits is not None:
        sets.update(_limit_columns(changes.limits))
    if changes.allowed_models is not None:
        sets["allowed_models"] = models_json(changes.allowed_models)
    if changes.max_concurrent is not None:
        sets["max_concurrent"] = changes.max_concurrent or None
    if changes.expires_at is not None:
        sets["expire_time"] = changes.expires_at or None
    if changes.project_id is not None:
        sets["project_id"] = changes.project_id or None
    return sets


def project_update_columns(name: str | None, limits: KeyLimits | None) -> dict[str, object]:
    """A project's new name and/or limits checked, as the ``projects`` columns to set."""
    sets: dict[str, object] = {}
    if name is not None:
        sets["name"] = check_name(name)
    if limits is not None:
        check_limits(limits)
        sets.update(_limit_columns(limits))
    return sets


def _limit_columns(limits: KeyLimits) -> dict[str, object]:
    return {
        "requests_per_minute": limits.requests_per_minute,
        "tokens_per_minute": limits.tokens_per_minute,
        "monthly_budget_usd": limits.monthly_budget_usd,
    }


def check_grace(grace_seconds: float) -> None:
    """InvalidRequestError for a negative (or NaN) rotation grace."""
    if not grace_seconds >= 0:  # also refuses NaN
        raise invalid_grace()


def key_revoked(key_id: str) -> FailedPreconditionError:
    """What rotating a revoked key raises."""
    return FailedPreconditionError(
        f"Gateway key {key_id} is revoked; create a new key instead.", param="id"
    )
