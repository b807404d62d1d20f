"""Switchboard's configuration: an optional YAML file validated with pydantic, plus environment.

Everything has a default, so `switchboard serve` runs with no file at all (embedded SQLite,
demo provider, and every provider whose `<NAME>_API_KEY` is set). A bad file names the field
and the CLI exits non-zero (`switchboard check-config`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

StrategyName = Literal["ordered", "cheapest", "fastest", "available", "weighted"]
ProviderKind = Literal["openai_compat", "anthropic", "gemini", "demo"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Strict):
    """Where the gateway listens and keeps its state."""

    host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    data_dir: Path | None = None
    # Seconds a SIGTERM waits for in-flight requests before cancelling them.
    shutdown_grace: float = Field(default=10.0, ge=0)
    # Seconds a connection may take to send a request's headers (HTTP) or to finish its
    # handshake (gRPC); slower ones are closed (slowloris).
    header_timeout: float = Field(default=10.0, gt=0)
    # Seconds a request body may take to arrive in full once its headers are in (HTTP 408).
    body_timeout: float = Field(default=60.0, gt=0)
    # Seconds an idle connection is kept open (HTTP keep-alive; gRPC max_connection_idle).
    idle_timeout: float = Field(default=60.0, gt=0)
    # Connections at most, per transport; past it HTTP answers 503 and gRPC refuses new ones.
    max_connections: int = Field(default=10_000, ge=1)


class ProviderConfig(_Strict):
    """An extra upstream, or overrides for a built-in one (matched by name)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    kind: ProviderKind = "openai_compat"
    base_url: str | None = None
    # Name of the environment variable holding the key (comma-separated for a key pool).
    api_key_env: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)


class PriceConfig(_Strict):
    """US dollars per million tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)
    cache_write: float | None = Field(default=None, ge=0)


class DeploymentConfig(_Strict):
    """A provider plus one upstream model, with its price and optional limits."""

    id: str | None = None
    provider: str
    model: str
    price: PriceConfig | None = None
    weight: float = Field(default=1.0, gt=0)
    # Per-deployment cap on concurrent in-flight requests; None means unlimited. A deployment at
    # its cap is skipped for the next candidate rather than queued.
    max_concurrency: int | None = Field(default=None, gt=0)
    # Per-attempt timeout (seconds until the first byte) overriding `timeouts.attempt`.
    timeout: float | None = Field(default=None, gt=0)
    # Most output tokens one response may hold, for reserving a request without max_tokens
    # against a key's budget and TPM; default: the shipped table, else 32,768.
    max_output_tokens: int | None = Field(default=None, gt=0)

    @property
    def deployment_id(self) -> str:
        return self.id or f"{self.provider}/{self.model}"


class RouteConfig(_Strict):
    """A public model name (alias) served by several deployments under a strategy."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
    strategy: StrategyName = "ordered"
    # Deployment ids (`provider/model` or a DeploymentConfig.id).
    deployments: list[str] = Field(min_length=1)
    description: str = ""


class LimitsConfig(_Strict):
    """Bounds on the work one request may cause, checked before it is decoded or routed."""

    # Largest request body (HTTP, each dialect) or message (gRPC), in bytes; `body_bytes`
    # overrides it per dialect (`openai`, `anthropic`).
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    body_bytes: dict[str, int] = Field(default_factory=dict)
    max_messages: int = Field(default=4096, ge=1)
    # Content parts over all messages (texts, images, tool calls and results).
    max_parts: int = Field(default=16384, ge=1)
    max_tools: int = Field(default=512, ge=0)
    # When the shared limit store (Redis) or key store (PostgreSQL) cannot be reached:
    # `deny` answers 503 STORE_UNAVAILABLE (fail closed); `allow` serves the request without
    # the rate limit, concurrency and budget checks it could not make (fail open).
    on_store_error: Literal["deny", "allow"] = "deny"

    def body_limit(self, dialect: str) -> int:
        """The body size limit of one dialect."""
        return self.body_bytes.get(dialect, self.max_body_bytes)


class TimeoutConfig(_Strict):
    """Seconds. `request` bounds a whole request, retries included, unless the client says."""

    request: float = Field(default=600.0, gt=0)
    # Until an upstream's first byte (non-streamed: the whole response) for one attempt.
    attempt: float = Field(default=120.0, gt=0)
    # A stream that sends nothing for this long counts as stalled.
    stream_idle: float = Field(default=60.0, gt=0)


