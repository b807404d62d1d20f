"""Key and project rows as every key store reads them: SQL row → ``GatewayKey`` / ``Project`` /
``Principal``, and the errors a key store raises.

Shared by the embedded (SQLite) and distributed (PostgreSQL) key stores, whose SELECTs return
the columns in the orders documented here, so a key looks the same from either backend.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from switchboard.v1 import admin_pb2

from server.core.context import KeyLimits, Principal
from server.core.errors import FieldViolation, InvalidRequestError, NotFoundError
from server.policy.keys import limits_to_proto

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
