"""What a run prints and writes: progress lines, the report table, the .json and .md files."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import orjson

from harness.config import BASELINE, client_list, direct_client
from harness.summary import Summary, get_path, role

# Portkey and LiteLLM are measured in the same run only by bench/peers.sh.
PEERS = "Peers: bench/peers.sh measures Portkey and LiteLLM beside Switchboard in one run."

# Table rows in this order, each checkout's gateway next to the other's.
HTTP_ROWS = ("direct", "shim", "shim" + BASELINE)
GRPC_ROWS = ("grpc", "grpc" + BASELINE, "floor", "floor-sync")


def meta() -> dict[str, Any]:
    """The machine and tool versions, recorded with the results."""
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


def f(v: float | None, nd: int = 3, sign: bool = False) -> str:
    """A number for the table: ``nd`` decimals, a sign when asked, n/a for None."""
    if v is None:
        return "n/a"
    return f"{v:+.{nd}f}" if sign else f"{v:.{nd}f}"


def progress_line(entry: dict[str, Any], width: int = 7) -> str:
    """One line per measured run, printed while the matrix runs."""
    r = entry.get("result") or {}
    brief = (
        entry.get("error", "").splitlines()[0][:160]
        if "error" in entry
        else " ".join(
            f"{k}={v}"
            for k, v in (
                ("reqs", r.get("requests")),
                ("rps", r.get("rps")),
                ("p50", get_path(r, ("lat_ms", "p50")) or get_path(r, ("ttft_ms", "p50"))),
                ("p99", get_path(r, ("lat_ms", "p99")) or get_path(r, ("ttft_ms", "p99"))),
                ("errors", r.get("errors")),
            )
            if v is not None
        )
    )
    return (
        f"[{entry['at']}] r{entry['round']} {entry['test']:<6} {entry['target']:<{width}}"
        f" {entry['client']:<6} {brief}"
    )


def write_json(raw: dict[str, Any], path: Path) -> None:
    """Writes everything recorded so far (rewritten after every run, so a crash keeps it)."""
    path.write_bytes(orjson.dumps(raw, option=orjson.OPT_INDENT_2))


def render(raw: dict[str, Any], s: Summary, http_client: str, grpc_client: str = "python") -> str:
    """The human-readable report (also written as the .md file)."""
    a = raw["args"]
    # Wider target column only when a longer name (shim@baseline) is in the run.
    w = max(8, *(len(r["target"]) for r in raw["runs"])) if raw["runs"] else 8
    lines = _header(raw, http_client, grpc_client)
    tests = a["tests"]
    if "c1" in tests:
        lines += _c1_table(s, http_client, grpc_client, w)
    if "c64" in tests:
        lines += _c64_table(s, http_client, grpc_client, a["concurrency"], w)
    if "stream" in tests:
        lines += _stream_table(s, w)
    if raw.get("comparison"):
        lines += _comparison_table(raw, a["concurrency"])
    if any(r["target"] == "floor" for r in raw["runs"]):
        lines += [
            "floor = a do-nothing grpc.aio ChatService (bench/grpc_floor.py, no upstream): what",
            "the gRPC hop alone costs with these clients; its 'added' is vs direct HTTP calls.",
            "floor-sync = the same answers from grpcio's thread-pool server (grpc.server, 64",
            "threads): grpcio's other server, side by side.",
            "",
        ]
    lines += [
        "srv CPU = CPU of the process answering the client (the fake upstream for direct, the",
        "gateway otherwise), from /proc/<pid>/stat over the measured window. 1-core cap =",
        "1000 / (server CPU ms per request): the req/s one whole core would give, which is less",
        "sensitive than req/s to other processes on the machine.",
        "",
    ]
    lines += _verdict_lines(raw, s)
    lines += ["", PEERS]
    lines += _profile_lines(raw)
    lines += _failed_lines(raw)
    return "\n".join(lines) + "\n"


def _header(raw: dict[str, Any], http_client: str, grpc_client: str) -> list[str]:
    a = raw["args"]
    lines = [
        f"Switchboard benchmark {raw['started']}  ({raw['meta']['host']})",
        f"rounds={a['rounds']}  c1={a['c1_seconds']}s  c{a['concurrency']}={a['conc_seconds']}s"
        f"  warm-up={a['warmup_seconds']}s  streams={a['stream_requests']}/round"
        f"  HTTP load: {http_client}"
        f"  gRPC load: {'h2load and ' if grpc_client == 'h2load' else ''}python grpc.aio"
        + ("  pinned: gateway cpu0, rest cpu1" if a.get("pin") else ""),
        "Values are medians over rounds; 'added' = median of per-round (target - direct), "
        "same client (h2load: direct under the HTTP client, both C).",
    ]
    if raw.get("baseline"):
        current = (raw.get("gateway") or {}).get("source") or {}
        lines.append(
            f"Gateways: shim, grpc = {_source(current)}; "
            f"shim{BASELINE}, grpc{BASELINE} = {_source(raw['baseline'].get('source') or {})}"
        )
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
    return lines


def _source(src: dict[str, Any]) -> str:
    edits = " (uncommitted edits)" if src.get("dirty") else ""
    return f"{src.get('dir', '?')} @ {src.get('commit') or '?'}{edits}"


def _c1_table(s: Summary, http_client: str, grpc_client: str, w: int) -> list[str]:
    lines = [
        "Latency at concurrency 1 (ms)",
        f"  {'target':<{w}} {'client':<7} {'reqs':>7} {'p50':>8} {'p90':>8} {'p99':>8}"
        f" {'added p50':>10} {'added p99':>10} {'srv CPU ms/req':>14} {'errors':>6}",
    ]
    rows = [(t, c) for c in client_list(http_client) for t in HTTP_ROWS]
    rows += [(t, c) for c in client_list(grpc_client) for t in GRPC_ROWS]
    for t, c in rows:
        if not s.values("c1", t, c, "lat_ms", "p50"):
            continue
        base = "direct" if t != "direct" else None
        dc = direct_client(c, http_client)
        lines.append(
            f"  {t:<{w}} {c:<7} {f(s.med('c1', t, c, 'requests'), 0):>7}"
            f" {f(s.med('c1', t, c, 'lat_ms', 'p50')):>8}"
            f" {f(s.med('c1', t, c, 'lat_ms', 'p90')):>8}"
            f" {f(s.med('c1', t, c, 'lat_ms', 'p99')):>8}"
            f" {f(s.added('c1', t, c, dc, 'lat_ms', 'p50'), sign=True) if base else '-':>10}"
            f" {f(s.added('c1', t, c, dc, 'lat_ms', 'p99'), sign=True) if base else '-':>10}"
            f" {f(s.med('c1', t, c, 'cpu', role(t), 'ms_per_req')):>14}"
            f" {s.errors('c1', t, c):>6}"
        )
    lines.append("")
    return lines


def _c64_table(
    s: Summary, http_client: str, grpc_client: str, concurrency: int, w: int
) -> list[str]:
    lines = [
        f"Throughput at concurrency {concurrency}",
        f"  {'target':<{w}} {'client':<7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'server CPU%':>11} {'ms/req':>7} {'1-core cap':>10} {'upstr ms/req':>12}"
        f" {'loadgen ms/req':>14} {'RSS MB':>7} {'errors':>6}",
    ]
    rows = [(t, http_client) for t in HTTP_ROWS]
    rows += [(t, c) for c in client_list(grpc_client) for t in GRPC_ROWS]
    for t, c in rows:
        if not s.values("c64", t, c, "rps"):
            continue
        r = role(t)
        up = s.med("c64", t, c, "cpu", "upstream", "ms_per_req") if t != "direct" else None
        lines.append(
            f"  {t:<{w}} {c:<7} {f(s.med('c64', t, c, 'rps'), 0):>8}"
            f" {f(s.med('c64', t, c, 'lat_ms', 'p50'), 2):>8}"
            f" {f(s.med('c64', t, c, 'lat_ms', 'p99'), 2):>8}"
            f" {f(s.med('c64', t, c, 'cpu', r, 'pct'), 0):>11}"
            f" {f(s.med('c64', t, c, 'cpu', r, 'ms_per_req')):>7}"
            f" {f(_cap(s.med('c64', t, c, 'cpu', r, 'ms_per_req')), 0):>10}"
            f" {f(up):>12}"
            f" {f(s.med('c64', t, c, 'cpu', 'client', 'ms_per_req')):>14}"
            f" {f(s.med('c64', t, c, 'cpu', r, 'rss_mb'), 0):>7}"
            f" {s.errors('c64', t, c):>6}"
        )
    lines.append("")
    return lines


def _stream_table(s: Summary, w: int) -> list[str]:
    lines = [
        "Streaming, sequential (ms; TTFT = first content chunk at the client)",
        f"  {'target':<{w}} {'TTFT p50':>9} {'TTFT p99':>9} {'total p50':>10}"
        f" {'total p99':>10} {'+TTFT p50':>10} {'+total p50':>11} {'events':>6}"
        f" {'srv CPU ms/strm':>16} {'errors':>6}",
    ]
    py = "python"
    for t in HTTP_ROWS + GRPC_ROWS:
        if not s.values("stream", t, py, "ttft_ms", "p50"):
            continue
        is_gw = t != "direct"
        added_ttft = s.added("stream", t, py, py, "ttft_ms", "p50")
        added_total = s.added("stream", t, py, py, "total_ms", "p50")
        lines.append(
            f"  {t:<{w}} {f(s.med('stream', t, py, 'ttft_ms', 'p50')):>9}"
            f" {f(s.med('stream', t, py, 'ttft_ms', 'p99')):>9}"
            f" {f(s.med('stream', t, py, 'total_ms', 'p50')):>10}"
            f" {f(s.med('stream', t, py, 'total_ms', 'p99')):>10}"
            f" {f(added_ttft, sign=True) if is_gw else '-':>10}"
            f" {f(added_total, sign=True) if is_gw else '-':>11}"
            f" {f(s.med('stream', t, py, 'events_per_stream'), 0):>6}"
            f" {f(s.med('stream', t, py, 'cpu', role(t), 'ms_per_req')):>16}"
            f" {s.errors('stream', t, py):>6}"
        )
    lines.append("")
    return lines


def _comparison_table(raw: dict[str, Any], concurrency: int) -> list[str]:
    lines = [
        "Current vs baseline (ratio = current / baseline; 'better' says which way is good)",
        f"  {'target':<6} {'metric':<26} {'client':<7} {'better':<6} {'current':>9}"
        f" {'baseline':>9} {'ratio':>7}",
    ]
    for row in raw["comparison"]:
        metric = row["metric"] + (f" @c{concurrency}" if row["test"] == "c64" else "")
        nd = 0 if row["metric"] == "req/s" else 3
        lines.append(
            f"  {row['target']:<6} {metric:<26} {row['client']:<7} {row['better']:<6}"
            f" {f(row['current'], nd, sign=row['added']):>9}"
            f" {f(row['baseline'], nd, sign=row['added']):>9}"
            f" {f(row['ratio']):>7}"
        )
    lines.append("")
    return lines


def _verdict_lines(raw: dict[str, Any], s: Summary) -> list[str]:
    lines = ["Targets (issue)"]
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
    return lines


def _profile_lines(raw: dict[str, Any]) -> list[str]:
    profiled = [r for r in raw["runs"] if (r.get("profile") or {}).get("samples")]
    if not profiled:
        return []
    lines = ["", "Gateway profiles (py-spy; % of samples; timings above are perturbed)"]
    for r in profiled:
        prof = r["profile"]
        lines.append(
            f"  {r['test']} {r['target']}/{r['client']} round {r['round']}: {prof['samples']} "
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
    return lines


def _failed_lines(raw: dict[str, Any]) -> list[str]:
    failed = [r for r in raw["runs"] if "error" in r]
    if not failed:
        return []
    return ["", "Failed runs:"] + [
        f"  r{r['round']} {r['test']} {r['target']}/{r['client']}: "
        f"{r['error'].splitlines()[0][:200] if r['error'] else ''}"
        for r in failed
    ]


def _cap(ms_per_req: float | None) -> float | None:
    """Requests/s one fully available core would serve at this CPU cost per request."""
    return 1000.0 / ms_per_req if ms_per_req else None
