"""``switchboard.v1.AdminService``: gateway key management, for the master key only."""

from __future__ import annotations

import grpc.aio
from switchboard.v1 import admin_pb2, admin_pb2_grpc

from server.core.errors import FieldViolation, InvalidRequestError
from server.core.service import Gateway, require_admin
from server.core.state import KeyStore
from server.grpc_api.interceptors import current_principal, current_request_id
from server.policy.keys import limits_from_proto


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    """CreateKey, ListKeys, RevokeKey over the ``KeyStore``."""

    def __init__(self, gateway: Gateway, keys: KeyStore) -> None:
        self._gateway = gateway
        self._keys = keys

    def _require_admin(self, context: grpc.aio.ServicerContext) -> None:
        require_admin(
            self._gateway.new_context(
                current_principal(), transport="grpc", request_id=current_request_id()
            )
        )

    async def CreateKey(
        self, request: admin_pb2.CreateKeyRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.CreateKeyResponse:
        self._require_admin(context)
        limits = limits_from_proto(request.limits)
        record, secret = await self._keys.create(request.name, limits)
        return admin_pb2.CreateKeyResponse(key=record, secret=secret)

    async def ListKeys(
        self, request: admin_pb2.ListKeysRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.ListKeysResponse:
        self._require_admin(context)
        keys = await self._keys.list(include_revoked=request.include_revoked)
        return admin_pb2.ListKeysResponse(keys=keys)

    async def RevokeKey(
        self, request: admin_pb2.RevokeKeyRequest, context: grpc.aio.ServicerContext
    ) -> admin_pb2.RevokeKeyResponse:
        self._require_admin(context)
        if not request.id:
            raise InvalidRequestError(
                "Invalid request: id: id is required",
                param="id",
                field_violations=[FieldViolation("id", "id is required")],
            )
        record = await self._keys.revoke(request.id)
        return admin_pb2.RevokeKeyResponse(key=record)
