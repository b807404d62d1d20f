"""Switchboard benchmark: direct calls vs. the HTTP shim vs. gRPC, in one run, interleaved.

One command starts a fast fake OpenAI upstream (bench/fake_upstream.py) and the gateway on free
loopback ports with a temporary data dir, then measures, in rounds whose target order rotates:

    c1      concurrency 1, closed loop for --c1-seconds after a warm-up: p50/p90/p99
    c64     concurrency 64 (--concurrency), closed loop: requests/s, p50/p99, CPU ms per request
            of the gateway, the upstream and the load generator (from /proc/<pid>/stat, rusage)
    stream  --stream-requests sequential streamed requests: time to first content chunk and to
            the end of the stream

HTTP load comes from wrk when it is installed (apt-get install -y wrk) and from
bench/loadgen.py (aiohttp) otherwise; gRPC unary load comes from h2load (apt-get install -y
nghttp2-client; one connection, gRPC-framed body, each answer checked by its size) when it is
installed and from bench/loadgen.py (grpc.aio) always, so the two surfaces can be compared with
C clients of the same weight; streams come from bench/loadgen.py.
It prints a table with the added latency against direct calls and the targets with PASS/FAIL,
and writes bench/results/bench-<stamp>.json and .md.

    python bench/run.py            # ~3-4 minutes
    python bench/run.py --quick    # < 1 minute
    python bench/run.py --floor    # also a do-nothing gRPC servicer: what grpcio alone costs
    python bench/run.py --baseline ../base   # also the gateway of another checkout, side by side
    python bench/run.py --tracing --baseline .   # tracing's cost: this gateway exporting
                                   # OTLP traces beside the same code with tracing off

Everything binds 127.0.0.1; every load run is bounded in time or count. The code is in
bench/harness/ (process, load, summary, report, session); this file is the command line.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# The harness package sits next to this file; this also makes `python -m bench.run` work.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import BENCH_DIR
from harness.report import meta
from harness.session import Session, keep_gateway_logs, run_session, stop_all
from harness.summary import TARGETS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, with --quick and the test names resolved."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="1 round of 3 s runs, 50 streams (<1 min)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--tests", default="c1,c64,stream", help="comma list of c1,c64,stream")
    p.add_argument("--c1-seconds", type=float, default=8.0)
    p.add_argument("--conc-seconds", type=float, default=8.0)
    p.add_argument("--warmup-seconds", type=float, default=2.0)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--stream-requests", type=int, default=300)
    p.add_argument("--stream-warmup", type=int, default=20)
    p.add_argument("--pause", type=float, default=0.5, help="seconds between runs")
    p.add_argument(
        "--client",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="HTTP load generator (auto: wrk when installed)",
    )
    p.add_argument(
        "--grpc-client",
        choices=["auto", "h2load", "python"],
        default="auto",
        help="gRPC unary load: h2load and grpc.aio, or grpc.aio only (auto: h2load when installed)",
    )
    p.add_argument(
        "--floor",
        action="store_true",
        help="also measure a do-nothing gRPC ChatService (grpcio's own cost)",
    )
    p.add_argument(
        "--no-gateway", action="store_true", help="measure direct calls only (harness check)"
    )
    p.add_argument(
        "--baseline",
        metavar="DIR",
        help="also measure the gateway of checkout DIR (e.g. a worktree of an older commit) "
        "as shim@baseline and grpc@baseline, in the same rounds, and report current/baseline",
    )
    p.add_argument(
        "--gateway-cmd",
        help="command that starts this checkout's gateway CLI (default: python -m server, run "
        "in this checkout; the --baseline gateway always uses python -m server in DIR)",
    )
    p.add_argument(
        "--tracing",
        action="store_true",
        help="the gateway (not --baseline) exports OpenTelemetry traces over OTLP/HTTP to the "
        "fake upstream's do-nothing collector; with --baseline . that is tracing's overhead",
    )
    p.add_argument("--start-timeout", type=float, default=30.0)
    p.add_argument(
        "--pin",
        action="store_true",
        help="pin the gateway to CPU 0, upstream and load generators to CPU 1",
    )
    p.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="the gateway's logging.level (default: its own default)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="py-spy record the gateway during shim/gRPC runs (perturbs timings)",
    )
    p.add_argument("--profile-tests", default="c64,stream", help="tests to profile")
    p.add_argument("--profile-rate", type=int, default=200, help="py-spy samples per second")
    p.add_argument("--out", default=str(BENCH_DIR / "results"))
    p.add_argument("--check", action="store_true", help="exit 2 when a target FAILs")
    a = p.parse_args(argv)
    if a.quick:
        a.rounds, a.c1_seconds, a.conc_seconds, a.warmup_seconds = 1, 3.0, 3.0, 1.0
        a.stream_requests, a.stream_warmup, a.pause = 50, 10, 0.2
    a.tests = [t.strip() for t in a.tests.split(",") if t.strip()]
    a.tests = ["c64" if t in ("conc", f"c{a.concurrency}") else t for t in a.tests]
    a.profile_tests = [t.strip() for t in a.profile_tests.split(",") if t.strip()]
    a.stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    bad = set(a.tests) - {"c1", "c64", "stream"}
    if bad:
        p.error(f"unknown tests: {', '.join(sorted(bad))}")
    if a.baseline:
        root = Path(a.baseline).expanduser().resolve()
        if not (root / "server" / "__main__.py").is_file():
            p.error(f"--baseline {a.baseline}: no server/__main__.py there (not a checkout?)")
        a.baseline = str(root)
    return a


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark; the exit code (0 ok, 1 a run or path failed, 2 --check FAIL)."""
    args = parse_args(argv)
    have_wrk = shutil.which("wrk") is not None
    if args.client == "wrk" and not have_wrk:
        sys.exit(
            "wrk not found: install it with `apt-get install -y wrk` (Debian/Ubuntu), "
            "or run with --client python"
        )
    http_client = "wrk" if have_wrk and args.client != "python" else "python"
    if http_client == "python" and args.client == "auto":
        print(
            "note: wrk not found (`apt-get install -y wrk`); HTTP load uses the Python "
            "load generator, which costs more client CPU",
            file=sys.stderr,
        )
    have_h2load = shutil.which("h2load") is not None
    if args.grpc_client == "h2load" and not have_h2load:
        sys.exit("h2load not found: install it with `apt-get install -y nghttp2-client`")
    grpc_client = "h2load" if have_h2load and args.grpc_client != "python" else "python"
    cpus = os.sched_getaffinity(0)
    pin_gw = pin_rest = None
    if args.pin:
        if len(cpus) < 2:
            sys.exit("--pin needs 2 CPUs")
        first, second = sorted(cpus)[:2]
        pin_gw, pin_rest = {first}, {second}
        os.sched_setaffinity(0, pin_rest)  # load generators inherit this

    stamp = args.stamp
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"bench-{stamp}.json"
    raw: dict[str, Any] = {
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "meta": meta(),
        "args": {k: v for k, v in vars(args).items() if k not in ("out",)}
        | {"http_client": http_client, "grpc_client": grpc_client},
        "targets": TARGETS,
        "runs": [],
    }

    tmp = Path(tempfile.mkdtemp(prefix="switchboard-bench-"))
    session = Session(
        args, raw, tmp, json_path, http_client, grpc_client, pin_gw=pin_gw, pin_rest=pin_rest
    )
    exit_code = 0
    try:
        with _stop_on(signal.SIGTERM):
            exit_code = run_session(session)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        exit_code = 130
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        exit_code = 1
    finally:
        stop_all(session)
        if exit_code or (raw.get("gateway") or {}).get("problems"):
            keep_gateway_logs(session, out_dir)
        shutil.rmtree(session.tmp, ignore_errors=True)
    return exit_code


@contextlib.contextmanager
def _stop_on(sig: int) -> Iterator[None]:
    def raise_interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(sig, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(sig, old)


if __name__ == "__main__":
    sys.exit(main())
