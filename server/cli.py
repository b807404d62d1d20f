"""The ``switchboard`` command: serve, keys create|list|get|update|rotate|revoke,
projects create|list|get|update, usage, check-config.

Every command takes ``--data-dir`` (else ``SWITCHBOARD_DATA_DIR``, else the config file's
``server.data_dir``, else ``~/.local/share/switchboard``) and ``--config`` (else
``SWITCHBOARD_CONFIG``). Every command opens the same backend ``serve`` does
(``server.store.blocking``): the data dir's SQLite files, or PostgreSQL with the distributed
backend (``SWITCHBOARD_DATABASE_URL`` and ``SWITCHBOARD_REDIS_URL``). The ``keys`` commands
work while the server runs and it sees their changes on the next request (within a second on
every replica); ``usage`` reads the ledger the server writes, also while it runs.
Exit codes: 0 success, 1 error (bad config, taken port, unknown key), 2 bad usage.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import orjson
from switchboard.v1 import admin_pb2

from server.config import Config, ConfigError, default_data_dir, load_config, store_settings
from server.core.context import KeyLimits
from server.core.errors import GatewayError, NotFoundError
from server.core.state import USAGE_GROUPS, KeySpec, KeyUpdate
from server.store.blocking import BlockingKeys, BlockingUsage, open_blocking

CONFIG_ENV = "SWITCHBOARD_CONFIG"
DATA_DIR_ENV = "SWITCHBOARD_DATA_DIR"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``switchboard`` console script."""
    args = _parser().parse_args(argv)
    try:
        return int(args.handler(args, os.environ))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except GatewayError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


# --- commands --------------------------------------------------------------------------------


