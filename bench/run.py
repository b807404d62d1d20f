"""Switchboard benchmark: direct calls vs. the HTTP shim vs. gRPC, in one run, interleaved.

One command starts a fast fake OpenAI upstream (bench/fake_upstream.py) and the gateway on free
loopback ports with a temporary data dir, then measures, in rounds whose target order rotates:

    c1      concurrency 1, closed loop for --c1-seconds after a warm-up: p50/p90/p99
    c64     concurrency 64 (--concurrency), closed loop: requests/s, p50/p99, CPU ms per request
            of the gateway, the upstream and the load generator (from /proc/<pid>/stat, rusage)
    stream  --stream-requests sequential streamed requests: time to first content chunk and to
            the end of the stream

HTTP load comes from wrk when it is installed (apt-get install -y wrk) and from
bench/loadgen.py (aiohttp) otherwise; gRPC load always comes from bench/loadgen.py (grpc.aio).
It prints a table with the added latency against direct calls and the targets with PASS/FAIL,
and writes bench/results/bench-<stamp>.json and .md.

    python bench/run.py            # ~3-4 minutes
    python bench/run.py --quick    # < 1 minute
    python bench/run.py --floor    # also a do-nothing gRPC servicer: what grpcio alone costs

Everything binds 127.0.0.1; every load run is bounded in time or count.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import resource
import secrets
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from fake_upstream import streamed_text  # noqa: E402
from loadgen import cpu_seconds, rss_mb  # noqa: E402

PY = sys.executable

BODY = {
    "model": "mock-model",
    "messages": [
        {
            "role": "system",
            "content": "You are a helpful assistant. Answer concisely and accurately.",
        },
        {
            "role": "user",
            "content": "What is the capital of France? Please answer in one short sentence.",
        },
    ],
    "temperature": 0.2,
    "max_tokens": 64,
}
STREAM_BODY = BODY | {"stream": True, "stream_options": {"include_usage": True}}

CONFIG_YAML = """\
# Written by bench/run.py: one route so the benchmark body's model "mock-model" resolves.
routes:
  - name: mock-model
    strategy: ordered
    deployments: ["openai/mock-model"]
"""

# Targets from the issue; "added" is always against direct calls measured in the same run.
TARGETS = {
    "shim_added_p50_c1_ms": 0.8,
    "grpc_added_p50_c1_ms": 0.6,
    "shim_rps_c64": 1500.0,
    "shim_ttft_added_p50_ms": 2.0,
    "grpc_ttft_added_p50_ms": 2.0,
}

# Recorded in ../shared/bench-peers/peers-results.md (2026-11-25, same kind of 2-core box,
# one process each); printed for context only, they are not from this run.
PEERS = (
    "Peers (recorded earlier, NOT this run; direct c1 p50 was 0.087 ms with wrk then): "
    "Portkey +0.51 ms p50 / +4.3 ms p99 at c1, 1,929 req/s at c64, 0.60 CPU ms/req, "
    "TTFT +27.9 ms; LiteLLM +7.4 ms p50, 144 req/s, 7.0 CPU ms/req, TTFT +8.3 ms."
)


# ---------------------------------------------------------------------------- processes


def _pin(cpus: set[int] | None) -> Callable[[], None] | None:
    if not cpus:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


@dataclass
class Proc:
    """A server subprocess in its own session, so stopping it stops all it started."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 5.0) -> None:
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait(5)

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def start_listening(
    name: str, cmd: list[str], tmp: Path, cpus: set[int] | None, timeout: float = 20.0
) -> tuple[Proc, int]:
    """Starts a server that prints ``LISTENING <port>`` on stdout; returns it and its port."""
    log = tmp / f"{name}.log"
    with log.open("wb") as err:
        popen = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_pin(cpus),
        )
    proc = Proc(name, popen, log)
    assert popen.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = popen.stdout.readline().decode(errors="replace")
        if line.startswith("LISTENING "):
            return proc, int(line.split()[1])
        if not line and not proc.alive():
            break
    proc.stop()
    raise RuntimeError(f"{name} did not start:\n{proc.log_tail()}")


def gateway_command(args: argparse.Namespace) -> list[str]:
    """The gateway's command line: --gateway-cmd, else the `switchboard` script, else -m server."""
    if args.gateway_cmd:
        return shlex.split(args.gateway_cmd)
    script = Path(PY).with_name("switchboard")
    if script.exists():
        return [str(script)]
    found = shutil.which("switchboard")
    return [found] if found else [PY, "-m", "server"]


