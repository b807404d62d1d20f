"""The state seams: every piece of state the gateway keeps, as one protocol each.

Backends live in ``server/store/``: ``embedded`` (SQLite files plus in-process counters, one
process, nothing to install) and ``distributed`` (PostgreSQL + Redis, any number of processes
and replicas). Each backend passes the one conformance suite in ``tests/conformance/stores``.

The request path calls three of them:

- ``KeyStore.lookup`` at the edge (every request), to turn a secret into a ``Principal``;
- ``RateLimiter.acquire`` and ``BudgetStore.reserve`` at admission, which may wait on a shared
  store, so they are awaited;
- ``RateLimiter.reconcile``, ``BudgetStore.settle`` and ``UsageSink.record`` when a request
  ends. These never block the request: the embedded backend applies them at once; a networked
  one queues them and applies them in order in the background (``aclose`` drains the queue).

``ResponseStore`` is read when a request continues a stored response and written when one is
stored, both awaited on the request path (a stored response must exist once its id is out).

The executor reads and writes ``HealthStore`` several times per attempt, so it is synchronous;
a shared implementation keeps a local copy and replicates transitions.
"""

from __future__ import annotations

import builtins
import dataclasses
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple, Protocol

from switchboard.v1 import admin_pb2, chat_pb2

from server.core.context import KeyLimits, Principal
from server.core.money import nanos_to_usd

# --- gateway keys and projects -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeySpec:
    """What a new key is created with (checked by ``server.policy.keys.check_key_spec``)."""

    name: str
    limits: KeyLimits = dataclasses.field(default_factory=KeyLimits)
    # Lower-case letters and digits, shown in the secret's prefix (`sb-<env>-...`); "" for none.
    env: str = ""
    # Model or route names (`*` globs) the key may use; empty means any.
    allowed_models: tuple[str, ...] = ()
    max_concurrent: int | None = None
    # Unix seconds; None means never.
    expires_at: float | None = None
    # An existing project's id (``NotFoundError`` otherwise), or None.
    project_id: str | None = None


@dataclass(frozen=True, slots=True)
class KeyUpdate:
    """Changes to a key. None leaves a field as it is; to clear one, pass its "none" value:
    ``KeyLimits()`` (unlimited), ``()`` (any model), 0 for ``max_concurrent`` (unlimited),
    0.0 for ``expires_at`` (never), "" for ``project_id`` (no project)."""

    name: str | None = None
    limits: KeyLimits | None = None
    allowed_models: tuple[str, ...] | None = None
    max_concurrent: int | None = None
    expires_at: float | None = None
    project_id: str | None = None


