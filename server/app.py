"""The gateway process: builds every component from Config + environment and serves gRPC and
HTTP from one event loop (uvloop), both transports calling the same ``Gateway``.

Startup binds both ports before serving anything, so a taken port is a clear error rather than
half a gateway. When bound, the actual ports go to ``<data_dir>/ports.json`` (``{"pid",
"host", "grpc_port", "http_port"}``), which is how ``--grpc-port 0 --http-port 0`` callers
(tests) learn them. SIGTERM/SIGINT stop both servers gracefully (health NOT_SERVING, in-flight
calls get ``server.shutdown_grace`` seconds), then the usage ledger writes every buffered row,
and the shared upstream HTTP client and the key store are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import shlex
import shutil
import signal
import socket
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import orjson

from server.checks import disabled_providers, provider_problems
from server.config import CacheConfig, Config, ConfigError, default_data_dir
from server.core import secrets
from server.core.cache import CachePolicy, ResponseCache
from server.core.service import Gateway
from server.core.state import Stores
from server.core.validate import RequestBounds
from server.grpc_api.server import GrpcServer
from server.http_shim import create_app
from server.http_shim.admin_api import AdminApi
from server.http_shim.app import Route
from server.http_shim.protocol import guarded_protocol
from server.observability.metrics import Metrics
from server.observability.requests import RequestObserver
from server.observability.tracing import Tracing, build_tracing
from server.policy.admission import UsagePolicy
from server.policy.fail_open import fail_open
from server.policy.keys import MasterKey, load_master_key
from server.providers.http_client import close_http_client
from server.providers.registry import KNOWN_PROVIDERS, ExtraEndpoint, build_providers
from server.resilience.executor import Executor
from server.routing.catalog import Catalog, ProviderEntryLike
from server.routing.router import Router
from server.store.embedded.backend import open_embedded
from server.store.embedded.cache import MemoryCache
from server.store.embedded.sqlite import ensure_data_dir
from server.store.open import open_stores
from server.ui import Dashboard
from server.ui.timings import RecentTimings

log = logging.getLogger("switchboard")

PORTS_FILENAME = "ports.json"
# Set by `serve --workers N`'s supervisor in each worker's environment (server/supervisor.py).
WORKER_ENV = "SWITCHBOARD_WORKER"


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """Where to listen and keep state: the config file's ``server`` section after CLI overrides."""

    config: Config
    data_dir: Path
    host: str
    http_port: int
    grpc_port: int
    # Set in a worker of `serve --workers N` (server/supervisor.py): its index. The worker
    # shares its ports with the others (SO_REUSEPORT), leaves ports.json and the banner to
    # the supervisor, and says it is ready in its own file instead.
    worker: int | None = None


@dataclass(frozen=True, slots=True)
class BoundPorts:
    """What the running gateway actually listens on (mirrors ``ports.json``)."""

    pid: int
    host: str
    grpc_port: int
    http_port: int

    @property
    def grpc_target(self) -> str:
        return f"{_connect_host(self.host)}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{_connect_host(self.host)}:{self.http_port}"


@dataclass(slots=True)
class Components:
    """Everything built from Config + environment, before any port is bound."""

    gateway: Gateway
    stores: Stores
    master_key: MasterKey
    catalog: Catalog
    providers: Mapping[str, ProviderEntryLike] = field(repr=False)
    metrics: Metrics | None = None
    tracing: Tracing | None = None
    timings: RecentTimings | None = None


