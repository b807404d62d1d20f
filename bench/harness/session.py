"""One benchmark run from start to report: start, smoke-check, measure, summarise, write."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import secrets
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from fake_upstream import streamed_text
from loadgen import chat_request

from harness import BENCH_DIR, REPO_ROOT
from harness.config import BASELINE, BODY, CHUNKS, PY, STREAM_BODY
from harness.h2load import grpc_frame
from harness.load import Target, make_plan, run_matrix
from harness.process import (
    Gateway,
    Proc,
    gateway_log,
    launch_gateway,
    source_info,
    start_listening,
)
from harness.report import progress_line, render, write_json
from harness.smoke import smoke_grpc, smoke_http
from harness.summary import Summary, comparison, verdicts


@dataclass
class Session:
    """One run's settings, where it keeps its files, and every process it started."""

    args: argparse.Namespace
    raw: dict[str, Any]  # what goes to the .json file
    tmp: Path
    json_path: Path
    http_client: str  # "wrk" or "python"
    grpc_client: str = "python"  # "h2load" or "python"
    pin_gw: set[int] | None = None  # CPUs for the servers under test (--pin)
    pin_rest: set[int] | None = None  # CPUs for the upstream
    # Whatever is started goes here at once, so that the caller stops it on any exit.
    procs: list[Proc | Gateway] = field(default_factory=list)


@dataclass
class Upstream:
    """The fake OpenAI upstream every target ends at."""

    proc: Proc
    port: int
    key: str

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


@dataclass
class Targets:
    """What the matrix sends load to, and why a path was left out."""

    http: list[Target]
    grpc: list[Target]
    problems: dict[str, str]


def run_session(session: Session) -> int:
    """Runs the whole benchmark into ``session.raw`` and its files; returns the exit code."""
    args, raw = session.args, session.raw
    t_start = time.monotonic()
    bodies = {"plain": session.tmp / "chat.json", "stream": session.tmp / "chat_stream.json"}
    bodies["plain"].write_bytes(orjson.dumps(BODY))
    bodies["stream"].write_bytes(orjson.dumps(STREAM_BODY))
    bodies["grpc"] = session.tmp / "chat.grpc"
    bodies["grpc"].write_bytes(grpc_frame(chat_request(BODY).SerializeToString()))
    expect = streamed_text(CHUNKS)

    targets = start_targets(session, expect)
    plan = make_plan(targets.http, targets.grpc, session.http_client, session.grpc_client)
    width = max(7, *(len(t.name) for t in targets.http + targets.grpc))

    def record(entry: dict[str, Any]) -> None:
        raw["runs"].append(entry)
        write_json(raw, session.json_path)
        print(progress_line(entry, width), flush=True)

    run_matrix(args, plan, bodies, expect, record)
    raw["duration_s"] = round(time.monotonic() - t_start, 1)
    finish(session)
    failed = (
        any("error" in r for r in raw["runs"])
        or bool(targets.problems)
        or any((r.get("result") or {}).get("errors") for r in raw["runs"])
    )
    if failed:
        return 1
    if args.check and any(v["status"] == "FAIL" for v in raw["verdicts"]):
        return 2
    return 0


def start_targets(session: Session, expect: str) -> Targets:
    """Starts the upstream, the gateway(s) and --floor; each path that answers is a target."""
    args, raw = session.args, session.raw
    up = start_upstream(session)
    direct = Target(
        "direct", "http", f"{up.base_url}/chat/completions", up.key, {"upstream": up.proc.pid}
    )
    problem = smoke_http(direct.where, up.key, expect)
    if problem:
        raise RuntimeError(f"the fake upstream does not answer correctly: {problem}")
    targets = Targets([direct], [], {})
    raw["gateway"] = {"problems": targets.problems}
    if not args.no_gateway:
        raw["gateway"]["source"] = source_info(REPO_ROOT)
        command = shlex.split(args.gateway_cmd) if args.gateway_cmd else None
        gw = add_gateway(session, "", REPO_ROOT, command, up, expect, targets)
        if gw is not None:
            raw["gateway"].update(gw.info())
        if args.baseline:
            root = Path(args.baseline)
            raw["baseline"] = {"source": source_info(root)}
            gw = add_gateway(session, BASELINE, root, None, up, expect, targets)
            if gw is not None:
                raw["baseline"].update(gw.info())
    if args.floor:
        # grpcio's two servers, doing nothing: grpc.aio, and grpc.server on a thread pool.
        for name, extra in (("floor", []), ("floor-sync", ["--sync"])):
            cmd = [PY, str(BENCH_DIR / "grpc_floor.py"), "--port", "0", "--chunks", str(CHUNKS)]
            fl, fl_port = start_listening(name, cmd + extra, session.tmp, session.pin_gw)
            session.procs.append(fl)
            targets.grpc.append(
                Target(name, "grpc", f"127.0.0.1:{fl_port}", "", {"gateway": fl.pid})
            )
    return targets