class KeyStore(Protocol):
    """Gateway keys and their projects, stored hashed; ``lookup`` is on the hot path and is
    served from a cache.

    A key's id never changes: rotation gives it a new secret, so its limits, budget state and
    ledger rows carry on. Projects live here too because a key's ``Principal`` carries its
    project's limits: a project change must reach cached principals exactly as a key change
    does."""

    async def lookup(self, secret: str) -> Principal | None:
        """The principal of an active key, or None for an unknown, revoked or expired one, or
        for a secret replaced by ``rotate`` whose grace has ended. Expiry and grace are
        compared with the wall clock at each lookup, so a cached entry never outlives them."""
        ...

    async def create(
        self, name: str | KeySpec, limits: KeyLimits | None = None
    ) -> tuple[admin_pb2.GatewayKey, str]:
        """A new key and its secret; the secret is returned only here. ``create(name, limits)``
        is ``create(KeySpec(name, limits))``."""
        ...

    async def update(self, key_id: str, changes: KeyUpdate) -> admin_pb2.GatewayKey:
        """Applies ``changes`` (``KeyUpdate``); ``NotFoundError`` for an unknown key or
        project id, ``InvalidRequestError`` for invalid values. A revoked key may be updated
        but stays revoked."""
        ...

    async def rotate(
        self, key_id: str, grace_seconds: float = 0.0
    ) -> tuple[admin_pb2.GatewayKey, str]:
        """A new secret for the key (same id); the current secret keeps working for
        ``grace_seconds`` (0: stops at once), then lookup refuses it. ``NotFoundError`` for an
        unknown id, ``FailedPreconditionError`` for a revoked key."""
        ...

    async def get(self, key_id: str) -> admin_pb2.GatewayKey | None:
        """One key by id, revoked or not."""
        ...

    async def list(self, *, include_revoked: bool = False) -> list[admin_pb2.GatewayKey]:
        """Keys, oldest first."""
        ...

    async def revoke(self, key_id: str) -> admin_pb2.GatewayKey:
        """Revokes a key and every secret it has (idempotent); ``NotFoundError`` for an unknown
        id."""
        ...

    async def create_project(self, name: str, limits: KeyLimits | None = None) -> admin_pb2.Project:
        """A new project (id ``proj_<hex>``) with shared limits (``None`` fields: unlimited)."""
        ...

    async def get_project(self, project_id: str) -> admin_pb2.Project | None:
        """One project by id."""
        ...

    async def list_projects(self) -> builtins.list[admin_pb2.Project]:
        """Projects, oldest first."""
        ...

    async def update_project(
        self, project_id: str, *, name: str | None = None, limits: KeyLimits | None = None
    ) -> admin_pb2.Project:
        """Renames a project and/or replaces its limits (None: unchanged); ``NotFoundError``
        for an unknown id. Principals of its keys carry the new limits from the next lookup."""
        ...

    async def aclose(self) -> None:
        """Releases connections."""
        ...


# --- rate limits and budgets ------------------------------------------------------------------


class RateLimiter(Protocol):
    """Requests-per-minute and tokens-per-minute buckets, and concurrent-request counters, per
    name: a key id, or ``project_name(id)`` for a project's shared limits."""

    async def acquire(self, key_id: str, rpm: int | None, tpm: int | None, tokens: int) -> int:
        """Counts one request and reserves ``tokens``; returns the tokens reserved. Raises
        ``RateLimitedError`` (nothing taken) with ``retry_after`` and quota violations."""
        ...

    def reconcile(self, key_id: str, reserved: int, actual: int) -> None:
        """Replaces a reservation of ``reserved`` tokens by the ``actual`` count."""
        ...

    def refund(self, key_id: str, requests: int, tokens: int) -> None:
        """Gives back ``requests`` and ``tokens`` that ``acquire`` took for a call a later
        limit then refused (the key's were taken, the project's refused): nothing leaks."""
        ...

    async def enter(self, name: str, limit: int) -> None:
        """Takes one of ``limit`` concurrent-request slots of ``name`` for a whole call (stream
        included). Raises ``RateLimitedError`` (nothing taken, ``retry_after`` set) when all
        ``limit`` are held."""
        ...

    def leave(self, name: str) -> None:
        """Gives back a slot taken by ``enter`` (the caller does so exactly once; never
        blocks: a networked backend applies it in the background, like ``reconcile``)."""
        ...


class BudgetStore(Protocol):
    """Month-to-date spend and in-flight reservations per name (a key id, or
    ``project_name(id)`` for a project's shared budget), in integer nano-USD."""

    async def reserve(self, key_id: str, limit: int, estimate: int) -> int:
        """Reserves ``estimate`` against a monthly ``limit``; returns what was reserved. Raises
        ``BudgetExceededError`` when spend plus reservations plus this estimate would pass it."""
        ...

    def settle(self, key_id: str, reserved: int, actual: int) -> None:
        """Releases a reservation and adds the actual cost to this month's spend."""
        ...

    async def spent(self, key_id: str) -> int:
        """Settled spend of this key in the current month."""
        ...


# --- the usage ledger ---------------------------------------------------------------------------


