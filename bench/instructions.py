"""Instructions per request: the gateway under callgrind, a fixed number of requests per case.

CPU seconds from ``/proc`` move by ±5% between runs on these shared VMs, so a change worth 1-3%
cannot be told from noise by ``bench/run.py``. Callgrind counts the user-space instructions the
gateway's process executes (every thread: the event loop, the ledger's writer), and the same
code, inputs and request count give counts within 1-3% of each other (the timers' share, which
goes with wall time rather than with requests, is what moves). It starts
``bench/fake_upstream.py`` and the gateway (this checkout; with ``--baseline DIR`` also that one)
under ``valgrind --tool=callgrind --instr-atstart=no``; for each case it warms up, switches
instrumentation on, sends a fixed number of requests one after another with
``bench/loadgen.py``, waits for the ledger's flush, switches it off and dumps:

    shim         non-streamed POST /v1/chat/completions
    grpc         ChatService.Chat
    shim-stream  streamed POST /v1/chat/completions (20 content chunks)
    grpc-stream  ChatService.StreamChat

Both checkouts' gateways run side by side; in each of ``--rounds`` rounds every case is
measured on each, the order alternating between rounds. It prints instructions per request for
each case and checkout (median over rounds, with the rounds' spread), the ratio current /
baseline, and with ``--top K`` the K functions of most self cost per case in round 1
(``callgrind_annotate``).

    python bench/instructions.py [--requests 1000] [--streams 200] [--rounds 2]
                                 [--baseline ../wt/base] [--top 10]

What it does not see: time in the kernel (syscalls), cache misses and waiting; it is the tool
for comparing two versions of the same work, not a latency figure. Under callgrind the gateway
runs about 50 times slower, so its watchdog and flush timers fire more often per request than
at full speed; both checkouts pay that alike. Needs valgrind (``apt-get install -y valgrind``).
Everything binds 127.0.0.1; every case is bounded in count.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (str(ROOT), str(ROOT / "bench")):
    if path not in sys.path:
        sys.path.insert(0, path)

import orjson  # noqa: E402
from harness.config import BODY, PY, STREAM_BODY  # noqa: E402
from harness.load import Target, run_loadgen  # noqa: E402
from harness.process import Gateway, fake_upstream, launch_gateway  # noqa: E402

CASES = ("shim", "grpc", "shim-stream", "grpc-stream")
# Seconds after the last request before instrumentation stops: the ledger writes its rows
# every 0.2 s of (slowed) wall time; this leaves room for that flush and the log's.
SETTLE = 2.0


@dataclass
class Case:
    name: str
    proto: str  # "http" or "grpc"
    mode: str  # loadgen mode without the proto: "seq" or "stream"


def case(name: str) -> Case:
    proto = "http" if name.startswith("shim") else "grpc"
    return Case(name, proto, "stream" if name.endswith("stream") else "seq")


def control(gw: Gateway, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(gw.pid)], check=True, capture_output=True)


def totals(dump: Path) -> int:
    """The ``totals:`` line of one callgrind dump: the instructions it counted. (Its header's
    ``summary:`` line reads 0 in dumps asked for with ``callgrind_control -d``.)"""
    for line in reversed(dump.read_text(errors="replace").splitlines()):
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {dump}")


def top(dump: Path, k: int) -> list[str]:
    """The ``k`` functions of most self cost in ``dump``, as callgrind_annotate prints them."""
    out = subprocess.run(
        ["callgrind_annotate", "--threshold=100", str(dump)], capture_output=True, text=True
    ).stdout
    rows = [line for line in out.splitlines() if "(" in line and "%)" in line]
    return [row.split("[")[0].strip() for row in rows[1 : k + 1]]  # rows[0]: PROGRAM TOTALS


def measure(gw: Gateway, c: Case, bodies: dict[str, Path], a: argparse.Namespace) -> Path:
    """One case against ``gw``: warm-up, then the counted requests; the dump it left."""
    where = gw.running.http_url + "/v1/chat/completions" if c.proto == "http" else gw.grpc_target
    target = Target(c.name, c.proto, where, gw.key)
    body = bodies["stream" if c.mode == "stream" else "plain"]
    n = a.streams if c.mode == "stream" else a.requests
    if c.mode == "stream":
        extra = ["-n", str(a.warmup), "--warmup", "0"]
        counted = ["-n", str(n), "--warmup", "0"]
    else:
        extra = ["--max-requests", str(a.warmup), "--seconds", "600", "--warmup-seconds", "0"]
        counted = ["--max-requests", str(n), "--seconds", "3600", "--warmup-seconds", "0"]
    run_loadgen(target, c.mode, body, extra, timeout=600)
    dumps = set(a.out.glob(f"{gw.name}.out*"))
    control(gw, "-z")
    control(gw, "-i", "on")
    res = run_loadgen(target, c.mode, body, counted, timeout=3600)
    time.sleep(SETTLE)
    control(gw, "-i", "off")
    control(gw, "-d")
    if res["errors"]:
        raise RuntimeError(f"{gw.name} {c.name}: {res['errors']} of {n} requests failed")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        fresh = sorted(set(a.out.glob(f"{gw.name}.out*")) - dumps, key=lambda p: p.stat().st_mtime)
        if fresh:
            return fresh[-1]
        time.sleep(0.2)
    raise RuntimeError(f"callgrind wrote no dump for {gw.name} {c.name}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--requests", type=int, default=1000, help="non-streamed requests per case")
    p.add_argument("--streams", type=int, default=200, help="streamed requests per case")
    p.add_argument("--warmup", type=int, default=200, help="requests before counting starts")
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated: {CASES}")
    p.add_argument("--baseline", type=Path, help="another checkout, measured the same way")
    p.add_argument("--rounds", type=int, default=2, help="rounds; the order alternates")
    p.add_argument("--top", type=int, default=0, help="also the K functions of most self cost")
    a = p.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        sys.exit("needs valgrind: apt-get install -y valgrind")
    cases = [case(name) for name in a.cases.split(",") if name]
    unknown = [c.name for c in cases if c.name not in CASES]
    if unknown:
        sys.exit(f"unknown cases {unknown}; known: {CASES}")
    checkouts = {"current": ROOT} | ({"baseline": a.baseline.resolve()} if a.baseline else {})
    counts: dict[tuple[str, str], list[float]] = {}
    with ExitStack() as stack:
        a.out = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-instr-")))
        upstream = stack.enter_context(fake_upstream())
        bodies = {"plain": a.out / "body.json", "stream": a.out / "stream.json"}
        bodies["plain"].write_bytes(orjson.dumps(BODY))
        bodies["stream"].write_bytes(orjson.dumps(STREAM_BODY))
        gateways = [start(label, root, upstream, a.out) for label, root in checkouts.items()]
        for gw in gateways:
            stack.callback(gw.stop, 30)
        for rnd in range(a.rounds):
            # Rounds alternate which checkout goes first: the machine's drift favours neither.
            for c in cases:
                for gw in gateways if rnd % 2 == 0 else gateways[::-1]:
                    dump = measure(gw, c, bodies, a)
                    n = a.streams if c.mode == "stream" else a.requests
                    per = totals(dump) / n
                    counts.setdefault((gw.name, c.name), []).append(per)
                    print(f"r{rnd + 1} {gw.name:9s} {c.name:12s} {per:12,.0f} instr/request")
                    for row in top(dump, a.top if rnd == 0 else 0):
                        print(f"    {row}")
    report(cases, counts, bool(a.baseline))


def start(label: str, root: Path, upstream: str, out: Path) -> Gateway:
    """The gateway of checkout ``root`` under callgrind, instrumentation off until a case."""
    valgrind = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}/{label}.out",
    ]
    return launch_gateway(
        label,
        root,
        out / label,
        upstream,
        "sk-bench-upstream",
        command=[*valgrind, PY, "-m", "server"],
        log_level=None,
        cpus=None,
        timeout=300,
    )


def report(cases: list[Case], counts: dict[tuple[str, str], list[float]], baseline: bool) -> None:
    """Median instructions per request over the rounds, the rounds' spread, and the ratio."""

    def cell(values: list[float]) -> str:
        spread = (max(values) - min(values)) / statistics.median(values)
        return f"{statistics.median(values):14,.0f} {100 * spread:6.1f}%"

    header = f"\n{'case':12s} {'current':>14s} {'spread':>7s}"
    if baseline:
        header += f" {'baseline':>14s} {'spread':>7s} {'ratio':>7s}"
    print(header)
    for c in cases:
        current = counts["current", c.name]
        line = f"{c.name:12s} {cell(current)}"
        if baseline:
            base = counts["baseline", c.name]
            ratio = statistics.median(current) / statistics.median(base)
            line += f" {cell(base)} {ratio:7.3f}"
        print(line)
    print("median over rounds; spread = (max - min) / median of one target's rounds")


if __name__ == "__main__":
    main()
