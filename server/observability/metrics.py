"""Prometheus metrics for the gateway, rendered by the HTTP shim at `/metrics`.

Each ``Metrics`` owns its own ``CollectorRegistry`` (tests and several gateways in one process
do not collide). Label values come only from bounded sets (house style 11): a route or
deployment label is a name the operator configured or the catalog knows (``known``), anything a
caller made up is ``other``; outcomes and reasons come from the error tree. Without ``known``
at most ``MAX_NAMES`` distinct names are kept before the rest become ``other``.

The values live in plain lists, one per labelled series, and ``prometheus_client`` renders
them at scrape time through a collector (its exposition format, its parser in the tests).
prometheus_client's own Counter and Histogram take a lock per increment and walk the bucket
list in Python per observation; a request records a dozen values, which measured ~10 µs of
CPU per request under load. Here an increment is one list item add and an observation a
``bisect`` plus two adds. Every update runs on the event loop's thread (the executor, the
request observer and the HTTP shim); a scrape runs there too, so no lock is needed.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
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

# One labelled series: a counter's [value]; a histogram's per-bucket counts (the last bucket is
# +Inf), then the sum.
Cell = list[float]


class _Family:
    """A counter or histogram family: its series by label values, rendered at scrape time."""

    __slots__ = ("bounds", "doc", "labels", "name", "series")

    def __init__(
        self, name: str, doc: str, labels: Sequence[str], bounds: Sequence[float] | None = None
    ) -> None:
        self.name = name
        self.doc = doc
        self.labels = list(labels)
        self.bounds = tuple(bounds) if bounds is not None else None
        self.series: dict[tuple[str, ...], Cell] = {}

    def cell(self, *values: str) -> Cell:
        """The series of these label values (created at 0)."""
        cell = self.series.get(values)
        if cell is None:
            size = 1 if self.bounds is None else len(self.bounds) + 2
            cell = self.series[values] = [0.0] * size
        return cell

    def metric(self) -> Metric:
        if self.bounds is None:
            counter = CounterMetricFamily(self.name, self.doc, labels=self.labels)
            for values, cell in self.series.items():
                counter.add_metric(list(values), cell[0])
            return counter
        histogram = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        edges = [floatToGoString(b) for b in self.bounds] + ["+Inf"]
        for values, cell in self.series.items():
            total = 0.0
            buckets = []
            for edge, count in zip(edges, cell, strict=False):
                total += count
                buckets.append((edge, total))
            histogram.add_metric(list(values), buckets, cell[-1])
        return histogram


def observe(cell: Cell, bounds: tuple[float, ...], value: float) -> None:
    """One histogram observation (Prometheus ``le``: a value equal to a bound is in it)."""
    cell[bisect_left(bounds, value)] += 1
    cell[-1] += value


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
        self._requests = _Family(
            f"{p}_requests",
            "Requests by route, serving deployment and outcome (success or error reason).",
            ["route", "deployment", "outcome"],
        )
        self._latency = _Family(
            f"{p}_request_duration_seconds",
            "Whole-request latency as the gateway saw it, retries included.",
            ["route", "stream"],
            _LATENCY_BUCKETS,
        )
        self._ttft = _Family(
            f"{p}_time_to_first_token_seconds",
            "Time from request start to the first streamed chunk.",
            ["route", "deployment"],
            _LATENCY_BUCKETS,
        )
        self._tokens = _Family(
            f"{p}_tokens",
            "Tokens billed, by kind (input includes cached and cache-write tokens).",
            ["route", "deployment", "kind"],
        )
        self._cost = _Family(
            f"{p}_cost_usd",
            "Cost in US dollars at the deployment's prices.",
            ["route", "deployment"],
        )
        self._upstream_errors = _Family(
            f"{p}_upstream_errors",
            "Failed or skipped upstream attempts by deployment and reason.",
            ["deployment", "reason"],
        )
        self._fallbacks = _Family(
            f"{p}_fallbacks",
            "Moves to a later candidate deployment after a failure or skip.",
            ["route"],
        )
        self._retries = _Family(
            f"{p}_retries",
            "Retries of the same deployment (after backoff, Retry-After or on another key).",
            ["deployment"],
        )
        self._attempts = _Family(
            f"{p}_attempts_per_request",
            "Upstream attempts (including skipped candidates) per request.",
            ["route"],
            _ATTEMPT_BUCKETS,
        )
        self._http_requests = _Family(
            f"{p}_http_requests",
            "HTTP requests by method, route path and status (the shim's view).",
            ["method", "route", "status"],
        )
        self._http_latency = _Family(
            f"{p}_http_request_duration_seconds",
            "HTTP request latency by route path, as the shim measured it.",
            ["route"],
            _LATENCY_BUCKETS,
        )
        self._cache = _Family(
            f"{p}_cache_lookups",
            "Response cache lookups by route and result (hit, miss, skip).",
            ["route", "result"],
        )
        families = [
            self._cache,
            self._requests,
            self._latency,
            self._ttft,
            self._tokens,
            self._cost,
            self._upstream_errors,
            self._fallbacks,
            self._retries,
            self._attempts,
            self._http_requests,
            self._http_latency,
        ]
        self.registry.register(_Families(families))
        self._prefix = p
        # The cells per (route, deployment, stream), so a request costs one lookup.
        self._bundles: dict[tuple[str, str, bool], _Bundle] = {}
        self._http: dict[tuple[str, str, int], tuple[Cell, Cell]] = {}
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
        key = (route, deployment, stream)
        b = self._bundles.get(key)
        if b is None:
            b = self._bundle(route, deployment, stream)
        counter = b.outcomes.get(outcome)
        if counter is None:
            counter = b.outcomes[outcome] = self._requests.cell(b.route, b.deployment, outcome)
        counter[0] += 1
        observe(b.latency, _LATENCY_BUCKETS, latency)
        if attempts:
            observe(b.attempts, _ATTEMPT_BUCKETS, attempts)
        if ttft is not None:
            observe(b.ttft, _LATENCY_BUCKETS, ttft)
        if usage is not None:
            if usage.input_tokens:
                b.input_tokens[0] += usage.input_tokens
            if usage.output_tokens:
                b.output_tokens[0] += usage.output_tokens
            if usage.cached_input_tokens:
                b.cached_tokens[0] += usage.cached_input_tokens
            if usage.cache_write_input_tokens:
                b.cache_write_tokens[0] += usage.cache_write_input_tokens
        if cost_usd:
            b.cost[0] += cost_usd

    def _bundle(self, route: str, deployment: str, stream: bool) -> _Bundle:
        # Keyed by the names as given; labelled by their bounded form. Names a caller made up
        # all share the one `other` bundle, so the dict stays as small as the label set.
        route_label, deployment_label = self.label(route), self.label(deployment)
        shared = (route_label, deployment_label, stream)
        b = self._bundles.get(shared)
        if b is None:
            b = self._bundles[shared] = _Bundle(self, route_label, deployment_label, stream)
        if route_label == route and deployment_label == deployment:
            return b
        if len(self._bundles) < 4 * MAX_NAMES:
            self._bundles[(route, deployment, stream)] = b
        return b

    def observe_http(self, method: str, route: str, status: int, seconds: float) -> None:
        """One finished HTTP request (``server.http_shim.app.HttpMetrics``)."""
        key = (method, route, status)
        cells = self._http.get(key)
        if cells is None:
            cells = self._http[key] = (
                self._http_requests.cell(method, route, str(status)),
                self._http_latency.cell(route),
            )
        cells[0][0] += 1
        observe(cells[1], _LATENCY_BUCKETS, seconds)

    def upstream_error(self, deployment: str, reason: str) -> None:
        """A failed (or skipped) attempt."""
        self._upstream_errors.cell(self.label(deployment), reason)[0] += 1

    def fallback(self, route: str) -> None:
        """The executor moved on to the next candidate."""
        self._fallbacks.cell(self.label(route))[0] += 1

    def cache(self, route: str, result: str) -> None:
        """The response cache answered (hit), missed or was skipped for a request."""
        self._cache.cell(self.label(route), result)[0] += 1

    def retry(self, deployment: str) -> None:
        """The executor tries the same deployment again."""
        self._retries.cell(self.label(deployment))[0] += 1

    def watch_health(self, health: HealthStore) -> None:
        """Exports `<prefix>_circuit_state{name}` (0 closed, 1 half-open, 2 open) at scrape time."""
        if self._health_collector is None:
            self._health_collector = _CircuitCollector(
                self._prefix, lambda: health.states(), self._keeps
            )
            self.registry.register(self._health_collector)
        else:
            self._health_collector.source = lambda: health.states()

    def watch_store(self, store: str, stats: Callable[[], tuple[int, int, int]]) -> None:
        """Exports a shared store's client figures at scrape time:
        `<prefix>_store_round_trips_total{store}` (network round trips; a pipeline is one),
        `<prefix>_store_queued{store}` (updates waiting to be sent) and
        `<prefix>_store_dropped_total{store}` (updates dropped while it was unreachable)."""
        self.registry.register(_StoreCollector(self._prefix, store, stats))

    def _keeps(self, name: str) -> bool:
        # A pool key's circuit is `<deployment>#<index>`: kept when its deployment is.
        return self.label(name.partition("#")[0]) != OTHER

    # --- exposition -----------------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type, for `GET /metrics`."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


_ATTEMPT_BUCKETS = (1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0)


class _Bundle:
    """The cells one (route, deployment, stream) records into."""

    __slots__ = (
        "attempts",
        "cache_write_tokens",
        "cached_tokens",
        "cost",
        "deployment",
        "input_tokens",
        "latency",
        "outcomes",
        "output_tokens",
        "route",
        "ttft",
    )

    def __init__(self, m: Metrics, route: str, deployment: str, stream: bool) -> None:
        self.route = route
        self.deployment = deployment
        self.outcomes: dict[str, Cell] = {}
        self.latency = m._latency.cell(route, "true" if stream else "false")
        self.attempts = m._attempts.cell(route)
        self.ttft = m._ttft.cell(route, deployment)
        self.input_tokens = m._tokens.cell(route, deployment, "input")
        self.output_tokens = m._tokens.cell(route, deployment, "output")
        self.cached_tokens = m._tokens.cell(route, deployment, "cached_input")
        self.cache_write_tokens = m._tokens.cell(route, deployment, "cache_write")
        self.cost = m._cost.cell(route, deployment)


class _Families(Collector):
    """Renders the recorded families at scrape time."""

    def __init__(self, families: list[_Family]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        for family in self.families:
            yield family.metric()

    def describe(self) -> Iterator[Metric]:
        # Unchecked collector: its series are only known at scrape time.
        return iter(())


class _StoreCollector(Collector):
    def __init__(self, prefix: str, store: str, stats: Callable[[], tuple[int, int, int]]) -> None:
        self.prefix = prefix
        self.store = store
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        round_trips, queued, dropped = self.stats()
        for name, kind, doc, value in (
            ("store_round_trips", CounterMetricFamily, "Network round trips", round_trips),
            ("store_queued", GaugeMetricFamily, "Updates waiting to be sent", queued),
            ("store_dropped", CounterMetricFamily, "Updates dropped (store down)", dropped),
        ):
            family = kind(
                f"{self.prefix}_{name}", f"{doc} to a shared state store.", labels=["store"]
            )
            family.add_metric([self.store], float(value))
            yield family

    def describe(self) -> Iterator[Metric]:
        return iter(())


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
