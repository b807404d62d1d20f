"""Prometheus metrics for the gateway, rendered by the HTTP shim at `/metrics`.

Each ``Metrics`` owns its own ``CollectorRegistry`` (tests and several gateways in one process
do not collide). Label values come only from bounded sets (house style 11): a route or
deployment label is a name the operator configured or the catalog knows (``known``), anything a
caller made up is ``other``; outcomes and reasons come from the error tree. Without ``known``
at most ``MAX_NAMES`` distinct names are kept before the rest become ``other``. Labelled children
are cached so recording a request is a few dict lookups and counter increments.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from switchboard.v1 import types_pb2

from server.core.state import HealthStore

_LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)


# The label every route or deployment name outside the bounded set records under.
OTHER = "other"
# Distinct names kept when no known set is given.
MAX_NAMES = 256


class Metrics:
    """Counters and histograms the executor and the Gateway record into."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        prefix: str = "switchboard",
        known: Iterable[str] | None = None,
    ):
        self.registry = registry if registry is not None else CollectorRegistry()
        # Names that may be label values (routes, deployments); None: the first MAX_NAMES.
        self._known: set[str] | None = None if known is None else set(known)
        self._seen: set[str] = set()
        p = prefix
        r = self.registry
        self._requests = Counter(
            f"{p}_requests",
            "Requests by route, serving deployment and outcome (success or error reason).",
            ["route", "deployment", "outcome"],
            registry=r,
        )
        self._latency = Histogram(
            f"{p}_request_duration_seconds",
            "Whole-request latency as the gateway saw it, retries included.",
            ["route", "stream"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self._ttft = Histogram(
            f"{p}_time_to_first_token_seconds",
            "Time from request start to the first streamed chunk.",
            ["route", "deployment"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self._tokens = Counter(
            f"{p}_tokens",
            "Tokens billed, by kind (input includes cached and cache-write tokens).",
            ["route", "deployment", "kind"],
            registry=r,
        )
        self._cost = Counter(
            f"{p}_cost_usd",
            "Cost in US dollars at the deployment's prices.",
            ["route", "deployment"],
            registry=r,
        )
        self._upstream_errors = Counter(
            f"{p}_upstream_errors",
            "Failed or skipped upstream attempts by deployment and reason.",
            ["deployment", "reason"],
            registry=r,
        )
        self._fallbacks = Counter(
            f"{p}_fallbacks",
            "Moves to a later candidate deployment after a failure or skip.",
            ["route"],
            registry=r,
        )
        self._retries = Counter(
            f"{p}_retries",
            "Retries of the same deployment (after backoff, Retry-After or on another key).",
            ["deployment"],
            registry=r,
        )
        self._attempts = Histogram(
            f"{p}_attempts_per_request",
            "Upstream attempts (including skipped candidates) per request.",
            ["route"],
            buckets=(1, 2, 3, 4, 6, 8, 12),
            registry=r,
        )
        self._http_requests = Counter(
            f"{p}_http_requests",
            "HTTP requests by method, route path and status (the shim's view).",
            ["method", "route", "status"],
            registry=r,
        )
        self._http_latency = Histogram(
            f"{p}_http_request_duration_seconds",
            "HTTP request latency by route path, as the shim measured it.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self._prefix = p
        self._children: dict[tuple[Any, ...], Any] = {}
        # Labelled children per (route, deployment, stream), so a request costs one lookup.
        self._bundles: dict[tuple[str, str, bool], _Bundle] = {}
        self._health_collector: _CircuitCollector | None = None

    # --- recording ------------------------------------------------------------------------

    def know(self, names: Iterable[str]) -> None:
        """Adds names (configured routes and deployments) that may be label values."""
        if self._known is None:
            self._known = set()
        self._known.update(names)

    def label(self, name: str) -> str:
        """``name`` when it is in the bounded set, else ``other``."""
        known = self._known
        if known is not None:
            return name if name in known or not name else OTHER
        if name in self._seen:
            return name
        if len(self._seen) < MAX_NAMES:
            self._seen.add(name)
            return name
        return OTHER

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def request(
        self,
        *,
        route: str,
        deployment: str,
        outcome: str,
        stream: bool,
        latency: float,
        ttft: float | None,
        attempts: int,
        usage: types_pb2.Usage | None,
        cost_usd: float,
    ) -> None:
        """One finished request (successful, failed or cancelled)."""
        route = self.label(route)
        deployment = self.label(deployment)
        key = (route, deployment, stream)
        b = self._bundles.get(key)
        if b is None:
            b = self._bundles[key] = _Bundle(self, route, deployment, stream)
        counter = b.outcomes.get(outcome)
        if counter is None:
            counter = b.outcomes[outcome] = self._requests.labels(route, deployment, outcome)
        counter.inc()
        b.latency.observe(latency)
        if attempts:
            b.attempts.observe(attempts)
        if ttft is not None:
            b.ttft.observe(ttft)
        if usage is not None:
            if usage.input_tokens:
                b.input_tokens.inc(usage.input_tokens)
            if usage.output_tokens:
                b.output_tokens.inc(usage.output_tokens)
            if usage.cached_input_tokens:
                b.cached_tokens.inc(usage.cached_input_tokens)
            if usage.cache_write_input_tokens:
                b.cache_write_tokens.inc(usage.cache_write_input_tokens)
        if cost_usd:
            b.cost.inc(cost_usd)

    def observe_http(self, method: str, route: str, status: int, seconds: float) -> None:
        """One finished HTTP request (``server.http_shim.app.HttpMetrics``)."""
        c = self._child
        c(self._http_requests, method, route, str(status)).inc()
        c(self._http_latency, route).observe(seconds)

    def upstream_error(self, deployment: str, reason: str) -> None:
        """A failed (or skipped) attempt."""
        self._child(self._upstream_errors, self.label(deployment), reason).inc()

    def fallback(self, route: str) -> None:
        """The executor moved on to the next candidate."""
        self._child(self._fallbacks, self.label(route)).inc()

    def retry(self, deployment: str) -> None:
        """The executor tries the same deployment again."""
        self._child(self._retries, self.label(deployment)).inc()

    def watch_health(self, health: HealthStore) -> None:
        """Exports `<prefix>_circuit_state{name}` (0 closed, 1 half-open, 2 open) at scrape time."""
        if self._health_collector is None:
            self._health_collector = _CircuitCollector(
                self._prefix, lambda: health.states(), self._keeps
            )
            self.registry.register(self._health_collector)
        else:
            self._health_collector.source = lambda: health.states()

    def _keeps(self, name: str) -> bool:
        # A pool key's circuit is `<deployment>#<index>`: kept when its deployment is.
        return self.label(name.partition("#")[0]) != OTHER

    # --- exposition -----------------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type, for `GET /metrics`."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _Bundle:
    """The labelled children one (route, deployment, stream) records into."""

    __slots__ = (
        "attempts",
        "cache_write_tokens",
        "cached_tokens",
        "cost",
        "input_tokens",
        "latency",
        "outcomes",
        "output_tokens",
        "ttft",
    )

    def __init__(self, m: Metrics, route: str, deployment: str, stream: bool) -> None:
        self.outcomes: dict[str, Any] = {}
        self.latency = m._latency.labels(route, "true" if stream else "false")
        self.attempts = m._attempts.labels(route)
        self.ttft = m._ttft.labels(route, deployment)
        self.input_tokens = m._tokens.labels(route, deployment, "input")
        self.output_tokens = m._tokens.labels(route, deployment, "output")
        self.cached_tokens = m._tokens.labels(route, deployment, "cached_input")
        self.cache_write_tokens = m._tokens.labels(route, deployment, "cache_write")
        self.cost = m._cost.labels(route, deployment)


class _CircuitCollector(Collector):
    def __init__(
        self,
        prefix: str,
        source: Callable[[], Iterator[tuple[str, Any]]],
        keeps: Callable[[str], bool],
    ) -> None:
        self.prefix = prefix
        self.source = source
        self.keeps = keeps

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            f"{self.prefix}_circuit_state",
            "Circuit breaker state per deployment or pool key (0 closed, 1 half-open, 2 open).",
            labels=["name"],
        )
        keeps = self.keeps
        for name, state in self.source():
            # Circuits of names callers made up (direct `provider/model`s) are not exported.
            if keeps(name):
                family.add_metric([name], float(int(state)))
        yield family

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Unchecked collector: its label values are only known at scrape time.
        return iter(())
