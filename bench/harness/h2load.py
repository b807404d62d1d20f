"""gRPC unary load from h2load (nghttp2's C load generator), next to the Python grpc.aio client.

The Python client costs about as much CPU per call as the gateway's shim does per request, on
the same two cores; h2load costs a few microseconds, as wrk does for the shim, so the two
surfaces can be compared with clients of the same weight. h2load speaks HTTP/2 only, not gRPC:
it sends one length-prefixed ChatRequest as the body with gRPC's headers, over one connection
with up to ``conns`` concurrent streams (as one grpc.aio channel does).

A gRPC error still has HTTP status 200 (its status is in the trailers) and carries no message,
so every call is checked by the DATA bytes: a probe call gives one answer's size, and a run is
clean only when its DATA bytes are exactly (calls x that size). Install: apt-get install -y
nghttp2-client.
"""

from __future__ import annotations

import re
import resource
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from loadgen import summarize

from harness.process import cpu_entry, cpu_since, cpu_snapshot, rss_snapshot

CHAT_PATH = "/switchboard.v1.ChatService/Chat"

_REQUESTS = re.compile(r"^requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded", re.M)
_DATA = re.compile(r"^traffic: .*?, [^,]*? \((\d+)\) data$", re.M)


def grpc_frame(message: bytes) -> bytes:
    """One uncompressed gRPC message: flag byte, big-endian length, the bytes."""
    return b"\x00" + struct.pack(">I", len(message)) + message


def _command(where: str, key: str, body: Path, streams: int, extra: list[str]) -> list[str]:
    return [
        "h2load",
        "-c1",
        f"-m{streams}",
        "-d",
        str(body),
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        "-H",
        f"authorization: Bearer {key}",
        *extra,
        f"http://{where}{CHAT_PATH}",
    ]


def _parse(text: str) -> tuple[int, int, int]:
    """(requests done, succeeded, DATA bytes) from h2load's summary."""
    req, data = _REQUESTS.search(text), _DATA.search(text)
    if req is None or data is None:
        raise RuntimeError(f"h2load printed no summary: {text[-500:]}")
    return int(req[2]), int(req[3]), int(data[1])


def _answer_size(where: str, key: str, body: Path) -> int:
    """DATA bytes of one call's answer; fails unless the call returned a message."""
    out = subprocess.run(
        _command(where, key, body, 1, ["-n1"]), capture_output=True, text=True, timeout=60
    )
    done, ok, data = _parse(out.stdout + out.stderr)
    if done != 1 or ok != 1 or data <= 5:
        raise RuntimeError(f"h2load probe call got no gRPC message (DATA {data} bytes)")
    return data


def run_h2load(
    where: str,
    key: str,
    pids: dict[str, int],
    body: Path,
    conns: int,
    seconds: float,
    warmup: float,
) -> dict[str, Any]:
    """A warm-up run, then a measured one: req/s, latency percentiles, CPU of each pid."""
    size = _answer_size(where, key, body)
    if warmup > 0:
        subprocess.run(
            _command(where, key, body, conns, [f"-D{max(1, round(warmup))}"]),
            capture_output=True,
            timeout=warmup + 60,
        )
    secs = max(1, round(seconds))
    with tempfile.TemporaryDirectory(prefix="bench-h2load-") as tmp:
        log = Path(tmp) / "requests.tsv"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        p0 = cpu_snapshot(pids)
        w0 = time.perf_counter()
        out = subprocess.run(
            _command(where, key, body, conns, [f"-D{secs}", f"--log-file={log}"]),
            capture_output=True,
            text=True,
            timeout=secs + 60,
        )
        wall = time.perf_counter() - w0
        cpu = cpu_since(pids, p0)
        rss = rss_snapshot(pids)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        # Columns: start (µs since the epoch), HTTP status, µs to the end of the response.
        lat = [int(line.split("\t")[2]) / 1e6 for line in log.read_text().splitlines()]
    done, ok, data = _parse(out.stdout + out.stderr)
    answered = data // size if data % size == 0 else 0
    client_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    res: dict[str, Any] = {
        "requests": done,
        "duration_s": round(wall, 3),
        "rps": round(done / secs, 1),
        "lat_ms": summarize(lat),
        "errors": done - min(ok, answered),
        "answer_bytes": size,
        "cpu": {"client": cpu_entry(client_cpu, wall, done)},
    }
    for name, c in cpu.items():
        res["cpu"][name] = cpu_entry(c, wall, done) | {"rss_mb": rss[name]}
    return res
