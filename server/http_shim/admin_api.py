"""The REST admin API under ``/admin/v1/`` on the HTTP port (master key only).

Bodies and responses are the ``AdminService`` messages in protobuf's JSON mapping (field names
as in ``admin.proto``, timestamps as RFC 3339 strings, 64-bit integers as JSON numbers), served
by the same ``server.policy.admin.AdminOps`` as gRPC. Errors are OpenAI-shaped; a key that is
not the master key gets 403 ``PERMISSION_DENIED``.

    POST  /admin/v1/keys                 CreateKeyRequest          -> CreateKeyResponse
    GET   /admin/v1/keys[?include_revoked=true]                    -> ListKeysResponse
    GET   /admin/v1/keys/{id}                                      -> GetKeyResponse
    PATCH /admin/v1/keys/{id}            fields of GatewayKey      -> UpdateKeyResponse
    POST  /admin/v1/keys/{id}/rotate     {"grace_seconds": 60}     -> RotateKeyResponse
    POST  /admin/v1/keys/{id}/revoke                               -> RevokeKeyResponse
    POST  /admin/v1/projects             CreateProjectRequest      -> CreateProjectResponse
    GET   /admin/v1/projects                                       -> ListProjectsResponse
    GET   /admin/v1/projects/{id}                                  -> GetProjectResponse
    PATCH /admin/v1/projects/{id}        fields of Project         -> UpdateProjectResponse
    GET   /admin/v1/usage?group_by=key|project|model|provider|day&start_time=&end_time=
          &key_id=&project_id=                                     -> GetUsageResponse

A PATCH body is a JSON merge patch: the fields present are changed (``null`` clears one; in
``limits`` only the limits present change), the others stay.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs

import orjson
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from switchboard.v1 import admin_pb2

from server.core.errors import GatewayError, NotFoundError
from server.core.service import Gateway, require_admin
from server.core.state import KeyStore, UsageReader
from server.http_shim.app import Route
from server.http_shim.asgi import BODY_TIMEOUT, HttpRequest
from server.http_shim.openai_dialect import http_context, respond_error
from server.policy.admin import GROUP_BY_VALUE, AdminOps, invalid

_M = TypeVar("_M", bound=Message)

PREFIX = "/admin/v1"
# Admin bodies are small; a larger one is a mistake, refused before it is read.
MAX_BODY = 64 * 1024
_INT64 = (
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
)


class AdminApi:
    """The handlers of the admin routes (``routes``)."""

    def __init__(
        self,
        gateway: Gateway,
        keys: KeyStore,
        usage: UsageReader | None = None,
        body_timeout: float = BODY_TIMEOUT,
    ) -> None:
        self.gateway = gateway
        self.ops = AdminOps(keys, usage)
        self.body_timeout = body_timeout

    def routes(self) -> list[Route]:
        """Every admin route (a path ending in ``/*``: anything under it)."""
        table = (
            ("POST", "keys", self._create_key),
            ("GET", "keys", self._list_keys),
            ("GET", "keys/*", self._get_key),
            ("PATCH", "keys/*", self._update_key),
            ("POST", "keys/*", self._key_action),
            ("POST", "projects", self._create_project),
            ("GET", "projects", self._list_projects),
            ("GET", "projects/*", self._get_project),
            ("PATCH", "projects/*", self._update_project),
            ("GET", "usage", self._usage),
        )
        return [Route(method, f"{PREFIX}/{path}", self._admin(op)) for method, path, op in table]

    def _admin(
        self, handler: Callable[[HttpRequest], Awaitable[Message]]
    ) -> Callable[[HttpRequest], Awaitable[int]]:
        gateway = self.gateway

        async def serve(req: HttpRequest) -> int:
            try:
                require_admin(await http_context(gateway, req))
                response = await handler(req)
            except GatewayError as exc:
                return await respond_error(req, exc)
            await req.respond_json(200, orjson.dumps(to_json(response)))
            return 200

        return serve

    # --- keys -------------------------------------------------------------------------------

    async def _create_key(self, req: HttpRequest) -> Message:
        return await self.ops.create_key(await self._body(req, admin_pb2.CreateKeyRequest()))

    async def _list_keys(self, req: HttpRequest) -> Message:
        query = _query(req)
        include = query.get("include_revoked", "false").lower()
        if include not in ("true", "false", "1", "0"):
            raise invalid("include_revoked", "include_revoked must be true or false")
        request = admin_pb2.ListKeysRequest(include_revoked=include in ("true", "1"))
        return await self.ops.list_keys(request)

    async def _get_key(self, req: HttpRequest) -> Message:
        key_id, action = _target(req, "keys")
        if action:
            raise _unknown_url(req)
        return await self.ops.get_key(admin_pb2.GetKeyRequest(id=key_id))

    async def _update_key(self, req: HttpRequest) -> Message:
        key_id, action = _target(req, "keys")
        if action:
            raise _unknown_url(req)
        body = await self._json(req)
        request = admin_pb2.UpdateKeyRequest()
        _parse({**body, "id": key_id}, request.key, "key")
        request.update_mask.paths.extend(_patch_paths(body))
        return await self.ops.update_key(request)

    async def _key_action(self, req: HttpRequest) -> Message:
        key_id, action = _target(req, "keys")
        if action == "rotate":
            request = await self._body(req, admin_pb2.RotateKeyRequest(), allow_empty=True)
            request.id = key_id
            return await self.ops.rotate_key(request)
        if action == "revoke":
            return await self.ops.revoke_key(admin_pb2.RevokeKeyRequest(id=key_id))
        raise _unknown_url(req)

    # --- projects ----------------------------------------------------------------------------

    async def _create_project(self, req: HttpRequest) -> Message:
        request = await self._body(req, admin_pb2.CreateProjectRequest())
        return await self.ops.create_project(request)

    async def _list_projects(self, req: HttpRequest) -> Message:
        return await self.ops.list_projects(admin_pb2.ListProjectsRequest())

    async def _get_project(self, req: HttpRequest) -> Message:
        project_id, action = _target(req, "projects")
        if action:
            raise _unknown_url(req)
        return await self.ops.get_project(admin_pb2.GetProjectRequest(id=project_id))

    async def _update_project(self, req: HttpRequest) -> Message:
        project_id, action = _target(req, "projects")
        if action:
            raise _unknown_url(req)
        body = await self._json(req)
        request = admin_pb2.UpdateProjectRequest()
        _parse({**body, "id": project_id}, request.project, "project")
        request.update_mask.paths.extend(_patch_paths(body))
        return await self.ops.update_project(request)

    # --- usage ------------------------------------------------------------------------------

    async def _usage(self, req: HttpRequest) -> Message:
        query = _query(req)
        unknown = set(query) - {"group_by", "start_time", "end_time", "key_id", "project_id"}
        if unknown:
            raise invalid(sorted(unknown)[0], "unknown query parameter")
        request = admin_pb2.GetUsageRequest(
            key_id=query.get("key_id", ""), project_id=query.get("project_id", "")
        )
        group = query.get("group_by", "key")
        if group not in GROUP_BY_VALUE:
            raise invalid("group_by", f"group_by must be one of {', '.join(GROUP_BY_VALUE)}")
        request.group_by = GROUP_BY_VALUE[group]
        for field in ("start_time", "end_time"):
            if field in query:
                try:
                    getattr(request, field).FromJsonString(query[field])
                except ValueError:
                    raise invalid(
                        field, f"{field} must be an RFC 3339 time, e.g. 2026-01-01T00:00:00Z"
                    ) from None
        return await self.ops.get_usage(request)

    # --- bodies -----------------------------------------------------------------------------

    async def _json(self, req: HttpRequest, *, allow_empty: bool = False) -> dict[str, Any]:
        raw = await req.body(MAX_BODY, self.body_timeout)
        if not raw.strip() and allow_empty:
            return {}
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise invalid("body", "the body must be a JSON object") from None
        if not isinstance(body, dict):
            raise invalid("body", "the body must be a JSON object")
        return body

    async def _body(self, req: HttpRequest, into: _M, *, allow_empty: bool = False) -> _M:
        _parse(await self._json(req, allow_empty=allow_empty), into, "body")
        return into


def _parse(body: dict[str, Any], into: Message, where: str) -> None:
    """``body`` (protobuf JSON) into ``into``; InvalidRequestError naming the problem."""
    try:
        json_format.ParseDict(body, into)
    except json_format.ParseError as exc:
        raise invalid(where, str(exc)) from None


def _patch_paths(body: dict[str, Any]) -> list[str]:
    """The update mask of a merge patch: each top-level field, and ``limits.<field>`` for the
    fields of a ``limits`` object (``"limits": null`` replaces all limits)."""
    paths: list[str] = []
    for name, value in body.items():
        if name == "limits" and isinstance(value, dict):
            paths.extend(f"limits.{field}" for field in value)
        else:
            paths.append(name)
    return paths


def _target(req: HttpRequest, collection: str) -> tuple[str, str]:
    """(id, action) of ``/admin/v1/<collection>/<id>[/<action>]``."""
    rest = req.path[len(f"{PREFIX}/{collection}/") :]
    item, _, action = rest.partition("/")
    if not item:
        raise _unknown_url(req)
    return item, action


def _unknown_url(req: HttpRequest) -> NotFoundError:
    return NotFoundError(f"Invalid URL ({req.method} {req.path})")


def _query(req: HttpRequest) -> dict[str, str]:
    """The query's parameters, the last value of each."""
    params = parse_qs(req.scope.get("query_string", b"").decode("latin-1"))
    return {name: values[-1] for name, values in params.items()}


def to_json(message: Message) -> dict[str, Any]:
    """``message`` in protobuf's JSON mapping with field names as in the .proto, but with
    64-bit integers as JSON numbers (the mapping's strings only help JavaScript past 2**53;
    no limit or token count here comes near)."""
    out = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    _numbers(message, out)
    return out


def _numbers(message: Message, out: dict[str, Any]) -> None:
    for field, value in message.ListFields():
        name = field.name
        if field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type is not None:
            children = value if _repeated(field) else [value]
            nested = out.get(name)
            items = nested if isinstance(nested, list) else [nested]
            for child, child_out in zip(children, items, strict=False):
                if isinstance(child_out, dict):
                    _numbers(child, child_out)
        elif field.type in _INT64 and name in out:
            out[name] = [int(v) for v in out[name]] if _repeated(field) else int(out[name])


def _repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)
