"""Assembles the grpc.aio server: servicers, auth interceptor, health and reflection (v1 and
v1alpha)."""

from __future__ import annotations

import grpc.aio
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from switchboard.v1 import admin_pb2, admin_pb2_grpc, chat_pb2, chat_pb2_grpc

from server.config import LimitsConfig, ServerConfig
from server.core.service import Gateway
from server.core.state import KeyStore, UsageReader
from server.grpc_api.admin import AdminServicer
from server.grpc_api.chat import ChatServicer
from server.grpc_api.interceptors import AuthInterceptor
from server.grpc_api.reflection import enable_reflection

CHAT_SERVICE = chat_pb2.DESCRIPTOR.services_by_name["ChatService"].full_name
ADMIN_SERVICE = admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name


def server_options(
    server: ServerConfig, limits: LimitsConfig, *, reuse_port: bool = False
) -> tuple[tuple[str, int], ...]:
    """The grpc core options: message size bound, connection cap and timeouts."""
    return (
        # gRPC enables SO_REUSEPORT by default, which would let a second gateway silently share
        # the port; a taken port must be an error at startup. Only `serve --workers N`'s
        # workers share theirs (server/supervisor.py holds the port for them).
        ("grpc.so_reuseport", 1 if reuse_port else 0),
        # Requests carry whole conversations (and inline images): more than gRPC's 4 MiB.
        ("grpc.max_receive_message_length", limits.max_body_bytes),
        ("grpc.max_send_message_length", limits.max_body_bytes),
        ("grpc.max_allowed_incoming_connections", server.max_connections),
        # A connection that does not finish its handshake in time is closed (slowloris).
        ("grpc.server_handshake_timeout_ms", round(server.header_timeout * 1000)),
        # Idle connections are closed with a GOAWAY; clients reconnect when they need to.
        ("grpc.max_connection_idle_ms", round(server.idle_timeout * 1000)),
    )


class GrpcServer:
    """The gateway's gRPC server and its health servicer (grpc examples/python layout)."""

    def __init__(
        self,
        gateway: Gateway,
        keys: KeyStore,
        server: ServerConfig | None = None,
        limits: LimitsConfig | None = None,
        usage: UsageReader | None = None,
        *,
        reuse_port: bool = False,
    ) -> None:
        self.health = health_aio.HealthServicer()
        options = server_options(
            server or ServerConfig(), limits or LimitsConfig(), reuse_port=reuse_port
        )
        self.server = grpc.aio.server(interceptors=[AuthInterceptor(gateway)], options=options)
        chat_pb2_grpc.add_ChatServiceServicer_to_server(ChatServicer(gateway), self.server)
        admin_pb2_grpc.add_AdminServiceServicer_to_server(
            AdminServicer(gateway, keys, usage), self.server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        enable_reflection(
            (
                CHAT_SERVICE,
                ADMIN_SERVICE,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
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
