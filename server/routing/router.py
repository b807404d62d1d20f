"""Turns a route into an ordered list of candidate deployments for one request."""

from __future__ import annotations

from dataclasses import dataclass

from switchboard.v1 import chat_pb2, types_pb2

from server.routing.catalog import Catalog, Deployment, Route

STRATEGY_BY_NAME: dict[str, int] = {
    "ordered": types_pb2.ROUTE_STRATEGY_ORDERED,
    "cheapest": types_pb2.ROUTE_STRATEGY_CHEAPEST,
    "fastest": types_pb2.ROUTE_STRATEGY_FASTEST,
    "available": types_pb2.ROUTE_STRATEGY_AVAILABLE,
    "weighted": types_pb2.ROUTE_STRATEGY_WEIGHTED,
}


@dataclass(slots=True)
class Plan:
    """The candidates for one request, best first, and the strategy that ordered them."""

    route: Route
    strategy: int
    candidates: list[Deployment]


class Router:
    """Orders a route's deployments by its strategy (or the request's override)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def plan(self, request: chat_pb2.ChatRequest) -> Plan:
        route = self.catalog.resolve(request.model)
        strategy = request.routing.strategy or STRATEGY_BY_NAME[route.strategy]
        return Plan(route, strategy, list(route.deployments))
