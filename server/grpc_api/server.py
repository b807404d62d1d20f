"""Assembles the grpc.aio server: servicers, auth interceptor, health and reflection."""

from __future__ import annotations

import grpc.aio
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from switchboard.v1 import admin_pb2, admin_pb2_grpc, chat_pb2, chat_pb2_grpc

from server.core.service import Gateway
from server.core.state import KeyStore
from server.grpc_api.admin import AdminServicer
from server.grpc_api.chat import ChatServicer
from server.grpc_api.interceptors import AuthInterceptor

CHAT_SERVICE = chat_pb2.DESCRIPTOR.services_by_name["ChatService"].full_name
ADMIN_SERVICE = admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name
# Requests carry whole conversations (and inline images): allow more than gRPC's 4 MiB default.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

SERVER_OPTIONS = (
    # gRPC enables SO_REUSEPORT by default, which would let a second gateway silently share the
    # port; a taken port must be an error at startup.
    ("grpc.so_reuseport", 0),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
)


class GrpcServer:
    """The gateway's gRPC server and its health servicer (grpc examples/python layout)."""

    def __init__(self, gateway: Gateway, keys: KeyStore) -> None:
        self.health = health_aio.HealthServicer()
        self.server = grpc.aio.server(
            interceptors=[AuthInterceptor(gateway)], options=SERVER_OPTIONS
        )
        chat_pb2_grpc.add_ChatServiceServicer_to_server(ChatServicer(gateway), self.server)
        admin_pb2_grpc.add_AdminServiceServicer_to_server(AdminServicer(gateway, keys), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (
                CHAT_SERVICE,
                ADMIN_SERVICE,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            self.server,
        )

    def bind(self, host: str, port: int) -> int:
        """Listens on host:port (0 picks a free port); returns the bound port."""
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            bound = self.server.add_insecure_port(address)
        except RuntimeError as exc:
            raise OSError(f"cannot listen for gRPC on {address}: {exc}") from None
        if bound == 0:
            raise OSError(f"cannot listen for gRPC on {address}: address in use or unavailable")
        return bound

    async def start(self) -> None:
        """Starts serving and reports SERVING for the server and each service."""
        await self.server.start()
        for service in ("", CHAT_SERVICE, ADMIN_SERVICE):
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float) -> None:
        """NOT_SERVING first (load balancers stop sending), then a graceful stop."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