class UsageRow(NamedTuple):
    """One request in the ledger (the ``usage`` table's columns after ``id``)."""

    time: float
    request_id: str
    key_id: str
    transport: str
    # As the caller asked (a route name or `provider/model`); route is what it resolved to.
    model: str
    route: str
    provider: str
    upstream_model: str
    deployment: str
    stream: bool
    # "success", "cancelled", or the error's reason (RATE_LIMITED, UPSTREAM_TIMEOUT, ...).
    outcome: str
    status: int
    attempts: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    input_nanousd: int
    output_nanousd: int
    cached_input_nanousd: int
    cache_write_nanousd: int
    total_nanousd: int
    latency_ms: float
    # Unique per row, so a row written twice (a journal replayed after a crash) counts once.
    row_id: str | None = None
    # The key's project when the request was made (its budget is charged); None for none.
    project_id: str | None = None


class _Totals:
    """What every totals row prints (its dataclass fields end in ``total_nanousd``)."""

    __slots__ = ()
    total_nanousd: int

    def to_json(self) -> dict[str, object]:
        """Every field, plus ``cost_usd`` (the total as a float, for display)."""
        out: dict[str, object] = dataclasses.asdict(self)  # type: ignore[call-overload]
        out["cost_usd"] = nanos_to_usd(self.total_nanousd)
        return out


@dataclass(frozen=True, slots=True)
class KeyTotals(_Totals):
    """One key's usage over a month (what ``switchboard usage`` prints)."""

    key_id: str
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    input_nanousd: int
    output_nanousd: int
    cached_input_nanousd: int
    cache_write_nanousd: int
    total_nanousd: int


# What ``UsageReader.usage_by`` groups by: the ledger column, or the UTC day of ``time``.
USAGE_GROUPS = ("key", "project", "model", "provider", "day")


@dataclass(frozen=True, slots=True)
class UsageTotals(_Totals):
    """The totals of one group of ledger rows (``UsageReader.usage_by``)."""

    # The key id, project id ("" for rows without one), model as the caller named it,
    # provider, or UTC day as YYYY-MM-DD.
    group: str
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    input_nanousd: int
    output_nanousd: int
    cached_input_nanousd: int
    cache_write_nanousd: int
    total_nanousd: int


class UsageSink(Protocol):
    """Where ledger rows go: buffered, written in batches, never lost on a graceful stop."""

    def record(self, row: UsageRow) -> None:
        """Buffers one row (no I/O on the request path)."""
        ...

    async def flush(self) -> None:
        """Writes every buffered row now."""
        ...

    async def aclose(self) -> None:
        """Writes everything buffered and releases the store."""
        ...


class UsageReader(Protocol):
    """Queries over the ledger (the CLI's ``usage``, budgets at startup)."""

    async def month_spend(self, start: float, end: float) -> dict[str, int]:
        """Total cost of the rows in [start, end), nano-USD, per budget name: per key id, and
        per ``project_name(id)`` for rows that carry a project (what ``BudgetStore`` starts
        from)."""
        ...

    async def usage_by(
        self,
        group: str,
        start: float,
        end: float,
        *,
        key_id: str | None = None,
        project_id: str | None = None,
    ) -> list[UsageTotals]:
        """Totals of the rows in [start, end) grouped by one of ``USAGE_GROUPS`` (only one
        key's / project's rows when given): highest cost first (ties by group), except by
        ``day``: oldest first. Errors count rows whose outcome is not ``success``."""
        ...

    async def month_totals(
        self, year: int, month: int, *, key_id: str | None = None
    ) -> list[KeyTotals]:
        """Per-key totals of one UTC month, highest cost first."""
        ...

    async def rows(self, start: float, end: float, *, limit: int) -> list[UsageRow]:
        """The newest ``limit`` rows with a time in [start, end), newest first (the
        dashboard's recent requests and its charts)."""
        ...


# --- deployment and key health ------------------------------------------------------------------