@dataclass
class Gateway:
    """The gateway under test: process, ports and the key the benchmark calls it with."""

    proc: Proc
    http_port: int
    grpc_port: int
    key: str
    http_ok: str | None = None  # None when it works, else why not

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/v1/chat/completions"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"


def start_gateway(
    args: argparse.Namespace,
    tmp: Path,
    upstream_port: int,
    upstream_key: str,
    cpus: set[int] | None,
) -> Gateway:
    """Starts Switchboard on ephemeral ports pointed at the fake upstream; waits for /healthz.

    The gateway writes the ports it bound to ``<data-dir>/ports.json``; that is how port 0 is
    resolved without a race.
    """
    cfg = tmp / "switchboard.yaml"
    cfg.write_text(
        CONFIG_YAML + (f"logging:\n  level: {args.log_level}\n" if args.log_level else "")
    )
    data = tmp / "data"
    data.mkdir()
    key = "sk-bench-" + secrets.token_hex(16)
    env = dict(os.environ)
    env.update(
        OPENAI_API_KEY=upstream_key,
        OPENAI_BASE_URL=f"http://127.0.0.1:{upstream_port}/v1",
        SWITCHBOARD_MASTER_KEY=key,
    )
    for var in ("SWITCHBOARD_CONFIG", "SWITCHBOARD_DATA_DIR"):
        env.pop(var, None)
    cmd = [
        *gateway_command(args),
        "serve",
        "--config",
        str(cfg),
        "--host",
        "127.0.0.1",
        "--http-port",
        "0",
        "--grpc-port",
        "0",
        "--data-dir",
        str(data),
    ]
    log = tmp / "gateway.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=tmp,
            start_new_session=True,
            preexec_fn=_pin(cpus),
        )
    proc = Proc("gateway", popen, log)
    ports_file = data / "ports.json"
    deadline = time.monotonic() + args.start_timeout
    ports: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(
                f"gateway exited with {popen.returncode}: {shlex.join(cmd)}\n{proc.log_tail()}"
            )
        if ports is None:
            with contextlib.suppress(OSError, ValueError):
                got = orjson.loads(ports_file.read_bytes())
                if got.get("pid") == proc.pid:
                    ports = got
        if ports is not None:
            if not ports.get("http_port"):
                return Gateway(
                    proc,
                    0,
                    int(ports["grpc_port"]),
                    key,
                    http_ok="the gateway serves no HTTP shim (http_port null)",
                )
            with contextlib.suppress(OSError, urllib.error.URLError):
                url = f"http://127.0.0.1:{ports['http_port']}/healthz"
                with urllib.request.urlopen(url, timeout=1) as r:
                    if r.status == 200:
                        return Gateway(proc, int(ports["http_port"]), int(ports["grpc_port"]), key)
        time.sleep(0.1)
    proc.stop()
    raise RuntimeError(
        f"gateway not ready (ports.json + /healthz) after "
        f"{args.start_timeout:.0f}s:\n{proc.log_tail()}"
    )


# ---------------------------------------------------------------------------- smoke checks


def smoke_http(url: str, key: str, expect: str) -> str | None:
    """None when one plain and one streamed request through ``url`` give the fake's answer."""
    from fake_upstream import COMPLETION_TEXT

    hdrs = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    try:
        req = urllib.request.Request(url, data=orjson.dumps(BODY), headers=hdrs)
        with urllib.request.urlopen(req, timeout=10) as r:
            got = orjson.loads(r.read())["choices"][0]["message"]["content"]
        if got != COMPLETION_TEXT:
            return f"unexpected content {got[:80]!r}"
        req = urllib.request.Request(url, data=orjson.dumps(STREAM_BODY), headers=hdrs)
        with urllib.request.urlopen(req, timeout=10) as r:
            text = []
            for raw in r.read().split(b"\n"):
                if raw.startswith(b"data:") and raw[5:].strip() != b"[DONE]":
                    for ch in orjson.loads(raw[5:]).get("choices") or ():
                        text.append((ch.get("delta") or {}).get("content") or "")
        if "".join(text) != expect:
            return f"stream text differs: {''.join(text)[:80]!r}"
    except urllib.error.HTTPError as e:
        return f"HTTP {e.code}: {e.read()[:300].decode(errors='replace')}"
    except (OSError, ValueError, KeyError, IndexError, TypeError) as e:
        return f"{type(e).__name__}: {e}"
    return None