def start_upstream(session: Session) -> Upstream:
    """Starts bench/fake_upstream.py on a free port, requiring a fresh provider key."""
    key = "sk-upstream-" + secrets.token_hex(8)
    cmd = [PY, str(BENCH_DIR / "fake_upstream.py"), "--port", "0", "--chunks", str(CHUNKS)]
    proc, port = start_listening(
        "upstream", [*cmd, "--api-key", key], session.tmp, session.pin_rest
    )
    session.procs.append(proc)
    return Upstream(proc, port, key)


def add_gateway(
    session: Session,
    suffix: str,
    repo_root: Path,
    command: list[str] | None,
    up: Upstream,
    expect: str,
    targets: Targets,
) -> Gateway | None:
    """Starts the gateway of ``repo_root``; its shim and gRPC join ``targets`` if they work.

    ``suffix`` ('' or '@baseline') names its targets. What fails goes to
    ``targets.problems`` and is printed; None when the gateway did not start.
    """
    name = "gateway" + suffix
    try:
        gw = launch_gateway(
            name,
            repo_root,
            session.tmp / name,
            up.base_url,
            up.key,
            command=command,
            log_level=session.args.log_level,
            cpus=session.pin_gw,
            env=_tracing_env(up) if session.args.tracing and not suffix else None,
            timeout=session.args.start_timeout,
        )
    except RuntimeError as e:
        targets.problems[name] = str(e)
        print(f"!! {name} did not start: {e}", file=sys.stderr)
        return None
    session.procs.append(gw)
    pids = {"gateway": gw.pid, "upstream": up.proc.pid}
    found: dict[str, str] = {}
    problem = gw.http_problem or smoke_http(gw.url, gw.key, expect)
    if problem:
        found["shim" + suffix] = problem
    else:
        targets.http.append(Target("shim" + suffix, "http", gw.url, gw.key, pids))
    problem = smoke_grpc(gw.grpc_target, gw.key, expect)
    if problem:
        found["grpc" + suffix] = problem
    else:
        targets.grpc.append(Target("grpc" + suffix, "grpc", gw.grpc_target, gw.key, pids))
    for k, v in found.items():
        print(f"!! {k} does not work end to end, skipped: {v}", file=sys.stderr)
    targets.problems.update(found)
    return gw


def _tracing_env(up: Upstream) -> dict[str, str]:
    """OTLP/HTTP export to the fake upstream's /v1/traces (``--tracing``)."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{up.port}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_SERVICE_NAME": "switchboard-bench",
    }


def finish(session: Session) -> None:
    """Summarises the runs, writes the .json and .md files and prints the report."""
    raw, http_client, grpc_client = session.raw, session.http_client, session.grpc_client
    s = Summary(raw["runs"])
    raw["verdicts"] = verdicts(s, http_client, grpc_client)
    if session.args.baseline:
        raw["comparison"] = comparison(s, http_client, grpc_client)
    raw["meta"]["loadavg_after"] = os.getloadavg()[0]
    raw["finished"] = dt.datetime.now().isoformat(timespec="seconds")
    write_json(raw, session.json_path)
    report = render(raw, s, http_client, grpc_client)
    session.json_path.with_suffix(".md").write_text(report)
    print()
    print(report, end="")
    print(f"\n{raw['duration_s']} s; results: {session.json_path} (+ .md)")


def stop_all(session: Session) -> None:
    """Stops every process the session started, last started first."""
    for p in reversed(session.procs):
        p.stop()


def keep_gateway_logs(session: Session, out_dir: Path) -> None:
    """Copies each gateway's log to ``out_dir`` (after a failure, so it outlives ``tmp``)."""
    for name in ("gateway", "gateway" + BASELINE):
        log = gateway_log(session.tmp / name)
        if log.exists():
            kept = out_dir / f"{name}-{session.args.stamp}.log"
            shutil.copy(log, kept)
            print(f"gateway log: {kept}", file=sys.stderr)
