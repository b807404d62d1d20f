"""``switchboard.v1.AdminService``: keys, projects and usage, for the master key only.

Every RPC checks the master key (PERMISSION_DENIED otherwise), then runs the one
implementation the REST admin API shares (``server.policy.admin.AdminOps``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc.aio
from switchboard.v1 import admin_pb2

from server.core.service import Gateway, require_admin
from server.core.state import KeyStore, UsageReader
from server.grpc_api.interceptors import current_principal, current_request_id
from server.policy.admin import AdminOps

# The RPC names of AdminService, each served by the AdminOps method of the snake_case name.
RPCS = tuple(admin_pb2.DESCRIPTOR.services_by_name["AdminService"].methods_by_name)


class AdminServicer:
    """Each AdminService RPC is the ``AdminOps`` method of the same name, behind the master
    key (``admin_pb2_grpc.add_AdminServiceServicer_to_server`` looks the RPCs up by name; an
    RPC without its method fails at start, never per call)."""

    def __init__(self, gateway: Gateway, keys: KeyStore, usage: UsageReader | None = None) -> None:
        self._gateway = gateway
        ops = AdminOps(keys, usage)
        for rpc in RPCS:
            setattr(self, rpc, self._admin(getattr(ops, _snake(rpc))))

    def _admin(
        self, op: Callable[[Any], Awaitable[Any]]
    ) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
        gateway = self._gateway

        async def rpc(request: Any, context: grpc.aio.ServicerContext) -> Any:
            require_admin(
                gateway.new_context(
                    current_principal(), transport="grpc", request_id=current_request_id()
                )
            )
            return await op(request)

        return rpc


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")