def smoke_grpc(target: str, key: str, expect: str) -> str | None:
    """None when one Chat and one StreamChat over gRPC give the fake's answer."""
    try:
        import grpc
        from fake_upstream import COMPLETION_TEXT
        from loadgen import chat_request
        from switchboard.v1 import chat_pb2, chat_pb2_grpc
    except ImportError as e:
        return f"cannot import gRPC stubs: {e}"
    md = (("authorization", f"Bearer {key}"),)
    req = chat_request(BODY)
    try:
        with grpc.insecure_channel(target) as ch:
            grpc.channel_ready_future(ch).result(timeout=10)
            stub = chat_pb2_grpc.ChatServiceStub(ch)
            resp = stub.Chat(req, metadata=md, timeout=10)
            got = "".join(p.text for p in resp.message.content)
            if got != COMPLETION_TEXT:
                return f"unexpected content {got[:80]!r}"
            frames = list(
                stub.StreamChat(chat_pb2.StreamChatRequest(chat=req), metadata=md, timeout=10)
            )
            text = "".join(f.text.text for f in frames if f.WhichOneof("frame") == "text")
            if text != expect:
                return f"stream text differs: {text[:80]!r}"
            if not frames or frames[-1].WhichOneof("frame") != "end":
                return "stream did not finish with an end frame"
    except grpc.RpcError as e:
        return f"gRPC {e.code().name}: {e.details()}"
    except grpc.FutureTimeoutError:
        return "gRPC port not ready after 10 s"
    return None


# ---------------------------------------------------------------------------- load runs