class RetryConfig(_Strict):
    """Backoff between tries (openai-python style: capped exponential, full jitter)."""

    max_attempts_per_deployment: int = Field(default=2, ge=1, le=10)
    initial_delay: float = Field(default=0.25, ge=0)
    max_delay: float = Field(default=8.0, ge=0)
    # An upstream Retry-After longer than this moves on to the next deployment at once.
    max_retry_after: float = Field(default=10.0, ge=0)
    # How long a key that got a 429 without a Retry-After sits out.
    rate_limit_cooldown: float = Field(default=1.0, ge=0)
    # A later pass over a route's candidates happens only when some were skipped without a
    # call (keys cooling down, circuit open, at capacity) and the first is usable again within
    # `max_retry_after` (which also bounds the waiting between passes in all) and the deadline.
    # A request makes at most max_rounds * max_attempts_per_deployment * (its candidates) calls.
    max_rounds: int = Field(default=2, ge=1, le=5)


class CircuitConfig(_Strict):
    """Circuit breaker per deployment and per key of a pool (opens on either threshold)."""

    consecutive_failures: int = Field(default=5, ge=1)
    # Error rate over roughly the last `window_seconds` (exponentially decayed counts), applied
    # once at least `min_requests` (decayed) requests were seen.
    error_rate: float = Field(default=0.5, gt=0, le=1)
    min_requests: int = Field(default=20, ge=1)
    window_seconds: float = Field(default=30.0, gt=0)
    # Open time before one half-open probe request is let through.
    cooldown_seconds: float = Field(default=15.0, gt=0)


