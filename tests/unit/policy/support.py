"""Helpers for the policy unit tests: a settable clock, requests, plans and call contexts."""

from __future__ import annotations

from dataclasses import dataclass

from switchboard.v1 import chat_pb2, types_pb2

from server.core.context import CallContext, KeyLimits, Principal
from server.core.records import Plan
from server.providers.demo.provider import DemoProvider
from server.routing.catalog import Deployment, Route
from server.routing.cost import Price


class Clock:
    """A clock that moves only when told (for monotonic and wall time alike)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def request(
    text: str = "hello there", *, max_tokens: int | None = None, model: str = "demo/echo"
) -> chat_pb2.ChatRequest:
    req = chat_pb2.ChatRequest(model=model)
    req.messages.add(role=types_pb2.ROLE_USER).content.add().text = text
    if max_tokens is not None:
        req.max_tokens = max_tokens
    return req


def plan(*prices: Price | None, req: chat_pb2.ChatRequest | None = None) -> Plan:
    """A plan over demo deployments with these prices (in candidate order), carrying the token
    estimate of ``req`` as the router computes it."""
    provider = DemoProvider()
    deployments = [
        Deployment(id=f"demo/echo-{i}", provider=provider, model="echo", price=price)
        for i, price in enumerate(prices or (None,))
    ]
    req = req if req is not None else request()
    return Plan(
        Route("r", "ordered", deployments), types_pb2.ROUTE_STRATEGY_ORDERED, deployments, req
    )


def ctx(
    key_id: str = "key_a",
    *,
    rpm: int | None = None,
    tpm: int | None = None,
    budget: float | None = None,
    admin: bool = False,
    request_id: str = "req-1",
) -> CallContext:
    principal = Principal(key_id, key_id, is_admin=admin, limits=KeyLimits(rpm, tpm, budget))
    return CallContext(request_id=request_id, principal=principal, transport="grpc")


@dataclass
class Keys:
    """A KeyLookup over a dict of secret → principal."""

    by_secret: dict[str, Principal]

    async def lookup(self, secret: str) -> Principal | None:
        return self.by_secret.get(secret)