@dataclass
class Target:
    """Something to send load to: a name, a protocol and where."""

    name: str
    proto: str  # "http" or "grpc"
    where: str  # URL or host:port
    key: str
    pids: dict[str, int] = field(default_factory=dict)  # CPU-sampled: role -> pid


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
            str(HERE / "wrk_chat.lua"),
            t.where,
        ]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=secs + 60)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return out.stdout + out.stderr, cpu

    if warmup > 0:
        wrk(warmup)
    p0 = {n: cpu_seconds(p) for n, p in t.pids.items()}
    w0 = time.perf_counter()
    text, client_cpu = wrk(seconds)
    wall = time.perf_counter() - w0
    cpu = {n: cpu_seconds(p) - p0[n] for n, p in t.pids.items()}
    line = next((x for x in text.splitlines() if x.startswith("BENCHJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result: {text[-500:]}")
    res: dict[str, Any] = orjson.loads(line[len("BENCHJSON ") :])
    n = res["requests"]
    res["errors"] = res["socket_errors"] + res["status_errors"] + res["timeouts"]
    res["cpu"] = {"client": _cpu(client_cpu, res["duration_s"], n)}
    for name, c in cpu.items():
        res["cpu"][name] = _cpu(c, wall, n) | {"rss_mb": rss_mb(t.pids[name])}
    return res


def _cpu(cpu_s: float, wall: float, n: int) -> dict[str, Any]:
    return {
        "cpu_s": round(cpu_s, 3),
        "pct": round(100 * cpu_s / wall, 1) if wall else None,
        "ms_per_req": round(1000 * cpu_s / n, 4) if n else None,
    }


def run_loadgen(
    t: Target, mode: str, body: Path, extra: list[str], timeout: float
) -> dict[str, Any]:
    """bench/loadgen.py in its own process (so its CPU is its own), one JSON result."""
    cmd = [PY, str(HERE / "loadgen.py"), f"{t.proto}-{mode}", "--body", str(body)]
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


# ---------------------------------------------------------------------------- the matrix


@dataclass
class Plan:
    """What one round runs: (test, target, client) in order; rotated each round."""

    c1: list[tuple[Target, str]]
    conc: list[tuple[Target, str]]
    stream: list[Target]


def rotate(items: list[Any], k: int) -> list[Any]:
    if not items:
        return items
    k %= len(items)
    return items[k:] + items[:k]


def run_matrix(
    args: argparse.Namespace,
    plan: Plan,
    bodies: dict[str, Path],
    expect: str,
    record: Callable[[dict[str, Any]], None],
) -> None:
    """Runs every round; each entry goes to ``record`` as soon as it is measured."""
    for rnd in range(1, args.rounds + 1):
        k = rnd - 1
        for test in args.tests:
            if test == "c1":
                jobs: list[tuple[Target, str]] = rotate(plan.c1, k)
            elif test == "c64":
                jobs = rotate(plan.conc, k)
            else:
                jobs = [(t, "python") for t in rotate(plan.stream, k)]
            for t, client in jobs:
                entry: dict[str, Any] = {
                    "round": rnd,
                    "test": test,
                    "target": t.name,
                    "client": client,
                    "at": time.strftime("%H:%M:%S"),
                }
                spy = start_profile(args, t, test, rnd)
                try:
                    entry["result"] = measure(args, test, t, client, bodies, expect)
                except Exception as e:  # one failed run is recorded; the others go on
                    entry["error"] = str(e)[:1500]
                finally:
                    if spy is not None:
                        entry["profile"] = finish_profile(*spy)
                record(entry)
                time.sleep(args.pause)


def start_profile(
    args: argparse.Namespace, t: Target, test: str, rnd: int
) -> tuple[subprocess.Popen[bytes], Path] | None:
    """py-spy record on the gateway for this run, when --profile asks for it."""
    if not args.profile or t.name not in ("shim", "grpc") or test not in args.profile_tests:
        return None
    pyspy = Path(PY).with_name("py-spy")
    exe = str(pyspy) if pyspy.exists() else shutil.which("py-spy")
    if exe is None:
        print("note: py-spy not found (pip install py-spy); not profiling", file=sys.stderr)
        args.profile = False
        return None
    out = Path(args.out) / f"profile-{args.stamp}-{test}-{t.name}-r{rnd}.txt"
    cmd = [
        exe,
        "record",
        "--pid",
        str(t.pids["gateway"]),
        "--rate",
        str(args.profile_rate),
        "--format",
        "raw",
        "--output",
        str(out),
    ]
    popen = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    time.sleep(0.3)  # let it attach before the load starts
    return popen, out


def finish_profile(popen: subprocess.Popen[bytes], out: Path) -> dict[str, Any]:
    """Stops py-spy (SIGINT makes it write the file) and summarises the hotspots."""
    from profile_top import summarize as summarize_profile

    popen.send_signal(signal.SIGINT)
    try:
        _, err = popen.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        popen.kill()
        _, err = popen.communicate()
    if not out.exists():
        return {"error": err.decode(errors="replace")[-500:]}
    return {"file": str(out)} | summarize_profile(out, top=15, focus="server/")


def measure(
    args: argparse.Namespace,
    test: str,
    t: Target,
    client: str,
    bodies: dict[str, Path],
    expect: str,
) -> dict[str, Any]:
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
    mode = "seq" if test == "c1" else "conc"
    extra = ["--seconds", str(secs), "--warmup-seconds", str(args.warmup_seconds)]
    if mode == "conc":
        extra += ["-c", str(conns)]
    return run_loadgen(t, mode, bodies["plain"], extra, timeout=secs + args.warmup_seconds + 120)


# ---------------------------------------------------------------------------- summary


def _get(d: Any, path: tuple[str, ...]) -> Any:
    for k in path:
        d = d.get(k) if isinstance(d, dict) else None
    return d


def median(vals: list[Any]) -> float | None:
    v = [x for x in vals if isinstance(x, int | float)]
    return statistics.median(v) if v else None


class Summary:
    """Medians across rounds, and added latency as the median of per-round differences."""

    def __init__(self, runs: list[dict[str, Any]]) -> None:
        self.runs = runs

    def values(self, test: str, target: str, client: str, *path: str) -> list[Any]:
        return [
            _get(r["result"], path)
            for r in self.runs
            if r["test"] == test
            and r["target"] == target
            and r["client"] == client
            and "result" in r
        ]

    def med(self, test: str, target: str, client: str, *path: str) -> float | None:
        return median(self.values(test, target, client, *path))

    def added(
        self, test: str, target: str, client: str, base_client: str, *path: str
    ) -> float | None:
        """Median over rounds of (target - direct) for the same round."""
        by_round: dict[int, dict[str, float]] = {}
        for r in self.runs:
            if r["test"] != test or "result" not in r:
                continue
            v = _get(r["result"], path)
            if not isinstance(v, int | float):
                continue
            if r["target"] == target and r["client"] == client:
                by_round.setdefault(r["round"], {})["t"] = v
            elif r["target"] == "direct" and r["client"] == base_client:
                by_round.setdefault(r["round"], {})["d"] = v
        return median([x["t"] - x["d"] for x in by_round.values() if "t" in x and "d" in x])

    def errors(self, test: str, target: str, client: str) -> int:
        n = 0
        for r in self.runs:
            if r["test"] == test and r["target"] == target and r["client"] == client:
                n += int(_get(r.get("result"), ("errors",)) or 0) + (1 if "error" in r else 0)
        return n


def f(v: float | None, nd: int = 3, sign: bool = False) -> str:
    if v is None:
        return "n/a"
    return f"{v:+.{nd}f}" if sign else f"{v:.{nd}f}"


def verdicts(s: Summary, http_client: str) -> list[dict[str, Any]]:
    """Each issue target with the measured value and PASS/FAIL (n/a when not measured)."""
    rows = [
        (
            "shim_added_p50_c1_ms",
            "shim added p50 @c1",
            "<=",
            s.added("c1", "shim", http_client, http_client, "lat_ms", "p50"),
            "ms",
        ),
        (
            "grpc_added_p50_c1_ms",
            "gRPC added p50 @c1 (vs direct, Python clients)",
            "<=",
            s.added("c1", "grpc", "python", "python", "lat_ms", "p50"),
            "ms",
        ),
        (
            "shim_rps_c64",
            "shim req/s @c64",
            ">=",
            s.med("c64", "shim", http_client, "rps"),
            "req/s",
        ),
        (
            "shim_ttft_added_p50_ms",
            "shim streaming TTFT added p50",
            "<=",
            s.added("stream", "shim", "python", "python", "ttft_ms", "p50"),
            "ms",
        ),
        (
            "grpc_ttft_added_p50_ms",
            "gRPC streaming TTFT added p50",
            "<=",
            s.added("stream", "grpc", "python", "python", "ttft_ms", "p50"),
            "ms",
        ),
    ]
    out = []
    for key, label, op, value, unit in rows:
        goal = TARGETS[key]
        if value is None:
            status = "n/a"
        else:
            status = "PASS" if (value <= goal if op == "<=" else value >= goal) else "FAIL"
        out.append(
            {
                "key": key,
                "label": label,
                "op": op,
                "target": goal,
                "value": None if value is None else round(value, 4),
                "unit": unit,
                "status": status,
            }
        )
    return out


def render(raw: dict[str, Any], s: Summary, http_client: str) -> str:
    """The human-readable report (also written as the .md file)."""
    a = raw["args"]
    lines = [
        f"Switchboard benchmark {raw['started']}  ({raw['meta']['host']})",
        f"rounds={a['rounds']}  c1={a['c1_seconds']}s  c{a['concurrency']}={a['conc_seconds']}s"
        f"  warm-up={a['warmup_seconds']}s  streams={a['stream_requests']}/round"
        f"  HTTP load: {http_client}  gRPC load: python grpc.aio"
        + ("  pinned: gateway cpu0, rest cpu1" if a.get("pin") else ""),
        "Values are medians over rounds; 'added' = median of per-round (target - direct), "
        "same client.",
    ]
    load = raw["meta"].get("loadavg_before")
    if load is not None and load > 0.7:
        lines.append(
            f"!! load average was {load:.2f} before the run: other processes share the CPUs, "
            "expect noisy numbers"
        )
    gw = raw.get("gateway") or {}
    for k, v in (gw.get("problems") or {}).items():
        text = [x for x in v.splitlines() if x.strip()]
        lines.append(f"!! {k} not measured: {text[0][:160] if text else ''}")
        if len(text) > 1:
            lines.append(f"   ... {text[-1].strip()[:160]}")
    lines.append("")
    clients = ["wrk", "python"] if http_client == "wrk" else ["python"]
    tests = a["tests"]
    if "c1" in tests:
        lines += [
            "Latency at concurrency 1 (ms)",
            f"  {'target':<8} {'client':<7} {'reqs':>7} {'p50':>8} {'p90':>8} {'p99':>8}"
            f" {'added p50':>10} {'added p99':>10} {'srv CPU ms/req':>14} {'errors':>6}",
        ]
        rows = [(t, c) for c in clients for t in ("direct", "shim")] + [
            ("grpc", "python"),
            ("floor", "python"),
        ]
        for t, c in rows:
            if not s.values("c1", t, c, "lat_ms", "p50"):
                continue
            base = "direct" if t != "direct" else None
            lines.append(
                f"  {t:<8} {c:<7} {f(s.med('c1', t, c, 'requests'), 0):>7}"
                f" {f(s.med('c1', t, c, 'lat_ms', 'p50')):>8}"
                f" {f(s.med('c1', t, c, 'lat_ms', 'p90')):>8}"
                f" {f(s.med('c1', t, c, 'lat_ms', 'p99')):>8}"
                f" {f(s.added('c1', t, c, c, 'lat_ms', 'p50'), sign=True) if base else '-':>10}"
                f" {f(s.added('c1', t, c, c, 'lat_ms', 'p99'), sign=True) if base else '-':>10}"
                f" {f(s.med('c1', t, c, 'cpu', _role(t), 'ms_per_req')):>14}"
                f" {s.errors('c1', t, c):>6}"
            )
        lines.append("")
    if "c64" in tests:
        lines += [
            f"Throughput at concurrency {a['concurrency']}",
            f"  {'target':<8} {'client':<7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}"
            f" {'server CPU%':>11} {'ms/req':>7} {'1-core cap':>10} {'upstr ms/req':>12}"
            f" {'loadgen ms/req':>14} {'RSS MB':>7} {'errors':>6}",
        ]
        conc_rows = [
            ("direct", http_client),
            ("shim", http_client),
            ("grpc", "python"),
            ("floor", "python"),
        ]
        for t, c in conc_rows:
            if not s.values("c64", t, c, "rps"):
                continue
            role = _role(t)
            up = s.med("c64", t, c, "cpu", "upstream", "ms_per_req") if t != "direct" else None
            lines.append(
                f"  {t:<8} {c:<7} {f(s.med('c64', t, c, 'rps'), 0):>8}"
                f" {f(s.med('c64', t, c, 'lat_ms', 'p50'), 2):>8}"
                f" {f(s.med('c64', t, c, 'lat_ms', 'p99'), 2):>8}"
                f" {f(s.med('c64', t, c, 'cpu', role, 'pct'), 0):>11}"
                f" {f(s.med('c64', t, c, 'cpu', role, 'ms_per_req')):>7}"
                f" {f(_cap(s.med('c64', t, c, 'cpu', role, 'ms_per_req')), 0):>10}"
                f" {f(up):>12}"
                f" {f(s.med('c64', t, c, 'cpu', 'client', 'ms_per_req')):>14}"
                f" {f(s.med('c64', t, c, 'cpu', role, 'rss_mb'), 0):>7}"
                f" {s.errors('c64', t, c):>6}"
            )
        lines.append("")
    if "stream" in tests:
        lines += [
            "Streaming, sequential (ms; TTFT = first content chunk at the client)",
            f"  {'target':<8} {'TTFT p50':>9} {'TTFT p99':>9} {'total p50':>10}"
            f" {'total p99':>10} {'+TTFT p50':>10} {'+total p50':>11} {'events':>6}"
            f" {'srv CPU ms/strm':>16} {'errors':>6}",
        ]
        for t in ("direct", "shim", "grpc", "floor"):
            if not s.values("stream", t, "python", "ttft_ms", "p50"):
                continue
            is_gw = t != "direct"
            lines.append(
                f"  {t:<8} {f(s.med('stream', t, 'python', 'ttft_ms', 'p50')):>9}"
                f" {f(s.med('stream', t, 'python', 'ttft_ms', 'p99')):>9}"
                f" {f(s.med('stream', t, 'python', 'total_ms', 'p50')):>10}"
                f" {f(s.med('stream', t, 'python', 'total_ms', 'p99')):>10}"
                f" {f(s.added('stream', t, 'python', 'python', 'ttft_ms', 'p50'), sign=True) if is_gw else '-':>10}"  # noqa: E501
                f" {f(s.added('stream', t, 'python', 'python', 'total_ms', 'p50'), sign=True) if is_gw else '-':>11}"  # noqa: E501
                f" {f(s.med('stream', t, 'python', 'events_per_stream'), 0):>6}"
                f" {f(s.med('stream', t, 'python', 'cpu', _role(t), 'ms_per_req')):>16}"
                f" {s.errors('stream', t, 'python'):>6}"
            )
        lines.append("")
    if any(r["target"] == "floor" for r in raw["runs"]):
        lines += [
            "floor = a do-nothing grpc.aio ChatService (bench/grpc_floor.py, no upstream): what",
            "the gRPC hop alone costs with these clients; its 'added' is vs direct HTTP calls.",
            "",
        ]
    lines += [
        "srv CPU = CPU of the process answering the client (the fake upstream for direct, the",
        "gateway otherwise), from /proc/<pid>/stat over the measured window. 1-core cap =",
        "1000 / (server CPU ms per request): the req/s one whole core would give, which is less",
        "sensitive than req/s to other processes on the machine.",
        "",
        "Targets (issue)",
    ]
    for v in raw["verdicts"]:
        val = (
            "n/a"
            if v["value"] is None
            else (f"{v['value']:.0f}" if v["unit"] == "req/s" else f"{v['value']:+.3f}")
        )
        lines.append(
            f"  {v['status']:<4}  {v['label']:<48} {val:>9} {v['unit']:<5}"
            f" (target {v['op']} {v['target']:g})"
        )
    grpc50 = s.med("c1", "grpc", "python", "lat_ms", "p50")
    floor50 = s.med("c1", "floor", "python", "lat_ms", "p50")
    if grpc50 is not None and floor50 is not None:
        lines.append(
            f"  info  gRPC p50 @c1 minus the do-nothing floor: {grpc50 - floor50:+.3f} ms "
            "(the gateway's own work behind grpc.aio)"
        )
    lines += ["", PEERS]
    profiled = [r for r in raw["runs"] if (r.get("profile") or {}).get("samples")]
    if profiled:
        lines += ["", "Gateway profiles (py-spy; % of samples; timings above are perturbed)"]
        for r in profiled:
            prof = r["profile"]
            lines.append(
                f"  {r['test']} {r['target']} round {r['round']}: {prof['samples']} "
                f"samples, {prof['file']}"
            )
            lines.append(
                "    self by package: "
                + "; ".join(f"{k} {v}%" for k, v in prof["self_by_package"][:10])
            )
            lines.append("    self: " + "; ".join(f"{k} {v}%" for k, v in prof["self"][:8]))
            lines.append(
                "    own code (deepest server/ frame): "
                + "; ".join(f"{k} {v}%" for k, v in prof["own_leaf"][:8])
            )
    failed = [r for r in raw["runs"] if "error" in r]
    if failed:
        lines += ["", "Failed runs:"]
        lines += [
            f"  r{r['round']} {r['test']} {r['target']}/{r['client']}: "
            f"{r['error'].splitlines()[0][:200] if r['error'] else ''}"
            for r in failed
        ]
    return "\n".join(lines) + "\n"


def _cap(ms_per_req: float | None) -> float | None:
    """Requests/s one fully available core would serve at this CPU cost per request."""
    return 1000.0 / ms_per_req if ms_per_req else None


def _role(target: str) -> str:
    return "upstream" if target == "direct" else "gateway"


# ---------------------------------------------------------------------------- main


def meta() -> dict[str, Any]:
    m: dict[str, Any] = {
        "host": f"{platform.node()} {platform.release()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "loadavg_before": os.getloadavg()[0],
    }
    with contextlib.suppress(OSError):
        m["wrk"] = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[
            0
        ][:60]
    with contextlib.suppress(Exception):
        import aiohttp
        import grpc

        m["aiohttp"], m["grpcio"] = aiohttp.__version__, grpc.__version__
    return m


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
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
        "--floor",
        action="store_true",
        help="also measure a do-nothing gRPC ChatService (grpcio's own cost)",
    )
    p.add_argument(
        "--no-gateway", action="store_true", help="measure direct calls only (harness check)"
    )
    p.add_argument("--gateway-cmd", help="command that starts the gateway (default: switchboard)")
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
    p.add_argument("--out", default=str(HERE / "results"))
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
    return a


def main(argv: list[str] | None = None) -> int:
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
        | {"http_client": http_client},
        "targets": TARGETS,
        "runs": [],
    }

    procs: list[Proc] = []
    tmp = Path(tempfile.mkdtemp(prefix="switchboard-bench-"))
    exit_code = 0
    try:
        with _stop_on(signal.SIGTERM):
            exit_code = _run(args, raw, procs, tmp, http_client, pin_gw, pin_rest, json_path)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        exit_code = 130
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        exit_code = 1
    finally:
        for p in reversed(procs):
            p.stop()
        gw_log = tmp / "gateway.log"
        if gw_log.exists() and (exit_code or (raw.get("gateway") or {}).get("problems")):
            kept = out_dir / f"gateway-{stamp}.log"
            shutil.copy(gw_log, kept)
            print(f"gateway log: {kept}", file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)
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