def _serve(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from server.app import WORKER_ENV, ServeOptions, run
    from server.observability.logging import configure_logging

    config = _config(args, env)
    configure_logging(config.logging.level)
    worker = env.get(WORKER_ENV)
    options = ServeOptions(
        config=config,
        data_dir=_data_dir(args, env, config),
        host=args.host if args.host is not None else config.server.host,
        http_port=args.http_port if args.http_port is not None else config.server.http_port,
        grpc_port=args.grpc_port if args.grpc_port is not None else config.server.grpc_port,
        worker=int(worker) if worker and worker.isdigit() else None,
    )
    if args.workers == 1 or options.worker is not None:
        return run(options, env)
    if not store_settings(config, env).distributed:
        print(
            f"error: --workers {args.workers} needs the distributed backend: the embedded "
            "backend keeps rate limits, concurrency, budgets and circuits in one process, so "
            f"{args.workers} workers would multiply every limit by {args.workers}. Set "
            "SWITCHBOARD_DATABASE_URL and SWITCHBOARD_REDIS_URL (or store.database_url and "
            "store.redis_url in the config file), or run one worker.",
            file=sys.stderr,
        )
        return 2
    from server.supervisor import Supervisor

    config_path = getattr(args, "config", None) or env.get(CONFIG_ENV) or None
    return Supervisor(options, env, args.workers, config_path=config_path).run()


def _keys_create(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    spec = KeySpec(
        name=args.name,
        limits=KeyLimits(args.rpm, args.tpm, args.monthly_budget),
        env=args.env or "",
        allowed_models=args.models or (),
        max_concurrent=args.max_concurrent,
        expires_at=args.expires,
        project_id=args.project,
    )
    with _key_store(args, env) as keys:
        record, secret = keys.create_sync(spec)
    if args.json:
        print(orjson.dumps({**_key_json(record), "key": secret}).decode())
    else:
        print(f"Created key {record.id} ({record.name}). Its secret is shown only this once:")
        print(secret)
    return 0


def _keys_get(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    with _key_store(args, env) as keys:
        record = keys.get_sync(args.id)
    if record is None:
        raise NotFoundError(f"No gateway key has the id {args.id!r}.")
    if args.json:
        print(orjson.dumps(_key_json(record)).decode())
        return 0
    for name, value in _key_json(record).items():
        print(f"{name}: {_shown(value)}")
    return 0


def _keys_update(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    with _key_store(args, env) as keys:
        current = keys.get_sync(args.id)
        if current is None:
            raise NotFoundError(f"No gateway key has the id {args.id!r}.")
        changes = KeyUpdate(
            name=args.name,
            limits=_changed_limits(args, current.limits),
            allowed_models=args.models,
            max_concurrent=args.max_concurrent,
            expires_at=args.expires,
            project_id="" if (args.project or "").lower() == _NONE else args.project,
        )
        if changes == KeyUpdate():
            print("error: nothing to change; see `switchboard keys update --help`", file=sys.stderr)
            return 2
        record = keys.update_sync(args.id, changes)
    if args.json:
        print(orjson.dumps(_key_json(record)).decode())
    else:
        print(f"Updated key {record.id} ({record.name}).")
    return 0


def _keys_rotate(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    with _key_store(args, env) as keys:
        record, secret = keys.rotate_sync(args.id, args.grace)
    if args.json:
        print(orjson.dumps({**_key_json(record), "key": secret}).decode())
        return 0
    print(f"Rotated key {record.id} ({record.name}). Its new secret is shown only this once:")
    print(secret)
    if record.HasField("previous_secret_expire_time"):
        until = _time(record.previous_secret_expire_time.ToSeconds())
        print(f"The old secret keeps working until {until}.", file=sys.stderr)
    else:
        print("The old secret no longer works.", file=sys.stderr)
    return 0


def _projects_create(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    limits = KeyLimits(args.rpm, args.tpm, args.monthly_budget)
    with _key_store(args, env) as keys:
        project = keys.create_project_sync(args.name, limits)
    if args.json:
        print(orjson.dumps(_project_json(project)).decode())
    else:
        print(f"Created project {project.id} ({project.name}).")
    return 0


def _projects_list(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    with _key_store(args, env) as keys:
        projects = keys.list_projects_sync()
    if args.json:
        print(orjson.dumps([_project_json(p) for p in projects]).decode())
        return 0
    if not projects:
        print("No projects. Create one with: switchboard projects create --name NAME")
        return 0
    rows = [("ID", "NAME", "RPM", "TPM", "MONTHLY_BUDGET")]
    for p in projects:
        limits = _limits_json(p.limits)
        cells = (limits.get(n) for n in ("requests_per_minute", "tokens_per_minute"))
        rpm, tpm = ("-" if c is None else str(c) for c in cells)
        budget = limits.get("monthly_budget_usd")
        rows.append((p.id, p.name, rpm, tpm, "-" if budget is None else f"${budget:g}"))
    _print_table(rows)
    return 0


def _projects_get(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    with _key_store(args, env) as keys:
        project = keys.get_project_sync(args.id)
    if project is None:
        raise NotFoundError(f"No project has the id {args.id!r}.")
    print(orjson.dumps(_project_json(project)).decode())
    return 0


def _projects_update(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    with _key_store(args, env) as keys:
        current = keys.get_project_sync(args.id)
        if current is None:
            raise NotFoundError(f"No project has the id {args.id!r}.")
        limits = _changed_limits(args, current.limits)
        if args.name is None and limits is None:
            print(
                "error: nothing to change; see `switchboard projects update --help`",
                file=sys.stderr,
            )
            return 2
        project = keys.update_project_sync(args.id, name=args.name, limits=limits)
    if args.json:
        print(orjson.dumps(_project_json(project)).decode())
    else:
        print(f"Updated project {project.id} ({project.name}).")
    return 0


def _changed_limits(args: argparse.Namespace, current: admin_pb2.KeyLimits) -> KeyLimits | None:
    """The limits after ``--rpm/--tpm/--monthly-budget`` (``none`` clears one), or None when
    no limit flag was given."""
    given = {
        name: getattr(args, flag)
        for name, flag in (
            ("requests_per_minute", "rpm"),
            ("tokens_per_minute", "tpm"),
            ("monthly_budget_usd", "monthly_budget"),
        )
        if getattr(args, flag) is not None
    }
    if not given:
        return None
    merged = {**_limits_json(current), **given}
    return KeyLimits(
        *(
            None if merged.get(n) in (None, _NONE) else merged[n]
            for n in ("requests_per_minute", "tokens_per_minute", "monthly_budget_usd")
        )
    )


def _keys_list(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    with _key_store(args, env) as keys:
        records = keys.list_sync(include_revoked=args.all)
    if args.json:
        print(orjson.dumps([_key_json(r) for r in records]).decode())
        return 0
    if not records:
        print("No keys. Create one with: switchboard keys create --name NAME")
        return 0
    rows = [("ID", "NAME", "PREFIX", "CREATED", "STATUS", "PROJECT")]
    for r in records:
        if r.revoked:
            status = "revoked " + _time(r.revoke_time.ToSeconds())
        elif r.expired:
            status = "expired " + _time(r.expire_time.ToSeconds())
        else:
            status = "active"
        created = _time(r.create_time.ToSeconds())
        rows.append((r.id, r.name, r.prefix + "…", created, status, r.project_id or "-"))
    _print_table(rows)
    return 0


def _print_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _keys_revoke(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    with _key_store(args, env) as keys:
        record = keys.revoke_sync(args.id)
    print(f"Revoked key {record.id} ({record.name}).")
    return 0


_USAGE_HEADER = (
    "KEY", "NAME", "REQUESTS", "ERRORS", "INPUT", "CACHED", "CACHE_WRITE", "OUTPUT", "REASONING",
    "COST", "BUDGET",
)  # fmt: skip


def _usage(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from server.core.money import format_usd, usd_to_nanos

    now = datetime.now(UTC)
    year, month = args.month or (now.year, now.month)
    label = f"{year:04d}-{month:02d}"
    if args.by is not None or args.project is not None:
        return _usage_by(args, env, args.by or "key", year, month)
    with _state(args, env) as (keys, usage):
        totals = usage.month_totals(year, month, key_id=args.key)
        records = {r.id: r for r in keys.list_sync(include_revoked=True)}
    names = {key_id: r.name for key_id, r in records.items()} | {"master": "master"}
    budgets = {
        key_id: r.limits.monthly_budget_usd
        for key_id, r in records.items()
        if r.limits.HasField("monthly_budget_usd")
    }
    if args.json:
        out = [
            {**t.to_json(), "name": names.get(t.key_id, ""), "budget_usd": budgets.get(t.key_id)}
            for t in totals
        ]
        print(orjson.dumps({"month": label, "keys": out}).decode())
        return 0
    if not totals:
        print(f"No usage recorded in {label} (UTC)" + (f" for {args.key}." if args.key else "."))
        return 0
    rows = [list(_USAGE_HEADER)]
    for t in totals:
        limit = budgets.get(t.key_id)
        counts = [t.requests, t.errors, t.input_tokens, t.cached_input_tokens]
        counts += [t.cache_write_tokens, t.output_tokens, t.reasoning_tokens]
        cost = format_usd(t.total_nanousd)
        budget = "-" if limit is None else format_usd(usd_to_nanos(limit))
        rows.append([t.key_id, names.get(t.key_id, ""), *map(str, counts), cost, budget])
    print(f"Usage in {label} (UTC); INPUT includes the CACHED and CACHE_WRITE tokens:")
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _usage_by(
    args: argparse.Namespace, env: Mapping[str, str], group: str, year: int, month: int
) -> int:
    from server.core.money import format_usd, month_bounds

    label = f"{year:04d}-{month:02d}"
    with _state(args, env) as (_, usage):
        rows = usage.usage_by(
            group, *month_bounds(year, month), key_id=args.key, project_id=args.project
        )
    if args.json:
        out = {"month": label, "by": group, "rows": [r.to_json() for r in rows]}
        print(orjson.dumps(out).decode())
        return 0
    if not rows:
        print(f"No usage recorded in {label} (UTC).")
        return 0
    table = [[group.upper(), "REQUESTS", "ERRORS", "INPUT", "CACHED", "OUTPUT", "COST"]]
    for r in rows:
        counts = (r.requests, r.errors, r.input_tokens, r.cached_input_tokens, r.output_tokens)
        table.append([r.group or "(none)", *map(str, counts), format_usd(r.total_nanousd)])
    print(f"Usage in {label} (UTC) by {group}; INPUT includes the CACHED tokens:")
    _print_table(table)
    return 0


def _month(value: str) -> tuple[int, int]:
    try:
        parsed = datetime.strptime(value, "%Y-%m")
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a month like 2026-01") from None
    return parsed.year, parsed.month


def _check_config(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from server.checks import provider_problems

    path = getattr(args, "config", None) or env.get(CONFIG_ENV)
    config = load_config(path)
    problems = provider_problems(config, env)
    for warning in problems.warnings:
        print(f"warning: {warning}")
    for error in problems.errors:
        print(f"error: {error}", file=sys.stderr)
    if problems.errors:
        return 1
    if path is None:
        print("No config file given (--config or SWITCHBOARD_CONFIG): the defaults are valid.")
    else:
        print(
            f"{path}: valid ({len(config.providers)} providers, "
            f"{len(config.deployments)} deployments, {len(config.routes)} routes)"
        )
    return 0


# --- helpers ---------------------------------------------------------------------------------


def _config(args: argparse.Namespace, env: Mapping[str, str]) -> Config:
    return load_config(getattr(args, "config", None) or env.get(CONFIG_ENV) or None)


def _data_dir(args: argparse.Namespace, env: Mapping[str, str], config: Config) -> Path:
    explicit = getattr(args, "data_dir", None)
    if explicit:
        return Path(explicit)
    if env.get(DATA_DIR_ENV):
        return Path(env[DATA_DIR_ENV])
    return config.server.data_dir or default_data_dir(env)


@contextlib.contextmanager
def _state(
    args: argparse.Namespace, env: Mapping[str, str]
) -> Iterator[tuple[BlockingKeys, BlockingUsage]]:
    """The backend's keys and usage ledger, as ``serve`` opens them with the same flags and
    environment (the data dir's SQLite files, or PostgreSQL when the store section or
    SWITCHBOARD_DATABASE_URL / SWITCHBOARD_REDIS_URL select the distributed backend)."""
    config = _config(args, env)
    with open_blocking(config, store_settings(config, env), _data_dir(args, env, config)) as state:
        yield state


@contextlib.contextmanager
def _key_store(args: argparse.Namespace, env: Mapping[str, str]) -> Iterator[BlockingKeys]:
    with _state(args, env) as (keys, _):
        yield keys


def _key_json(record: admin_pb2.GatewayKey) -> dict[str, object]:
    out: dict[str, object] = {
        "id": record.id,
        "name": record.name,
        "prefix": record.prefix,
        "created": _time(record.create_time.ToSeconds()),
        "revoked": record.revoked,
    }
    if record.revoked:
        out["revoked_at"] = _time(record.revoke_time.ToSeconds())
    limits = _limits_json(record.limits)
    if limits:
        out["limits"] = limits
    out["env"] = record.env
    out["project_id"] = record.project_id or None
    out["allowed_models"] = list(record.allowed_models)
    out["max_concurrent"] = record.max_concurrent if record.HasField("max_concurrent") else None
    expires = record.expire_time.ToSeconds() if record.HasField("expire_time") else None
    out["expires_at"] = None if expires is None else _time(expires)
    out["expired"] = record.expired
    if record.HasField("rotate_time"):
        out["rotated_at"] = _time(record.rotate_time.ToSeconds())
    if record.HasField("previous_secret_expire_time"):
        out["previous_secret_expires_at"] = _time(record.previous_secret_expire_time.ToSeconds())
    return out


def _limits_json(limits: admin_pb2.KeyLimits) -> dict[str, object]:
    return {
        name: getattr(limits, name)
        for name in ("requests_per_minute", "tokens_per_minute", "monthly_budget_usd")
        if limits.HasField(name)
    }


def _project_json(project: admin_pb2.Project) -> dict[str, object]:
    return {
        "id": project.id,
        "name": project.name,
        "created": _time(project.create_time.ToSeconds()),
        "limits": _limits_json(project.limits),
    }


def _shown(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "(any)"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


# What a flag of ``keys update`` / ``projects update`` takes to clear a value.
_NONE = "none"


def _or_none(kind: Callable[[str], object]) -> Callable[[str], object]:
    """An argparse type that also takes ``none`` (clear the value)."""

    def parse(value: str) -> object:
        return _NONE if value.strip().lower() == _NONE else kind(value)

    parse.__name__ = getattr(kind, "__name__", "value")
    return parse


def _workers(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if not 1 <= n <= 64:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of workers from 1 to 64")
    return n


def _models(value: str) -> tuple[str, ...]:
    """``a,b,c`` (``none`` or empty: any model)."""
    if value.strip().lower() == _NONE:
        return ()
    return tuple(m.strip() for m in value.split(",") if m.strip())


def _positive_or_clear(value: str) -> int:
    """A positive count, or ``none`` as 0 (what KeyUpdate takes to clear one)."""
    if value.strip().lower() == _NONE:
        return 0
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive number (or `none`)")
    return number


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _expiry(value: str) -> float:
    """When a key expires: a duration from now (``90s``, ``30m``, ``12h``, ``30d``), an ISO 8601
    time (``2027-01-01``, ``2027-01-01T12:00:00Z``; UTC unless it says otherwise), or ``never``
    (0: what KeyUpdate takes for no expiry)."""
    text = value.strip()
    if text.lower() in ("never", _NONE):
        return 0.0
    unit = _UNITS.get(text[-1:].lower())
    if unit is not None and text[:-1].replace(".", "", 1).isdigit():
        return datetime.now(UTC).timestamp() + float(text[:-1]) * unit
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is neither a duration like 30d / 12h nor a time like 2027-01-01"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _time(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="switchboard", description="Switchboard LLM gateway.", parents=[_common()]
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", parents=[_common()], help="run the gateway (gRPC + HTTP)")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--http-port", type=int, help="HTTP port (default 8080; 0 = any free)")
    serve.add_argument("--grpc-port", type=int, help="gRPC port (default 50051; 0 = any free)")
    serve.add_argument(
        "--workers",
        type=_workers,
        default=1,
        help="worker processes on the same ports (default 1; more need the distributed backend)",
    )
    serve.set_defaults(handler=_serve)

    keys = sub.add_parser("keys", parents=[_common()], help="manage gateway keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", parents=[_common()], help="create a key")
    create.add_argument("--name", required=True)
    _limit_flags(create, int, float)
    create.add_argument("--env", help="environment label (dev, staging, prod...): `sb-<env>-…`")
    create.add_argument(
        "--models", type=_models, help="comma-separated models or routes it may use (`*` globs)"
    )
    create.add_argument("--max-concurrent", type=int, help="requests in flight at once")
    create.add_argument("--expires", type=_expiry, help="30d, 12h, or a time like 2027-01-01")
    create.add_argument("--project", help="project id whose shared limits apply as well")
    create.add_argument("--json", action="store_true", help='print {"id", "key", ...} as JSON')
    create.set_defaults(handler=_keys_create)
    listing = keys_sub.add_parser("list", parents=[_common()], help="list keys")
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_keys_list)
    get = keys_sub.add_parser("get", parents=[_common()], help="show one key by id")
    get.add_argument("id")
    get.add_argument("--json", action="store_true")
    get.set_defaults(handler=_keys_get)
    update = keys_sub.add_parser(
        "update", parents=[_common()], help="change a key (`none` clears a value)"
    )
    update.add_argument("id")
    update.add_argument("--name")
    _limit_flags(update, _or_none(int), _or_none(float))
    update.add_argument("--models", type=_models, help="comma-separated; `none`: any model")
    update.add_argument("--max-concurrent", type=_positive_or_clear, help="`none`: unlimited")
    update.add_argument("--expires", type=_expiry, help="30d, 2027-01-01, or `never`")
    update.add_argument("--project", help="project id; `none` takes the key out of its project")
    update.add_argument("--json", action="store_true")
    update.set_defaults(handler=_keys_update)
    rotate = keys_sub.add_parser("rotate", parents=[_common()], help="give a key a new secret")
    rotate.add_argument("id")
    rotate.add_argument(
        "--grace",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="seconds the old secret keeps working (default 0: it stops at once)",
    )
    rotate.add_argument("--json", action="store_true", help='print {"id", "key", ...} as JSON')
    rotate.set_defaults(handler=_keys_rotate)
    revoke = keys_sub.add_parser("revoke", parents=[_common()], help="revoke a key by id")
    revoke.add_argument("id")
    revoke.set_defaults(handler=_keys_revoke)

    projects = sub.add_parser(
        "projects", parents=[_common()], help="manage projects (keys sharing limits)"
    )
    projects_sub = projects.add_subparsers(dest="projects_command", required=True)
    pcreate = projects_sub.add_parser("create", parents=[_common()], help="create a project")
    pcreate.add_argument("--name", required=True)
    _limit_flags(pcreate, int, float)
    pcreate.add_argument("--json", action="store_true")
    pcreate.set_defaults(handler=_projects_create)
    plist = projects_sub.add_parser("list", parents=[_common()], help="list projects")
    plist.add_argument("--json", action="store_true")
    plist.set_defaults(handler=_projects_list)
    pget = projects_sub.add_parser("get", parents=[_common()], help="show a project as JSON")
    pget.add_argument("id")
    pget.set_defaults(handler=_projects_get)
    pupdate = projects_sub.add_parser(
        "update", parents=[_common()], help="change a project (`none` clears a limit)"
    )
    pupdate.add_argument("id")
    pupdate.add_argument("--name")
    _limit_flags(pupdate, _or_none(int), _or_none(float))
    pupdate.add_argument("--json", action="store_true")
    pupdate.set_defaults(handler=_projects_update)

    usage = sub.add_parser(
        "usage", parents=[_common()], help="requests, tokens and cost per key for a month"
    )
    usage.add_argument("--key", help="only this key id (`master` for the master key)")
    usage.add_argument("--project", help="only this project's requests")
    usage.add_argument(
        "--by", choices=USAGE_GROUPS, help="group by key, project, model, provider or day"
    )
    usage.add_argument("--month", type=_month, help="YYYY-MM (UTC; default: this month)")
    usage.add_argument("--json", action="store_true")
    usage.set_defaults(handler=_usage)

    check = sub.add_parser("check-config", parents=[_common()], help="validate the config file")
    check.set_defaults(handler=_check_config)
    return parser


def _limit_flags(
    parser: argparse.ArgumentParser,
    count: Callable[[str], object],
    usd: Callable[[str], object],
) -> None:
    parser.add_argument("--rpm", type=count, help="requests per minute limit")
    parser.add_argument("--tpm", type=count, help="tokens per minute limit")
    parser.add_argument("--monthly-budget", type=usd, help="monthly spend limit in USD")


def _common() -> argparse.ArgumentParser:
    # --data-dir/--config work before or after the subcommand. A fresh parser per use (argparse
    # shares parent actions) and SUPPRESS keep a subparser from resetting an earlier value.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir", default=argparse.SUPPRESS, help=f"state directory (env {DATA_DIR_ENV})"
    )
    common.add_argument(
        "--config", default=argparse.SUPPRESS, help=f"YAML config file (env {CONFIG_ENV})"
    )
    return common
