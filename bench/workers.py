"""Throughput by process model: `--workers 1` on the embedded backend, `--workers 1` and
`--workers 2` on the distributed backend (PostgreSQL + Redis), in one interleaved run.

Starts ``bench/fake_upstream.py`` and three gateways of this checkout (same route and body as
``bench/run.py``): embedded with one worker; distributed with one worker; distributed with two
workers (the distributed two share one fresh PostgreSQL schema and Redis prefix, removed at
the end). Each serves a gateway key with an RPM, TPM and monthly budget far above what the
run can use, so every request is counted against the shared limit store exactly as a real
key's would be (the master key skips every limit). Then for ``--rounds`` rounds (the order
rotates each round) wrk drives each gateway's shim at ``--conns`` connections for
``--seconds``, and the table gives req/s (median of rounds), CPU ms per request of the whole
gateway (supervisor and workers), and the ratio to the embedded single worker.

Redis round trips per request are read from the single distributed worker's
``switchboard_store_round_trips_total`` (/metrics, one process: exact) around each measured run
(warm-ups excluded), divided by the requests wrk completed in those runs.

    python bench/workers.py [--rounds 2] [--seconds 8] [--conns 64]
        [--postgres-url URL] [--redis-url URL]

Everything binds 127.0.0.1; each run is bounded by ``--seconds``.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import statistics
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
for path in (str(ROOT), str(ROOT / "bench")):
    if path not in sys.path:
        sys.path.insert(0, path)

from harness.config import BODY  # noqa: E402
from harness.load import Target, run_wrk  # noqa: E402
from harness.process import Gateway, fake_upstream, launch_gateway  # noqa: E402

from tests.support.stores import delete_prefix, drop_schema  # noqa: E402

ROUND_TRIPS = re.compile(rb"^switchboard_store_round_trips_total(?:\{[^}]*\})? ([0-9.e+]+)$", re.M)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--conns", type=int, default=64)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "SWITCHBOARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("SWITCHBOARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    )
    args = parser.parse_args(argv)

    tag = secrets.token_hex(4)
    schema, prefix = f"bench_{tag}", f"bench{tag}:"
    distributed = {
        "SWITCHBOARD_DATABASE_URL": args.postgres_url,
        "SWITCHBOARD_DATABASE_SCHEMA": schema,
        "SWITCHBOARD_REDIS_URL": args.redis_url,
    }
    setups: list[tuple[str, dict[str, str], list[str]]] = [
        ("embedded --workers 1", {}, []),
        ("distributed --workers 1", distributed, []),
        ("distributed --workers 2", distributed, ["--workers", "2"]),
    ]
    gateways: dict[str, tuple[Gateway, Target]] = {}
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in setups}
    upstream_key = "sk-upstream-" + secrets.token_hex(8)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp, fake_upstream() as up:
            work = Path(tmp)
            body = work / "body.json"
            body.write_bytes(orjson.dumps(BODY))
            for i, (name, env, extra) in enumerate(setups):
                gw = launch_gateway(
                    name,
                    ROOT,
                    work / f"gw{i}",
                    up,
                    upstream_key,
                    command=None,
                    log_level=None,
                    cpus=None,
                    timeout=60,
                    env=env,
                    args=extra,
                )
                key = _limited_key(gw)
                gateways[name] = (gw, Target(name, "http", gw.url, key, {"gateway": gw.pid}))
                print(f"started {name} (pid {gw.pid})", flush=True)
            order = [name for name, _, _ in setups]
            trips, counted = 0.0, 0
            for rnd in range(args.rounds):
                for name in order[rnd % len(order) :] + order[: rnd % len(order)]:
                    gw, target = gateways[name]
                    run_wrk(target, body, args.conns, args.warmup, warmup=0)
                    before = _round_trips(gw)
                    res = run_wrk(target, body, args.conns, args.seconds, warmup=0)
                    if name == "distributed --workers 1":
                        trips += _round_trips(gw) - before
                        counted += res["requests"]
                    results[name].append(res)
                    print(
                        f"round {rnd + 1} {name:26s} {res['rps']:8.0f} req/s "
                        f"errors {res['errors']} non-2xx {res['status_errors']}",
                        flush=True,
                    )
            _report(results, trips, counted)
    finally:
        for gw, _ in gateways.values():
            gw.stop(grace=10.0)
        drop_schema(args.postgres_url, schema)
        delete_prefix(args.redis_url, prefix)
    return 0


def _limited_key(gw: Gateway) -> str:
    """A key whose every limit is checked but never reached in a run."""
    body = {
        "name": "bench",
        "limits": {
            "requests_per_minute": 1_000_000_000,
            "tokens_per_minute": 1_000_000_000_000,
            "monthly_budget_usd": 1_000_000.0,
        },
    }
    req = urllib.request.Request(
        f"{gw.running.http_url}/admin/v1/keys",
        data=orjson.dumps(body),
        headers={"authorization": f"Bearer {gw.key}", "content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        secret: str = orjson.loads(r.read())["secret"]
    return secret


def _round_trips(gw: Gateway) -> float:
    req = urllib.request.Request(
        f"{gw.running.http_url}/metrics", headers={"authorization": f"Bearer {gw.key}"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        found = ROUND_TRIPS.findall(r.read())
    return sum(float(v) for v in found)


def _report(results: dict[str, list[dict[str, Any]]], trips: float, requests: int) -> None:
    base = statistics.median(r["rps"] for r in results["embedded --workers 1"])
    print()
    print("| process model | req/s @c64 | CPU ms/req | vs embedded 1 worker | errors |")
    print("|---|---|---|---|---|")
    for name, runs in results.items():
        rps = statistics.median(r["rps"] for r in runs)
        cpu = statistics.median(r["cpu"]["gateway"]["ms_per_req"] or 0.0 for r in runs)
        errors = sum(r["errors"] for r in runs)
        print(f"| {name} | {rps:,.0f} | {cpu:.3f} | {rps / base:.2f}x | {errors} |")
    if requests:
        print(
            f"\nRedis round trips per request (distributed, 1 worker): {trips / requests:.2f}"
            f" ({trips:.0f} round trips over {requests} requests)"
        )


if __name__ == "__main__":
    raise SystemExit(main())