class CircuitState(IntEnum):
    """Circuit breaker states; the values are what the `circuit_state` gauge reports."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    """What the router needs to rank one name."""

    state: CircuitState
    # Seconds until the name may be tried again (open circuit or key cooldown); 0 when ready.
    retry_in: float
    # Recent error rate, shrunk towards 0 when there are few or old samples.
    error_score: float
    # Moving averages in seconds; None until measured.
    ttft: float | None
    latency: float | None

    @property
    def usable(self) -> bool:
        return self.retry_in <= 0.0


class HealthStore(Protocol):
    """Circuit state, cooldowns and latency averages per deployment / pool key.

    Names are opaque: a deployment id, or ``<deployment id>#<key index>`` for one key of a pool
    (never the key itself)."""

    def acquire(self, name: str) -> bool:
        """May `name` be tried now? Claims the single half-open probe when one is due."""
        ...

    def release(self, name: str) -> None:
        """Gives back a probe claimed by ``acquire`` that was not used (cancelled, skipped)."""
        ...

    def record_success(
        self, name: str, latency: float | None = None, ttft: float | None = None
    ) -> None:
        """A successful call; `latency`/`ttft` (seconds) feed the moving averages."""
        ...

    def record_failure(self, name: str, *, trip: bool = False) -> None:
        """A failed call that counts against the circuit; `trip` opens it at once."""
        ...

    def cool(self, name: str, seconds: float) -> None:
        """Keeps `name` out of use for `seconds` (a 429 on a key) without touching its circuit."""
        ...

    def retry_in(self, name: str) -> float:
        """Seconds until `name` is usable again; 0 when it is."""
        ...

    def snapshot(self, name: str) -> HealthSnapshot:
        """Read-only view for ranking."""
        ...

    def states(self) -> Iterator[tuple[str, CircuitState]]:
        """Every tracked name's circuit state (for the metrics gauge)."""
        ...


# --- stored responses (Responses API state) ----------------------------------------------------


class ResponseStore(Protocol):
    """Responses kept by requests with ``store`` (``previous_response_id`` continues them),
    scoped to the key that made them: a response of another key is not found, exactly like an
    unknown id."""

    async def put(self, key_id: str, response: chat_pb2.StoredResponse) -> None:
        """Keeps ``response`` under its id for ``key_id`` (ids are unique; never overwritten)."""
        ...

    async def get(self, key_id: str, response_id: str) -> chat_pb2.StoredResponse | None:
        """The response of ``key_id`` with this id, or None."""
        ...

    async def delete(self, key_id: str, response_id: str) -> bool:
        """Deletes the response of ``key_id`` with this id; False when there was none."""
        ...

    async def aclose(self) -> None:
        """Releases connections."""
        ...


# --- one backend -------------------------------------------------------------------------------


class Ledger(UsageSink, UsageReader, Protocol):
    """A ledger is written by the policy and read by the CLI and the budgets."""


@dataclass(slots=True)
class Stores:
    """Every state seam of one backend, as the composition root wires them."""

    keys: KeyStore
    limiter: RateLimiter
    budgets: BudgetStore
    ledger: Ledger
    health: HealthStore
    # None: this backend keeps no responses (stateful Responses API requests are refused).
    responses: ResponseStore | None = None
    # Run last by ``aclose``, in order: what else the backend opened (a Redis client whose
    # queue of reconciliations must drain, a connection pool).
    closers: list[Callable[[], Awaitable[None]]] = dataclasses.field(default_factory=list)
    # A networked limit store's client figures for /metrics: (round trips, updates queued,
    # updates dropped while it was unreachable); None when there is none (embedded).
    limit_store_stats: Callable[[], tuple[int, int, int]] | None = None

    def problems(self) -> list[str]:
        """What is degraded now, for ``/healthz`` (a shared store that cannot be reached,
        ledger rows waiting for the database); empty when all is well. A backend part reports
        through an optional ``problems()`` method of its own."""
        found: dict[str, None] = {}
        for part in (self.keys, self.limiter, self.budgets, self.ledger, self.health):
            check = getattr(part, "problems", None)
            if check is not None:
                found.update(dict.fromkeys(check()))
        if self.responses is not None and (check := getattr(self.responses, "problems", None)):
            found.update(dict.fromkeys(check()))
        return list(found)

    async def aclose(self) -> None:
        """Drains the ledger (every accepted request's row written), then closes the keys and
        the response store."""
        await self.ledger.aclose()
        await self.keys.aclose()
        if self.responses is not None:
            await self.responses.aclose()
        for close in self.closers:
            await close()