class LoggingConfig(_Strict):
    """Structured JSON request logs."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    requests: bool = True


class TracingConfig(_Strict):
    """OpenTelemetry traces over OTLP (server/observability/tracing.py). Off unless `enabled`
    or the standard `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is set; each
    field left unset falls back to its standard `OTEL_*` variable."""

    enabled: bool = False
    # The collector's base URL (http/protobuf appends /v1/traces), e.g. http://127.0.0.1:4317.
    endpoint: str | None = None
    protocol: Literal["grpc", "http/protobuf"] | None = None
    service_name: str | None = None


class CacheConfig(_Strict):
    """The exact response cache (server/core/cache.py): off unless a route or key is listed."""

    # Route names (or `provider/model`) whose requests are cached; `*` for every route.
    routes: list[str] = Field(default_factory=list)
    # Gateway key ids or names whose requests are cached, whatever their route.
    keys: list[str] = Field(default_factory=list)
    # Seconds an answer is reused.
    ttl: float = Field(default=300.0, gt=0)
    # Bytes of answers kept in memory at most (embedded backend); with Redis, the largest
    # single answer stored (its `maxmemory` bounds the whole).
    max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    # One cache for every key (by default each key reads only its own answers).
    shared: bool = False
    # `memory` (this process) or `redis` (`redis_url`, shared by every gateway process).
    backend: Literal["memory", "redis"] = "memory"
    redis_url: str | None = None
    redis_prefix: str = "switchboard:cache:"

    @property
    def enabled(self) -> bool:
        return bool(self.routes or self.keys)


class StoreConfig(_Strict):
    """Where state lives. Both unset: the embedded backend (SQLite in `server.data_dir`,
    counters in this process; one process only). Both set: the distributed backend
    (PostgreSQL for keys, projects, the ledger and stored responses; Redis for limits,
    budgets, circuit state and notifications), shared by any number of processes and
    replicas. `SWITCHBOARD_DATABASE_URL`, `SWITCHBOARD_DATABASE_SCHEMA` and
    `SWITCHBOARD_REDIS_URL` override these (``store_settings``)."""

    # postgresql://user:password@host:port/database
    database_url: str | None = None
    # The PostgreSQL schema the gateway's tables live in (created if missing).
    database_schema: str = Field(default="switchboard", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    # redis://[:password@]host:port/db
    redis_url: str | None = None
    # Prefix of every Redis key the gateway writes (several gateways may share one Redis).
    redis_prefix: str = Field(default="sb:", pattern=r"^[A-Za-z0-9_:.-]{1,64}$")

    @property
    def distributed(self) -> bool:
        return bool(self.database_url or self.redis_url)


class Config(_Strict):
    """The whole configuration file."""

    server: ServerConfig = ServerConfig()
    providers: list[ProviderConfig] = Field(default_factory=list)
    deployments: list[DeploymentConfig] = Field(default_factory=list)
    routes: list[RouteConfig] = Field(default_factory=list)
    # Model-name aliases: a name clients send → a deployment id (`provider/model`) or a route.
    models: dict[str, str] = Field(default_factory=dict)
    timeouts: TimeoutConfig = TimeoutConfig()
    limits: LimitsConfig = LimitsConfig()
    retry: RetryConfig = RetryConfig()
    circuit: CircuitConfig = CircuitConfig()
    logging: LoggingConfig = LoggingConfig()
    tracing: TracingConfig = TracingConfig()
    cache: CacheConfig = CacheConfig()
    store: StoreConfig = StoreConfig()

    @field_validator("routes")
    @classmethod
    def _unique_routes(cls, routes: list[RouteConfig]) -> list[RouteConfig]:
        names = [r.name for r in routes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate route names: {', '.join(dupes)}")
        return routes

    @field_validator("store")
    @classmethod
    def _store_pair(cls, store: StoreConfig) -> StoreConfig:
        return _check_store_pair(store)

    @field_validator("cache")
    @classmethod
    def _cache_backend(cls, cache: CacheConfig) -> CacheConfig:
        if cache.backend == "redis" and not cache.redis_url:
            raise ValueError("backend redis needs redis_url")
        return cache

    @field_validator("models")
    @classmethod
    def _alias_names(cls, models: dict[str, str]) -> dict[str, str]:
        for name, target in models.items():
            if not name.strip() or not target.strip():
                raise ValueError("an alias and its target must be non-empty")
            if name == target:
                raise ValueError(f"alias '{name}' names itself")
        return models


class ConfigError(Exception):
    """The configuration file is missing, unreadable or invalid; the message names the field."""


def load_config(path: str | Path | None) -> Config:
    """Reads and validates a YAML config file; None gives the defaults."""
    if path is None:
        return Config()
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: the top level must be a mapping")
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(p, exc)) from None


def _describe(path: Path, exc: ValidationError) -> str:
    lines = [f"{path}: invalid configuration"]
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"]) or "(top level)"
        lines.append(f"  {loc}: {err['msg']}")
    return "\n".join(lines)


def _check_store_pair(store: StoreConfig) -> StoreConfig:
    if bool(store.database_url) != bool(store.redis_url):
        missing = "redis_url" if store.database_url else "database_url"
        raise ValueError(
            f"the distributed backend needs both database_url and redis_url ({missing} is "
            "unset); leave both unset for the embedded backend"
        )
    for name, url, schemes in (
        ("database_url", store.database_url, ("postgresql", "postgres")),
        ("redis_url", store.redis_url, ("redis", "rediss", "unix")),
    ):
        if url and url.split("://", 1)[0] not in schemes:
            raise ValueError(f"{name} must start with {' or '.join(s + '://' for s in schemes)}")
    return store


def store_settings(config: Config, env: Mapping[str, str] = os.environ) -> StoreConfig:
    """The store section with `SWITCHBOARD_DATABASE_URL`, `SWITCHBOARD_DATABASE_SCHEMA` and
    `SWITCHBOARD_REDIS_URL` applied over the file; raises ``ConfigError`` when only one of
    the two URLs is set or either is malformed. Every command (serve, keys, usage) opens its
    backend from this, so they all see the same state."""
    overrides = {
        field: env[var]
        for field, var in (
            ("database_url", "SWITCHBOARD_DATABASE_URL"),
            ("database_schema", "SWITCHBOARD_DATABASE_SCHEMA"),
            ("redis_url", "SWITCHBOARD_REDIS_URL"),
        )
        if env.get(var)
    }
    try:
        store = StoreConfig.model_validate({**config.store.model_dump(), **overrides})
        return _check_store_pair(store)
    except (ValidationError, ValueError) as exc:
        detail = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        raise ConfigError(f"store: {detail}") from None


def default_data_dir(env: Mapping[str, str] = os.environ) -> Path:
    """`SWITCHBOARD_DATA_DIR`, else `~/.local/share/switchboard` (XDG)."""
    if env.get("SWITCHBOARD_DATA_DIR"):
        return Path(env["SWITCHBOARD_DATA_DIR"])
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "switchboard"