def _run(
    args: argparse.Namespace,
    raw: dict[str, Any],
    procs: list[Proc],
    tmp: Path,
    http_client: str,
    pin_gw: set[int] | None,
    pin_rest: set[int] | None,
    json_path: Path,
) -> int:
    t_start = time.monotonic()
    upstream_key = "sk-upstream-" + secrets.token_hex(8)
    bodies = {"plain": tmp / "chat.json", "stream": tmp / "chat_stream.json"}
    bodies["plain"].write_bytes(orjson.dumps(BODY))
    bodies["stream"].write_bytes(orjson.dumps(STREAM_BODY))
    chunks = 20
    expect = streamed_text(chunks)

    up, up_port = start_listening(
        "upstream",
        [
            PY,
            str(HERE / "fake_upstream.py"),
            "--port",
            "0",
            "--chunks",
            str(chunks),
            "--api-key",
            upstream_key,
        ],
        tmp,
        pin_rest,
    )
    procs.append(up)
    direct = Target(
        "direct",
        "http",
        f"http://127.0.0.1:{up_port}/v1/chat/completions",
        upstream_key,
        {"upstream": up.pid},
    )
    problem = smoke_http(direct.where, upstream_key, expect)
    if problem:
        raise RuntimeError(f"the fake upstream does not answer correctly: {problem}")

    http_targets = [direct]
    grpc_targets: list[Target] = []
    problems: dict[str, str] = {}
    gw_info: dict[str, Any] = {"problems": problems}
    raw["gateway"] = gw_info
    if not args.no_gateway:
        try:
            gw = start_gateway(args, tmp, up_port, upstream_key, pin_gw)
        except RuntimeError as e:
            problems["gateway"] = str(e)
            print(f"!! gateway did not start: {e}", file=sys.stderr)
        else:
            procs.append(gw.proc)
            gw_info.update(
                pid=gw.proc.pid,
                cmd=gateway_command(args),
                http_port=gw.http_port,
                grpc_port=gw.grpc_port,
            )
            pids = {"gateway": gw.proc.pid, "upstream": up.pid}
            problem = gw.http_ok or smoke_http(gw.url, gw.key, expect)
            if problem:
                problems["shim"] = problem
            else:
                http_targets.append(Target("shim", "http", gw.url, gw.key, pids))
            problem = smoke_grpc(gw.grpc_target, gw.key, expect)
            if problem:
                problems["grpc"] = problem
            else:
                grpc_targets.append(Target("grpc", "grpc", gw.grpc_target, gw.key, pids))
            for k, v in problems.items():
                print(f"!! {k} does not work end to end, skipped: {v}", file=sys.stderr)
    if args.floor:
        fl, fl_port = start_listening(
            "floor",
            [PY, str(HERE / "grpc_floor.py"), "--port", "0", "--chunks", str(chunks)],
            tmp,
            pin_gw,
        )
        procs.append(fl)
        grpc_targets.append(
            Target("floor", "grpc", f"127.0.0.1:{fl_port}", "", {"gateway": fl.pid})
        )

    clients = ["wrk", "python"] if http_client == "wrk" else ["python"]
    plan = Plan(
        c1=[(t, c) for c in clients for t in http_targets] + [(t, "python") for t in grpc_targets],
        conc=[(t, http_client) for t in http_targets] + [(t, "python") for t in grpc_targets],
        stream=http_targets + grpc_targets,
    )

    def record(entry: dict[str, Any]) -> None:
        raw["runs"].append(entry)
        json_path.write_bytes(orjson.dumps(raw, option=orjson.OPT_INDENT_2))
        r = entry.get("result") or {}
        brief = (
            entry.get("error", "").splitlines()[0][:160]
            if "error" in entry
            else " ".join(
                f"{k}={v}"
                for k, v in (
                    ("reqs", r.get("requests")),
                    ("rps", r.get("rps")),
                    ("p50", _get(r, ("lat_ms", "p50")) or _get(r, ("ttft_ms", "p50"))),
                    ("p99", _get(r, ("lat_ms", "p99")) or _get(r, ("ttft_ms", "p99"))),
                    ("errors", r.get("errors")),
                )
                if v is not None
            )
        )
        print(
            f"[{entry['at']}] r{entry['round']} {entry['test']:<6} {entry['target']:<7}"
            f" {entry['client']:<6} {brief}",
            flush=True,
        )

    run_matrix(args, plan, bodies, expect, record)

    s = Summary(raw["runs"])
    raw["verdicts"] = verdicts(s, http_client)
    raw["meta"]["loadavg_after"] = os.getloadavg()[0]
    raw["finished"] = dt.datetime.now().isoformat(timespec="seconds")
    raw["duration_s"] = round(time.monotonic() - t_start, 1)
    json_path.write_bytes(orjson.dumps(raw, option=orjson.OPT_INDENT_2))
    report = render(raw, s, http_client)
    json_path.with_suffix(".md").write_text(report)
    print()
    print(report, end="")
    print(f"\n{raw['duration_s']} s; results: {json_path} (+ .md)")
    failed = (
        any("error" in r for r in raw["runs"])
        or bool(problems)
        or any((r.get("result") or {}).get("errors") for r in raw["runs"])
    )
    if failed:
        return 1
    if args.check and any(v["status"] == "FAIL" for v in raw["verdicts"]):
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
