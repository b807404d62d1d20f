"""Load runs: wrk and bench/loadgen.py against one target, and the interleaved matrix."""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from harness import BENCH_DIR
from harness.config import BASELINE, PY, client_list
from harness.h2load import run_h2load
from harness.process import cpu_entry, cpu_since, cpu_snapshot, rss_snapshot
from harness.profiling import finish_profile, start_profile


@dataclass
class Target:
    """Something to send load to: a name, a protocol and where."""

    name: str  # direct, shim, grpc, floor; shim@baseline, grpc@baseline
    proto: str  # "http" or "grpc"
    where: str  # URL or host:port
    key: str
    pids: dict[str, int] = field(default_factory=dict)  # CPU-sampled: role -> pid

    @property
    def kind(self) -> str:
        """The name without the checkout suffix: shim@baseline is a shim."""
        return self.name.removesuffix(BASELINE)


def run_wrk(t: Target, body: Path, conns: int, seconds: float, warmup: float) -> dict[str, Any]:
    """wrk -t1 -c<conns>: a warm-up run, then a measured run with /proc CPU sampling."""
    env = dict(os.environ, BENCH_BODY=str(body), BENCH_HEADERS=f"Authorization: Bearer {t.key}")

    def wrk(secs: float) -> tuple[str, float]:
        cmd = [
            "wrk",
            "-t1",
            f"-c{conns}",
            f"-d{max(1, round(secs))}s",
            "--timeout=10s",
            "-s",
            str(BENCH_DIR / "wrk_chat.lua"),
            t.where,
        ]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=secs + 60)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return out.stdout + out.stderr, cpu

    if warmup > 0:
        wrk(warmup)
    p0 = cpu_snapshot(t.pids)
    w0 = time.perf_counter()
    text, client_cpu = wrk(seconds)
    wall = time.perf_counter() - w0
    cpu = cpu_since(t.pids, p0)
    rss = rss_snapshot(t.pids)
    line = next((x for x in text.splitlines() if x.startswith("BENCHJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result: {text[-500:]}")
    res: dict[str, Any] = orjson.loads(line[len("BENCHJSON ") :])
    n = res["requests"]
    res["errors"] = res["socket_errors"] + res["status_errors"] + res["timeouts"]
    res["cpu"] = {"client": cpu_entry(client_cpu, res["duration_s"], n)}
    for name, c in cpu.items():
        res["cpu"][name] = cpu_entry(c, wall, n) | {"rss_mb": rss[name]}
    return res


def run_loadgen(
    t: Target, mode: str, body: Path, extra: list[str], timeout: float
) -> dict[str, Any]:
    """bench/loadgen.py in its own process (so its CPU is its own), one JSON result."""
    cmd = [PY, str(BENCH_DIR / "loadgen.py"), f"{t.proto}-{mode}", "--body", str(body)]
    if t.proto == "http":
        cmd += ["--url", t.where, "-H", f"Authorization: Bearer {t.key}"]
    else:
        cmd += ["--target", t.where, "--key", t.key]
    for name, pid in t.pids.items():
        cmd += ["--sample", f"{name}={pid}"]
    out = subprocess.run(cmd + extra, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"loadgen {mode} failed: {out.stderr.strip()[-800:]}")
    res: dict[str, Any] = orjson.loads(out.stdout.strip().splitlines()[-1])
    return res


def measure(
    args: argparse.Namespace,
    test: str,
    t: Target,
    client: str,
    bodies: dict[str, Path],
    expect: str,
) -> dict[str, Any]:
    """One measured run of ``test`` (c1, c64 or stream) against ``t`` with ``client``."""
    if test == "stream":
        n = args.stream_requests
        return run_loadgen(
            t,
            "stream",
            bodies["stream"],
            ["-n", str(n), "--warmup", str(args.stream_warmup), "--expect-text", expect],
            timeout=120 + n,
        )
    conns = 1 if test == "c1" else args.concurrency
    secs = args.c1_seconds if test == "c1" else args.conc_seconds
    if client == "wrk":
        return run_wrk(t, bodies["plain"], conns, secs, args.warmup_seconds)
    if client == "h2load":
        return run_h2load(t.where, t.key, t.pids, bodies["grpc"], conns, secs, args.warmup_seconds)
    mode = "seq" if test == "c1" else "conc"
    extra = ["--seconds", str(secs), "--warmup-seconds", str(args.warmup_seconds)]
    if mode == "conc":
        extra += ["-c", str(conns)]
    return run_loadgen(t, mode, bodies["plain"], extra, timeout=secs + args.warmup_seconds + 120)


# ---------------------------------------------------------------------------- the matrix


@dataclass
class Plan:
    """What one round runs: (test, target, client) in order; rotated each round."""

    c1: list[tuple[Target, str]]
    conc: list[tuple[Target, str]]
    stream: list[Target]


def make_plan(
    http_targets: list[Target], grpc_targets: list[Target], http_client: str, grpc_client: str
) -> Plan:
    """Every target under each test: HTTP ones with the HTTP client(s), gRPC with h2load and
    grpc.aio (streams always with the Python clients, which time the first token)."""
    grpc = [(t, c) for c in client_list(grpc_client) for t in grpc_targets]
    return Plan(
        c1=[(t, c) for c in client_list(http_client) for t in http_targets] + grpc,
        conc=[(t, http_client) for t in http_targets] + grpc,
        stream=http_targets + grpc_targets,
    )


def rotate(items: list[Any], k: int) -> list[Any]:
    """``items`` rotated left by ``k``."""
    if not items:
        return items
    k %= len(items)
    return items[k:] + items[:k]


def alternate_baseline(jobs: list[tuple[Target, str]], rnd: int) -> list[tuple[Target, str]]:
    """In even rounds each target swaps places with its @baseline twin.

    Rotation alone keeps shim just before shim@baseline in most rounds; swapping makes
    each of the two go first in every other round, so neither gains from its position.
    """
    if rnd % 2:
        return jobs
    out = list(jobs)
    where = {(t.name, client): i for i, (t, client) in enumerate(jobs)}
    for (name, client), i in where.items():
        j = where.get((name + BASELINE, client))
        if j is not None:
            out[i], out[j] = out[j], out[i]
    return out


def run_matrix(
    args: argparse.Namespace,
    plan: Plan,
    bodies: dict[str, Path],
    expect: str,
    record: Callable[[dict[str, Any]], None],
) -> None:
    """Runs every round; each entry goes to ``record`` as soon as it is measured."""
    for rnd in range(1, args.rounds + 1):
        # Each round starts each test with a different target, so that drift on a shared
        # machine does not always favour the same one.
        k = rnd - 1
        for test in args.tests:
            if test == "c1":
                jobs: list[tuple[Target, str]] = rotate(plan.c1, k)
            elif test == "c64":
                jobs = rotate(plan.conc, k)
            else:
                jobs = [(t, "python") for t in rotate(plan.stream, k)]
            jobs = alternate_baseline(jobs, rnd)
            for t, client in jobs:
                entry: dict[str, Any] = {
                    "round": rnd,
                    "test": test,
                    "target": t.name,
                    "client": client,
                    "at": time.strftime("%H:%M:%S"),
                }
                spy = None
                if t.kind in ("shim", "grpc"):
                    spy = start_profile(args, t.pids["gateway"], f"{t.name}-{client}", test, rnd)
                try:
                    entry["result"] = measure(args, test, t, client, bodies, expect)
                except Exception as e:  # one failed run is recorded; the others go on
                    entry["error"] = str(e)[:1500]
                finally:
                    if spy is not None:
                        entry["profile"] = finish_profile(*spy)
                record(entry)
                time.sleep(args.pause)
