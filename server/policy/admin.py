"""The admin operations, once for every surface: ``AdminService`` (gRPC), the REST admin API
(``/admin/v1/``, whose JSON bodies are the same messages in protobuf's JSON mapping) and the
CLI. Each takes and returns ``switchboard.v1`` admin messages over the ``KeyStore`` and the
ledger's ``UsageReader``; the callers check the master key first (``require_admin``).

Updates name their fields in a ``FieldMask`` (AIP-134): a named field left unset clears it;
``limits.<field>`` changes one limit and keeps the others.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from google.protobuf.timestamp_pb2 import Timestamp
from switchboard.v1 import admin_pb2

from server.core.context import KeyLimits
from server.core.errors import FieldViolation, InvalidRequestError, NotFoundError
from server.core.money import month_bounds, month_of
from server.core.state import USAGE_GROUPS, KeySpec, KeyStore, KeyUpdate, UsageReader
from server.policy.keys import limits_from_proto

_LIMIT_FIELDS = ("requests_per_minute", "tokens_per_minute", "monthly_budget_usd")
KEY_MASK_PATHS = (
    "name",
    "limits",
    *(f"limits.{f}" for f in _LIMIT_FIELDS),
    "allowed_models",
    "max_concurrent",
    "expire_time",
    "project_id",
)
PROJECT_MASK_PATHS = ("name", "limits", *(f"limits.{f}" for f in _LIMIT_FIELDS))
# UsageGroupBy values by the names ``UsageReader.usage_by`` takes (UNSPECIFIED: by key).
_GROUP_BY = {
    admin_pb2.USAGE_GROUP_BY_UNSPECIFIED: "key",
    admin_pb2.USAGE_GROUP_BY_KEY: "key",
    admin_pb2.USAGE_GROUP_BY_PROJECT: "project",
    admin_pb2.USAGE_GROUP_BY_MODEL: "model",
    admin_pb2.USAGE_GROUP_BY_PROVIDER: "provider",
    admin_pb2.USAGE_GROUP_BY_DAY: "day",
}
GROUP_BY_VALUE = {name: value for value, name in reversed(_GROUP_BY.items())}
assert set(GROUP_BY_VALUE) == set(USAGE_GROUPS)


def invalid(field: str, description: str) -> InvalidRequestError:
    """An InvalidRequestError naming one field."""
    return InvalidRequestError(
        f"Invalid request: {field}: {description}",
        param=field,
        field_violations=[FieldViolation(field, description)],
    )


def _required_id(value: str, field: str = "id") -> str:
    if not value:
        raise invalid(field, f"{field} is required")
    return value


def _seconds(ts: Timestamp) -> float:
    return ts.seconds + ts.nanos / 1e9


class AdminOps:
    """Keys, projects and usage as the admin surfaces see them."""

    def __init__(self, keys: KeyStore, usage: UsageReader | None = None) -> None:
        self.keys = keys
        self.usage = usage

    # --- keys ------------------------------------------------------------------------------

    async def create_key(self, request: admin_pb2.CreateKeyRequest) -> admin_pb2.CreateKeyResponse:
        spec = KeySpec(
            name=request.name,
            limits=limits_from_proto(request.limits),
            env=request.env,
            allowed_models=tuple(request.allowed_models),
            max_concurrent=request.max_concurrent if request.HasField("max_concurrent") else None,
            expires_at=_seconds(request.expire_time) if request.HasField("expire_time") else None,
            project_id=request.project_id or None,
        )
        record, secret = await self.keys.create(spec)
        return admin_pb2.CreateKeyResponse(key=record, secret=secret)

    async def list_keys(self, request: admin_pb2.ListKeysRequest) -> admin_pb2.ListKeysResponse:
        keys = await self.keys.list(include_revoked=request.include_revoked)
        return admin_pb2.ListKeysResponse(keys=keys)

    async def get_key(self, request: admin_pb2.GetKeyRequest) -> admin_pb2.GetKeyResponse:
        return admin_pb2.GetKeyResponse(key=await self._key(_required_id(request.id)))

    async def revoke_key(self, request: admin_pb2.RevokeKeyRequest) -> admin_pb2.RevokeKeyResponse:
        record = await self.keys.revoke(_required_id(request.id))
        return admin_pb2.RevokeKeyResponse(key=record)

    async def update_key(self, request: admin_pb2.UpdateKeyRequest) -> admin_pb2.UpdateKeyResponse:
        key_id = _required_id(request.key.id, "key.id")
        paths = _mask(request.update_mask.paths, KEY_MASK_PATHS)
        new = request.key
        limits = None
        if any(p.startswith("limits") for p in paths):
            limits = _merged_limits(paths, new.limits, (await self._key(key_id)).limits)
        changes = KeyUpdate(
            name=new.name if "name" in paths else None,
            limits=limits,
            allowed_models=tuple(new.allowed_models) if "allowed_models" in paths else None,
            max_concurrent=(new.max_concurrent if new.HasField("max_concurrent") else 0)
            if "max_concurrent" in paths
            else None,
            expires_at=(_seconds(new.expire_time) if new.HasField("expire_time") else 0.0)
            if "expire_time" in paths
            else None,
            project_id=new.project_id if "project_id" in paths else None,
        )
        return admin_pb2.UpdateKeyResponse(key=await self.keys.update(key_id, changes))

    async def rotate_key(self, request: admin_pb2.RotateKeyRequest) -> admin_pb2.RotateKeyResponse:
        grace = request.grace_seconds
        if not grace >= 0:  # also refuses NaN
            raise invalid("grace_seconds", "grace_seconds must not be negative")
        record, secret = await self.keys.rotate(_required_id(request.id), grace)
        return admin_pb2.RotateKeyResponse(key=record, secret=secret)

    async def _key(self, key_id: str) -> admin_pb2.GatewayKey:
        record = await self.keys.get(key_id)
        if record is None:
            raise NotFoundError(f"No gateway key has the id {key_id!r}.", param="id")
        return record

    # --- projects ----------------------------------------------------------------------------

    async def create_project(
        self, request: admin_pb2.CreateProjectRequest
    ) -> admin_pb2.CreateProjectResponse:
        project = await self.keys.create_project(request.name, limits_from_proto(request.limits))
        return admin_pb2.CreateProjectResponse(project=project)

    async def get_project(
        self, request: admin_pb2.GetProjectRequest
    ) -> admin_pb2.GetProjectResponse:
        return admin_pb2.GetProjectResponse(project=await self._project(_required_id(request.id)))

    async def list_projects(
        self, request: admin_pb2.ListProjectsRequest
    ) -> admin_pb2.ListProjectsResponse:
        return admin_pb2.ListProjectsResponse(projects=await self.keys.list_projects())

    async def update_project(
        self, request: admin_pb2.UpdateProjectRequest
    ) -> admin_pb2.UpdateProjectResponse:
        project_id = _required_id(request.project.id, "project.id")
        paths = _mask(request.update_mask.paths, PROJECT_MASK_PATHS)
        new = request.project
        limits = None
        if any(p.startswith("limits") for p in paths):
            current = await self._project(project_id)
            limits = _merged_limits(paths, new.limits, current.limits)
        project = await self.keys.update_project(
            project_id, name=new.name if "name" in paths else None, limits=limits
        )
        return admin_pb2.UpdateProjectResponse(project=project)

    async def _project(self, project_id: str) -> admin_pb2.Project:
        project = await self.keys.get_project(project_id)
        if project is None:
            raise NotFoundError(f"No project has the id {project_id!r}.", param="id")
        return project

    # --- usage ------------------------------------------------------------------------------

    async def get_usage(self, request: admin_pb2.GetUsageRequest) -> admin_pb2.GetUsageResponse:
        if self.usage is None:
            raise NotFoundError("This gateway keeps no usage ledger.")
        group = _GROUP_BY.get(request.group_by)
        if group is None:
            raise invalid("group_by", f"group_by must be one of {', '.join(USAGE_GROUPS)}")
        default_start, default_end = month_bounds(*month_of(time.time()))
        has_start, has_end = request.HasField("start_time"), request.HasField("end_time")
        start = _seconds(request.start_time) if has_start else default_start
        end = _seconds(request.end_time) if has_end else default_end
        if has_start and not has_end:
            end = max(end, time.time())
        if end <= start:
            raise invalid("end_time", "end_time must be after start_time")
        rows = await self.usage.usage_by(
            group,
            start,
            end,
            key_id=request.key_id or None,
            project_id=request.project_id or None,
        )
        response = admin_pb2.GetUsageResponse(group_by=GROUP_BY_VALUE[group])
        response.start_time.FromNanoseconds(int(start * 1e9))
        response.end_time.FromNanoseconds(int(end * 1e9))
        for row in rows:
            response.rows.add(**row.to_json())
        return response


def _mask(paths: Sequence[str], allowed: Sequence[str]) -> frozenset[str]:
    """The update mask's paths; InvalidRequestError for none or an unknown one."""
    if not paths:
        raise invalid("update_mask", f"update_mask must name fields: {', '.join(allowed)}")
    for path in paths:
        if path not in allowed:
            raise invalid("update_mask", f"cannot update {path!r}; updatable: {', '.join(allowed)}")
    return frozenset(paths)


def _merged_limits(
    paths: frozenset[str], new: admin_pb2.KeyLimits, current: admin_pb2.KeyLimits
) -> KeyLimits:
    """The limits after an update: all of ``new`` for ``limits``, else ``current`` with the
    named ``limits.<field>`` taken from ``new`` (unset there: unlimited)."""
    if "limits" in paths:
        return limits_from_proto(new)
    merged = admin_pb2.KeyLimits()
    merged.CopyFrom(current)
    for name in _LIMIT_FIELDS:
        if f"limits.{name}" in paths:
            if new.HasField(name):
                setattr(merged, name, getattr(new, name))
            else:
                merged.ClearField(name)
    return limits_from_proto(merged)