def build_components(
    config: Config, env: Mapping[str, str], data_dir: Path, stores: Stores | None = None
) -> Components:
    """Providers (from the registry), catalog, stores, router, executor and the Gateway.

    ``stores`` is the opened backend (``server.store.open.open_stores``); None opens the
    embedded one over ``data_dir``.

    The router and the executor share one health store (circuit state, latency), so strategies
    see what the executor records; one ``Metrics`` collects for ``/metrics``; the usage policy
    admits requests and, with the observer, takes every finished one.
    """
    problems = provider_problems(config, env)
    if problems.errors:
        raise ConfigError("\n".join(problems.errors))
    for warning in problems.warnings:
        log.warning("%s", warning)
    provider_env, extra = _provider_inputs(config, env)
    try:
        providers = build_providers(provider_env, extra)
    except ValueError as exc:
        raise ConfigError(f"providers: {exc}") from None
    master = load_master_key(data_dir, env)
    # Whatever an upstream error or a log line might echo is scrubbed of these (core.secrets).
    secrets.register(master.secret, *(key for e in providers.values() for key in e.api_keys))
    secrets.register(*_credential_headers(config))
    catalog = Catalog(providers, config, disabled=disabled_providers(config, env))
    limits = config.limits
    if stores is None:
        stores = open_embedded(data_dir, config.circuit)
    # Label values: what the catalog lists (configured routes and deployments, priced and
    # declared models); a name a caller made up is `other`.
    metrics = Metrics(known=(m.id for m in catalog.list_models()))
    metrics.watch_health(stores.health)
    if stores.limit_store_stats is not None:
        metrics.watch_store("redis", stores.limit_store_stats)
    limiter, budgets = stores.limiter, stores.budgets
    if limits.on_store_error == "allow":
        limiter, budgets = fail_open(limiter, budgets)
    policy = UsagePolicy(limiter, budgets, stores.ledger)
    observer = RequestObserver(metrics, log_requests=config.logging.requests)
    try:
        tracing = build_tracing(config.tracing, env)
    except ValueError as exc:
        raise ConfigError(f"tracing: {exc}") from None
    cache = _response_cache(config.cache)
    # TTFT and attempts of recent requests, which the ledger does not keep (the dashboard).
    timings = RecentTimings()
    gateway = Gateway(
        Router(catalog, health=stores.health),
        Executor(config, health=stores.health, metrics=metrics, tracing=tracing),
        stores.keys,
        master.secret,
        default_timeout=config.timeouts.request,
        admission=policy,
        # The tracing sink ends the request's span after the others have booked it.
        sinks=(policy, observer, timings)
        if tracing is None
        else (policy, observer, timings, tracing),
        bounds=RequestBounds(limits.max_messages, limits.max_parts, limits.max_tools),
        responses=stores.responses,
        cache=cache,
        tracer=tracing,
    )
    return Components(
        gateway, stores, master, catalog, providers, metrics, tracing=tracing, timings=timings
    )


def _response_cache(config: CacheConfig) -> CachePolicy | None:
    """The response cache the config turns on (core.cache), or None."""
    if not config.enabled:
        return None
    store: ResponseCache
    if config.backend == "redis":
        from server.store.distributed.redis_cache import RedisCache

        assert config.redis_url is not None
        # A password in the URL must never reach a log line or an error.
        password = urlsplit(config.redis_url).password
        secrets.register(*([password] if password else []))
        store = RedisCache(
            config.redis_url, prefix=config.redis_prefix, max_entry_bytes=config.max_bytes
        )
    else:
        store = MemoryCache(config.max_bytes)
    return CachePolicy(
        store, config.ttl, frozenset(config.routes), frozenset(config.keys), config.shared
    )


def dashboard_routes(c: Components) -> list[Route]:
    """The operator dashboard at ``/ui`` (server/ui), over the same stores as the gateway."""
    stores = c.stores
    dashboard = Dashboard(
        c.master_key.secret, stores.keys, stores.ledger, stores.health, c.catalog, c.timings
    )
    return dashboard.routes()


def _credential_headers(config: Config) -> list[str]:
    """Configured header values that carry credentials (``api-key``, ``authorization``...)."""
    markers = ("key", "token", "auth", "secret")
    return [
        value
        for pc in config.providers
        for name, value in pc.headers.items()
        if any(m in name.lower() for m in markers)
    ]


