"""The ``switchboard`` command: serve, keys create|list|revoke, usage, check-config.

Every command takes ``--data-dir`` (else ``SWITCHBOARD_DATA_DIR``, else the config file's
``server.data_dir``, else ``~/.local/share/switchboard``) and ``--config`` (else
``SWITCHBOARD_CONFIG``). The ``keys`` commands write the same SQLite file the server reads, so
they work while it runs and the server sees their changes on the next request; ``usage`` reads
the usage ledger (``usage.db``) the server writes, also while it runs.
Exit codes: 0 success, 1 error (bad config, taken port, unknown key), 2 bad usage.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import orjson
from switchboard.v1 import admin_pb2

from server.config import Config, ConfigError, default_data_dir, load_config
from server.core.context import KeyLimits
from server.core.errors import GatewayError
from server.store.embedded.keys import SqliteKeyStore

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
    from server.app import ServeOptions, run
    from server.observability.logging import configure_logging

    config = _config(args, env)
    configure_logging(config.logging.level)
    options = ServeOptions(
        config=config,
        data_dir=_data_dir(args, env, config),
        host=args.host if args.host is not None else config.server.host,
        http_port=args.http_port if args.http_port is not None else config.server.http_port,
        grpc_port=args.grpc_port if args.grpc_port is not None else config.server.grpc_port,
    )
    return run(options, env)


def _keys_create(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    limits = KeyLimits(args.rpm, args.tpm, args.monthly_budget)
    with _key_store(args, env) as keys:
        record, secret = keys.create_sync(args.name, limits)
    if args.json:
        print(orjson.dumps({**_key_json(record), "key": secret}).decode())
    else:
        print(f"Created key {record.id} ({record.name}). Its secret is shown only this once:")
        print(secret)
    return 0


def _keys_list(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    with _key_store(args, env) as keys:
        records = keys.list_sync(include_revoked=args.all)
    if args.json:
        print(orjson.dumps([_key_json(r) for r in records]).decode())
        return 0
    if not records:
        print("No keys. Create one with: switchboard keys create --name NAME")
        return 0
    rows = [("ID", "NAME", "PREFIX", "CREATED", "STATUS")]
    for r in records:
        status = "revoked " + _time(r.revoke_time.ToSeconds()) if r.revoked else "active"
        rows.append((r.id, r.name, r.prefix + "…", _time(r.create_time.ToSeconds()), status))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


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
    from server.store.embedded.ledger import month_totals

    now = datetime.now(UTC)
    year, month = args.month or (now.year, now.month)
    label = f"{year:04d}-{month:02d}"
    totals = month_totals(_data_dir(args, env, _config(args, env)), year, month, key_id=args.key)
    with _key_store(args, env) as keys:
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
def _key_store(args: argparse.Namespace, env: Mapping[str, str]) -> Iterator[SqliteKeyStore]:
    store = SqliteKeyStore(_data_dir(args, env, _config(args, env)))
    try:
        yield store
    finally:
        store.close()


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
    limits = {
        name: getattr(record.limits, name)
        for name in ("requests_per_minute", "tokens_per_minute", "monthly_budget_usd")
        if record.limits.HasField(name)
    }
    if limits:
        out["limits"] = limits
    return out


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
    serve.set_defaults(handler=_serve)

    keys = sub.add_parser("keys", parents=[_common()], help="manage gateway keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", parents=[_common()], help="create a key")
    create.add_argument("--name", required=True)
    create.add_argument("--rpm", type=int, help="requests per minute limit")
    create.add_argument("--tpm", type=int, help="tokens per minute limit")
    create.add_argument("--monthly-budget", type=float, help="monthly spend limit in USD")
    create.add_argument("--json", action="store_true", help='print {"id", "key", ...} as JSON')
    create.set_defaults(handler=_keys_create)
    listing = keys_sub.add_parser("list", parents=[_common()], help="list keys")
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_keys_list)
    revoke = keys_sub.add_parser("revoke", parents=[_common()], help="revoke a key by id")
    revoke.add_argument("id")
    revoke.set_defaults(handler=_keys_revoke)

    usage = sub.add_parser(
        "usage", parents=[_common()], help="requests, tokens and cost per key for a month"
    )
    usage.add_argument("--key", help="only this key id (`master` for the master key)")
    usage.add_argument("--month", type=_month, help="YYYY-MM (UTC; default: this month)")
    usage.add_argument("--json", action="store_true")
    usage.set_defaults(handler=_usage)

    check = sub.add_parser("check-config", parents=[_common()], help="validate the config file")
    check.set_defaults(handler=_check_config)
    return parser


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
