"""Turns a route into an ordered list of candidate deployments for one request.

Strategies (the route's, or the request's ``routing.strategy`` override):

- ``ordered``: as configured.
- ``cheapest``: by this request's estimated cost (input chars / 4 and max_tokens at each
  deployment's price); unpriced deployments last.
- ``fastest``: by the measured moving average of time to first token (streams) or of total
  latency (non-streamed calls); unmeasured deployments first, so each gets measured.
- ``available``: usable before open/cooling, then by recent error rate.
- ``weighted``: a random order drawn by ``weight`` (weighted sampling without replacement).

Open circuits are not removed here: the executor checks each candidate right before its
attempt (that is where a half-open probe is claimed) and records skipped ones.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from switchboard.v1 import chat_pb2, types_pb2

from server.core.records import Plan
from server.core.state import HealthStore
from server.routing.catalog import Catalog, Deployment
from server.routing.cost import estimate_cost
from server.store.embedded.health import LocalHealth

STRATEGY_BY_NAME: dict[str, int] = {
    "ordered": types_pb2.ROUTE_STRATEGY_ORDERED,
    "cheapest": types_pb2.ROUTE_STRATEGY_CHEAPEST,
    "fastest": types_pb2.ROUTE_STRATEGY_FASTEST,
    "available": types_pb2.ROUTE_STRATEGY_AVAILABLE,
    "weighted": types_pb2.ROUTE_STRATEGY_WEIGHTED,
}
STRATEGY_NAMES: dict[int, str] = {v: k for k, v in STRATEGY_BY_NAME.items()}

_INF = float("inf")


class Router:
    """Orders a route's deployments by its strategy (or the request's override)."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        health: HealthStore | None = None,
        explore: float = 0.02,
        rng: random.Random | None = None,
    ) -> None:
        self.catalog = catalog
        self.health: HealthStore = health if health is not None else LocalHealth()
        # Share of `fastest` requests that try a random candidate first, so a deployment that
        # was slow once (or recovered) keeps being measured.
        self.explore = explore
        self._rng = rng or random.Random()

    def plan(
        self, request: chat_pb2.ChatRequest | chat_pb2.EmbedRequest, *, stream: bool = False
    ) -> Plan:
        """Resolves the model name and orders its deployments; 404 for unknown names."""
        route = self.catalog.resolve(request.model)
        strategy = request.routing.strategy or STRATEGY_BY_NAME[route.strategy]
        deployments = route.deployments
        if len(deployments) == 1 or strategy == types_pb2.ROUTE_STRATEGY_ORDERED:
            # The hot path: no copy, no sort.
            return Plan(route, strategy, deployments, request)
        if strategy == types_pb2.ROUTE_STRATEGY_CHEAPEST:
            # The plan's one token estimate: `cheapest` ranks by it, admission reserves it.
            plan = Plan(route, strategy, deployments, request)
            plan.candidates = self._cheapest(deployments, plan.input_tokens, plan.output_tokens)
            return plan
        if strategy == types_pb2.ROUTE_STRATEGY_FASTEST:
            ordered = self._fastest(deployments, stream)
        elif strategy == types_pb2.ROUTE_STRATEGY_AVAILABLE:
            ordered = self._available(deployments)
        elif strategy == types_pb2.ROUTE_STRATEGY_WEIGHTED:
            ordered = self._weighted(deployments)
        else:
            ordered = list(deployments)
        return Plan(route, strategy, ordered, request)

    def _cheapest(
        self, deployments: Sequence[Deployment], tokens_in: int, tokens_out: int
    ) -> list[Deployment]:
        costs = {}
        for d in deployments:
            cost = estimate_cost(d.price, tokens_in, tokens_out)
            costs[d.id] = _INF if cost is None else cost
        # sorted() is stable: equal prices keep the configured order.
        return sorted(deployments, key=lambda d: costs[d.id])

    def _fastest(self, deployments: Sequence[Deployment], stream: bool) -> list[Deployment]:
        scores = {}
        for d in deployments:
            snap = self.health.snapshot(d.id)
            measured = snap.ttft if stream else snap.latency
            if measured is None:
                measured = snap.latency if stream else snap.ttft
            scores[d.id] = 0.0 if measured is None else measured
        ordered = sorted(deployments, key=lambda d: scores[d.id])
        if self.explore > 0.0 and self._rng.random() < self.explore:
            pick = self._rng.randrange(len(ordered))
            ordered.insert(0, ordered.pop(pick))
        return ordered

    def _available(self, deployments: Sequence[Deployment]) -> list[Deployment]:
        health = self.health
        keys = {}
        for d in deployments:
            snap = health.snapshot(d.id)
            usable = snap.usable and any(health.retry_in(k) <= 0.0 for k in d.key_names)
            keys[d.id] = (0 if usable else 1, snap.error_score)
        return sorted(deployments, key=lambda d: keys[d.id])

    def _weighted(self, deployments: Sequence[Deployment]) -> list[Deployment]:
        # Efraimidis-Spirakis: key u**(1/w) sorted descending samples by weight without
        # replacement, so the first candidate is drawn with probability w / sum(w).
        rnd = self._rng.random
        keys = {d.id: rnd() ** (1.0 / d.weight) for d in deployments}
        return sorted(deployments, key=lambda d: keys[d.id], reverse=True)