def _provider_inputs(
    config: Config, env: Mapping[str, str]
) -> tuple[dict[str, str], list[ExtraEndpoint]]:
    """The registry's inputs from the config file's ``providers`` section.

    An entry named like a built-in provider overrides its endpoint and key variable (as
    ``<NAME>_BASE_URL`` / ``<NAME>_API_KEY`` would); any other entry is an extra endpoint of
    its ``kind`` (an OpenAI-compatible one needs a ``base_url``).
    """
    overlay = dict(env)
    extra: list[ExtraEndpoint] = []
    for i, pc in enumerate(config.providers):
        where = f"providers.{i}"
        if pc.kind == "demo" or pc.name == "demo":
            continue
        if pc.name in KNOWN_PROVIDERS:
            prefix = pc.name.upper()
            if pc.base_url:
                overlay[f"{prefix}_BASE_URL"] = pc.base_url
            if pc.api_key_env:
                if pc.api_key_env not in env:
                    raise ConfigError(f"{where}.api_key_env: ${pc.api_key_env} is not set")
                overlay[f"{prefix}_API_KEY"] = env[pc.api_key_env]
            continue
        if not pc.base_url and pc.kind == "openai_compat":
            raise ConfigError(f"{where}.base_url: an OpenAI-compatible provider needs a base_url")
        extra.append(
            ExtraEndpoint(
                name=pc.name,
                base_url=pc.base_url,
                api_key_env=pc.api_key_env,
                headers=dict(pc.headers),
                kind=pc.kind,
            )
        )
    return overlay, extra


# Allocations between young-generation collections once serving. CPython's default (700)
# collects every few requests, and each collection walks the young objects and what they
# refer to; bench/run.py --baseline measured this setting at 3-5% less gateway CPU per
# request at c64 (shim and gRPC). Cycles are rare on the request path (most garbage is freed
# by reference counting), so the wait costs little memory (RSS unchanged in the same run).
GC_YOUNG_THRESHOLD = 20_000


def _settle_heap() -> None:
    """Once the servers are up: the objects built at startup (config, catalog, compiled
    schemas, imported modules) move to the permanent generation, out of every later
    collection's walk (``gc.freeze``), and young collections come less often."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def run(options: ServeOptions, env: Mapping[str, str], *, out: TextIO = sys.stdout) -> int:
    """Serves until SIGTERM/SIGINT on a uvloop loop; returns the process exit code."""
    try:
        import uvloop

        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is not available on Windows
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(serve(options, env, out=out))


async def serve(
    options: ServeOptions,
    env: Mapping[str, str],
    *,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[BoundPorts], None] | None = None,
    handle_signals: bool = True,
    out: TextIO = sys.stdout,
) -> int:
    """Runs the gateway in the current loop until ``stop`` is set (or a signal arrives)."""
    ensure_data_dir(options.data_dir)
    worker = options.worker
    ports_file = (
        options.data_dir / PORTS_FILENAME
        if worker is None
        else worker_ready_file(options.data_dir, worker)
    )
    # A stale file (a gateway that was killed) must not be mistaken for this run's ports.
    remove_own_ports_file(ports_file, force=True)
    stores = await open_stores(options.config, env, options.data_dir)
    try:
        components = build_components(options.config, env, options.data_dir, stores)
    except BaseException:
        await stores.aclose()
        raise
    stop = stop or asyncio.Event()
    grace = options.config.server.shutdown_grace
    config = options.config
    grpc_server = GrpcServer(
        components.gateway,
        components.stores.keys,
        config.server,
        config.limits,
        usage=components.stores.ledger,
        reuse_port=worker is not None,
    )
    http_socket: socket.socket | None = None
    # Signals are handled from here on: a SIGTERM during startup still means a clean stop.
    with _signals(stop, enabled=handle_signals):
        try:
            try:
                grpc_port = grpc_server.bind(options.host, options.grpc_port)
                http_socket = _bind_http(
                    options.host, options.http_port, reuse_port=worker is not None
                )
            except OSError as exc:
                print(f"error: {exc}", file=sys.stderr)
                await grpc_server.server.stop(None)
                return 1
            http_server = _http_server(
                create_app(
                    components.gateway,
                    extra_routes=AdminApi(
                        components.gateway,
                        components.stores.keys,
                        components.stores.ledger,
                        config.server.body_timeout,
                    ).routes()
                    + dashboard_routes(components),
                    metrics=components.metrics,
                    limits=config.limits,
                    body_timeout=config.server.body_timeout,
                    problems=components.stores.problems,
                    worker=worker,
                ),
                options,
                grace,
            )
            await grpc_server.start()
            http_task = asyncio.create_task(http_server.serve(sockets=[http_socket]))
            # If the HTTP server dies, take the whole process down rather than serve half.
            http_task.add_done_callback(lambda _: stop.set())
            while not http_server.started:
                if http_task.done():
                    await http_task
                    raise RuntimeError("the HTTP server stopped during startup")
                await asyncio.sleep(0.005)
            ports = BoundPorts(
                pid=os.getpid(),
                host=options.host,
                grpc_port=grpc_port,
                http_port=http_socket.getsockname()[1],
            )
            _settle_heap()
            write_ports_file(ports_file, ports)
            if worker is None:
                _announce(out, ports, components, options)
            if on_ready is not None:
                on_ready(ports)
            await stop.wait()
            log.info("shutting down (grace %.1fs)", grace)
            http_server.should_exit = True
            await grpc_server.stop(grace)
            await http_task
            return 0
        finally:
            # After both servers stopped: every accepted request has settled by now, so the
            # ledger's last rows are written here.
            await components.stores.aclose()
            if components.gateway.cache is not None:
                await components.gateway.cache.store.aclose()
            if components.tracing is not None:
                # Exports the spans still buffered (blocking network I/O: off the loop).
                await asyncio.to_thread(components.tracing.shutdown)
            for entry in components.providers.values():
                with contextlib.suppress(Exception):
                    await entry.provider.aclose()
            await close_http_client()
            if http_socket is not None:
                http_socket.close()
            remove_own_ports_file(ports_file)


@contextlib.contextmanager
def _signals(stop: asyncio.Event, *, enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    loop = asyncio.get_running_loop()
    handled = (signal.SIGTERM, signal.SIGINT)
    for sig in handled:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)


def _bind_http(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # SO_REUSEADDR only skips TIME_WAIT; a port another process listens on still fails.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            # A worker of `serve --workers N`: the kernel spreads connections over them all.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen for HTTP on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(False)
    return sock


def _http_server(app: Any, options: ServeOptions, grace: float) -> Any:
    import uvicorn

    class _EmbeddedServer(uvicorn.Server):
        # The process handles SIGTERM/SIGINT itself and stops both transports together.
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    server = options.config.server
    config = uvicorn.Config(
        app,
        host=options.host,
        port=options.http_port,
        http=guarded_protocol(server.header_timeout),
        ws="none",
        loop="none",
        lifespan="off",
        interface="asgi3",
        access_log=False,
        log_config=None,
        server_header=False,
        # No proxy in front by default; its middleware wraps every request (seen in profiles).
        proxy_headers=False,
        timeout_graceful_shutdown=max(int(grace), 1),
        timeout_keep_alive=max(int(server.idle_timeout), 1),
        limit_concurrency=server.max_connections,
    )
    return _EmbeddedServer(config)


def write_ports_file(path: Path, ports: BoundPorts) -> None:
    """Writes ``ports.json`` atomically (also the supervisor of `serve --workers N`)."""
    tmp = path.with_name(f".{path.name}.{ports.pid}")
    tmp.write_bytes(
        orjson.dumps(
            {
                "pid": ports.pid,
                "host": ports.host,
                "grpc_port": ports.grpc_port,
                "http_port": ports.http_port,
            }
        )
    )
    tmp.replace(path)


def remove_own_ports_file(path: Path, *, force: bool = False) -> None:
    """Removes ``path`` if this process wrote it (any writer's with ``force``)."""
    try:
        data = orjson.loads(path.read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return
    if force or data.get("pid") == os.getpid():
        path.unlink(missing_ok=True)


def worker_ready_file(data_dir: Path, worker: int) -> Path:
    """Where worker ``worker`` of `serve --workers N` writes its ports once it serves."""
    return data_dir / f".worker-{worker}.json"


def read_ports_file(data_dir: Path) -> BoundPorts | None:
    """The ports a gateway serving this data dir wrote, or None."""
    try:
        data = orjson.loads((data_dir / PORTS_FILENAME).read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return None
    return BoundPorts(data["pid"], data["host"], data["grpc_port"], data["http_port"])


def _connect_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _cli_command() -> str:
    """`switchboard` when that name runs this very program, else its full path (a venv that
    is not on PATH, as after `make run`)."""
    own = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    found = shutil.which("switchboard")
    if own is not None and own.name == "switchboard":
        if found is not None and Path(found).resolve() == own:
            return "switchboard"
        return shlex.quote(str(own))
    return f"{shlex.quote(sys.executable)} -m server"


def _announce(out: TextIO, ports: BoundPorts, c: Components, options: ServeOptions) -> None:
    """How to call the gateway; prints the master key only the one time it is generated."""
    demo = next((m.id for m in c.catalog.list_models() if m.demo), None)
    if demo is None and "demo" in c.providers:
        entry = c.providers["demo"]
        demo = next((f"demo/{m}" for m in getattr(entry.provider, "models", ())), None)
    model = demo or "<provider>/<model>"
    lines = [
        f"Switchboard is running (pid {ports.pid}); data dir {options.data_dir}",
        f"  gRPC  {ports.grpc_target}  (switchboard.v1.ChatService, AdminService; "
        "health and reflection enabled)",
        f"  HTTP  {ports.http_url}/v1  (OpenAI-compatible; Anthropic at /v1/messages)",
    ]
    lines.append(f"  providers: {', '.join(c.catalog.provider_names) or 'none'}")
    if c.master_key.source == "generated":
        lines += [
            "",
            f"Generated the master (admin) key; it is shown only now: {c.master_key.secret}",
            f"  (stored in {c.master_key.path}; set SWITCHBOARD_MASTER_KEY to use your own)",
        ]
    elif c.master_key.source == "file":
        lines.append(f"  master key: stored in {c.master_key.path}")
    else:
        lines.append("  master key: from SWITCHBOARD_MASTER_KEY")
    # Printed to be pasted into another shell as is: the CLI by the path that works there, and
    # the data dir only when the CLI would not find the same one by itself.
    cli = _cli_command()
    same_dir = options.data_dir.resolve() == default_data_dir(os.environ).resolve()
    data_dir = "" if same_dir else f" --data-dir {shlex.quote(str(options.data_dir))}"
    lines += [
        "",
        "Create an application key and keep it in SWITCHBOARD_API_KEY (another shell):",
        f"  export SWITCHBOARD_API_KEY=$({cli} keys create --name my-app{data_dir} --json \\",
        """    | python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])')""",
        "Then call it:",
    ]
    body = orjson.dumps({"model": model, "messages": [{"role": "user", "content": "Hello!"}]})
    lines += [
        f"  curl -s {ports.http_url}/v1/chat/completions \\",
        '    -H "Authorization: Bearer $SWITCHBOARD_API_KEY" \\',
        "    -H 'Content-Type: application/json' \\",
        f"    -d '{body.decode()}'",
    ]
    grpc_body = orjson.dumps(
        {"model": model, "messages": [{"role": "ROLE_USER", "content": [{"text": "Hello!"}]}]}
    ).decode()
    lines += [
        '  grpcurl -plaintext -H "authorization: Bearer $SWITCHBOARD_API_KEY" \\',
        f"    -d '{grpc_body}' {ports.grpc_target} switchboard.v1.ChatService/Chat",
    ]
    out.write("\n".join(lines) + "\n")
    out.flush()
