"""Load generator for the benchmark: OpenAI-style HTTP (aiohttp) and Switchboard gRPC (grpc.aio).

Each mode prints one JSON object on stdout. Every mode is bounded by time or count, and the
CPU of the load generator itself and of any ``--sample NAME=PID`` process tree is measured
over the recorded window only (warm-up excluded).

    http-seq     sequential requests for --seconds (concurrency 1)    -> latency percentiles
    http-conc    -c workers, closed loop, for --seconds                -> RPS + percentiles
    http-stream  -n sequential streamed requests                       -> TTFT / total
    grpc-seq, grpc-conc, grpc-stream: the same over ChatService.Chat / StreamChat

    python bench/loadgen.py http-seq --url http://127.0.0.1:PORT/v1/chat/completions \
        --body body.json -H 'Authorization: Bearer KEY' --seconds 5
    python bench/loadgen.py grpc-stream --target 127.0.0.1:PORT --body stream.json --key KEY -n 100

Loopback targets only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------- /proc sampling


def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, utime+stime ticks) of one process, from /proc/<pid>/stat."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    rest = raw[raw.rindex(b")") + 2 :].split()
    return int(rest[1]), int(rest[11]) + int(rest[12])


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            s = _stat(int(d))
            if s:
                kids.setdefault(s[0], []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, ()))
    return out


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user+system) used so far by ``pid`` and its descendants."""
    ticks = 0
    for p in process_tree(pid):
        s = _stat(p)
        if s:
            ticks += s[1]
    return ticks / CLK_TCK


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants, in MB."""
    kb = 0
    for p in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    kb += int(line.split()[1])
    return round(kb / 1024, 1)


def self_cpu() -> float:
    """CPU seconds used so far by this process (all threads: grpc has its own)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class Window:
    """CPU of this process and of the sampled process trees over one measured window."""

    def __init__(self, sample: dict[str, int]) -> None:
        self.sample = sample

    def __enter__(self) -> Window:
        self.t0 = time.perf_counter()
        self.c0 = self_cpu()
        self.p0 = {n: cpu_seconds(p) for n, p in self.sample.items()}
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t0
        self.client_cpu = self_cpu() - self.c0
        self.cpu = {n: cpu_seconds(p) - self.p0[n] for n, p in self.sample.items()}
        self.rss = {n: rss_mb(p) for n, p in self.sample.items()}

    def report(self, requests: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "wall_s": round(self.wall, 3),
            "cpu": {"client": _cpu_entry(self.client_cpu, self.wall, requests)},
        }
        for n, c in self.cpu.items():
            out["cpu"][n] = _cpu_entry(c, self.wall, requests) | {"rss_mb": self.rss[n]}
        return out


def _cpu_entry(cpu_s: float, wall: float, requests: int) -> dict[str, Any]:
    return {
        "cpu_s": round(cpu_s, 3),
        "pct": round(100 * cpu_s / wall, 1) if wall else None,
        "ms_per_req": round(1000 * cpu_s / requests, 4) if requests else None,
    }


# ---------------------------------------------------------------------------- statistics


def percentile(sorted_vals: list[float], p: float) -> float:
    """Linear-interpolated percentile of an ascending list."""
    if not sorted_vals:
        return float("nan")
    k = (len(sorted_vals) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


def summarize(seconds: list[float]) -> dict[str, Any]:
    """Milliseconds: n, mean, min, p50, p90, p99, p99.9, max."""
    v = sorted(x * 1000.0 for x in seconds)
    if not v:
        return {"n": 0}
    return {
        "n": len(v),
        "mean": round(sum(v) / len(v), 4),
        "min": round(v[0], 4),
        "p50": round(percentile(v, 50), 4),
        "p90": round(percentile(v, 90), 4),
        "p99": round(percentile(v, 99), 4),
        "p999": round(percentile(v, 99.9), 4),
        "max": round(v[-1], 4),
    }


# ---------------------------------------------------------------------------- drivers
# A driver is a pair of coroutines (one call, one streamed call). ``call`` returns True on
# success; ``stream`` returns (ok, seconds to first event, to first content, total, events, text).

Call = Callable[[], Awaitable[bool]]
StreamResult = tuple[bool, float | None, float | None, float, int, str]
StreamCall = Callable[[], Awaitable[StreamResult]]


async def http_driver(a: argparse.Namespace, limit: int) -> tuple[Any, Call, StreamCall]:
    import aiohttp

    headers = {"Content-Type": "application/json"}
    for h in a.header:
        k, _, v = h.partition(":")
        headers[k.strip()] = v.strip()
    body: bytes = a.body_bytes
    conn = aiohttp.TCPConnector(limit=limit, ttl_dns_cache=None)
    session = aiohttp.ClientSession(
        connector=conn, timeout=aiohttp.ClientTimeout(total=60), auto_decompress=False
    )
    post = session.post
    url = a.url

    async def call() -> bool:
        async with post(url, data=body, headers=headers) as resp:
            await resp.read()
            return resp.status == 200

    async def stream() -> StreamResult:
        t0 = time.perf_counter()
        first_event = first_content = None
        events, done, text = 0, False, []
        async with post(url, data=body, headers=headers) as resp:
            ok_status = resp.status == 200
            buf = b""
            async for chunk in resp.content.iter_any():
                now = time.perf_counter()
                buf += chunk
                while b"\n\n" in buf:
                    ev, buf = buf.split(b"\n\n", 1)
                    for line in ev.split(b"\n"):
                        if not line.startswith(b"data:"):
                            continue
                        data = line[5:].strip()
                        events += 1
                        if first_event is None:
                            first_event = now
                        if data == b"[DONE]":
                            done = True
                            continue
                        with contextlib.suppress(orjson.JSONDecodeError):
                            for ch in orjson.loads(data).get("choices") or ():
                                piece = (ch.get("delta") or {}).get("content")
                                if piece:
                                    text.append(piece)
                                    if first_content is None:
                                        first_content = now
        total = time.perf_counter() - t0
        return (
            ok_status and done and bool(text),
            _since(first_event, t0),
            _since(first_content, t0),
            total,
            events,
            "".join(text),
        )

    return session, call, stream


async def grpc_driver(a: argparse.Namespace, limit: int) -> tuple[Any, Call, StreamCall]:
    import grpc
    from switchboard.v1 import chat_pb2, chat_pb2_grpc

    req = chat_request(orjson.loads(a.body_bytes))
    sreq = chat_pb2.StreamChatRequest(chat=req)
    md = (("authorization", f"Bearer {a.key}"),) if a.key else None
    channel = grpc.aio.insecure_channel(a.target)
    await asyncio.wait_for(channel.channel_ready(), 10)
    stub = chat_pb2_grpc.ChatServiceStub(channel)
    chat, stream_chat = stub.Chat, stub.StreamChat

    async def call() -> bool:
        try:
            resp = await chat(req, metadata=md, timeout=60)
        except grpc.aio.AioRpcError:
            return False
        return bool(resp.message.content)

    async def stream() -> StreamResult:
        t0 = time.perf_counter()
        first_event = first_content = None
        events, done, text = 0, False, []
        try:
            async for frame in stream_chat(sreq, metadata=md, timeout=60):
                now = time.perf_counter()
                events += 1
                if first_event is None:
                    first_event = now
                kind = frame.WhichOneof("frame")
                if kind == "text":
                    if frame.text.text:
                        text.append(frame.text.text)
                        if first_content is None:
                            first_content = now
                elif kind == "end":
                    done = True
            ok = done and bool(text)
        except grpc.aio.AioRpcError:
            ok = False
        total = time.perf_counter() - t0
        return ok, _since(first_event, t0), _since(first_content, t0), total, events, "".join(text)

    return channel, call, stream


def chat_request(body: dict[str, Any]) -> Any:
    """The switchboard.v1 ChatRequest equivalent of a small OpenAI chat body (text only)."""
    from switchboard.v1 import chat_pb2, types_pb2

    roles = {
        "system": types_pb2.ROLE_SYSTEM,
        "developer": types_pb2.ROLE_DEVELOPER,
        "user": types_pb2.ROLE_USER,
        "assistant": types_pb2.ROLE_ASSISTANT,
    }
    req = chat_pb2.ChatRequest(model=body["model"])
    for m in body["messages"]:
        req.messages.append(
            types_pb2.Message(
                role=roles[m["role"]], content=[types_pb2.ContentPart(text=m["content"])]
            )
        )
    if "temperature" in body:
        req.temperature = body["temperature"]
    if "max_tokens" in body:
        req.max_tokens = body["max_tokens"]
    return req


def _since(t: float | None, t0: float) -> float | None:
    return None if t is None else t - t0


# ---------------------------------------------------------------------------- modes


async def run_seq(call: Call, a: argparse.Namespace, sample: dict[str, int]) -> dict[str, Any]:
    warm_end = time.perf_counter() + a.warmup_seconds
    while time.perf_counter() < warm_end:
        await call()
    lat: list[float] = []
    errors = 0
    pc = time.perf_counter
    with Window(sample) as w:
        end = pc() + a.seconds
        n = 0
        while n < a.max_requests:
            t0 = pc()
            if t0 >= end:
                break
            try:
                ok = await call()
            except Exception:  # a failed request counts; the run goes on
                ok = False
            if ok:
                lat.append(pc() - t0)
            else:
                errors += 1
            n += 1
    return {
        "requests": n,
        "errors": errors,
        "rps": round(n / w.wall, 1),
        "lat_ms": summarize(lat),
    } | w.report(n)


async def run_conc(call: Call, a: argparse.Namespace, sample: dict[str, int]) -> dict[str, Any]:
    lat: list[float] = []
    errors = 0
    pc = time.perf_counter

    async def worker(deadline: float, record: bool) -> None:
        nonlocal errors
        while pc() < deadline:
            t0 = pc()
            try:
                ok = await call()
            except Exception:  # a failed request counts; the run goes on
                ok = False
            if record:
                if ok:
                    lat.append(pc() - t0)
                else:
                    errors += 1

    if a.warmup_seconds > 0:
        end = pc() + a.warmup_seconds
        await asyncio.gather(*(worker(end, False) for _ in range(a.concurrency)))
    with Window(sample) as w:
        end = pc() + a.seconds
        await asyncio.gather(*(worker(end, True) for _ in range(a.concurrency)))
    n = len(lat) + errors
    return {
        "concurrency": a.concurrency,
        "requests": n,
        "errors": errors,
        "rps": round(len(lat) / w.wall, 1),
        "lat_ms": summarize(lat),
    } | w.report(n)


async def run_stream(
    stream: StreamCall, a: argparse.Namespace, sample: dict[str, int]
) -> dict[str, Any]:
    for _ in range(a.warmup):
        await stream()
    results: list[StreamResult] = []
    with Window(sample) as w:
        for _ in range(a.requests):
            try:
                results.append(await stream())
            except Exception:  # a failed stream counts; the run goes on
                results.append((False, None, None, 0.0, 0, ""))
    ok = [r for r in results if r[0]]
    texts = {r[5] for r in ok}
    if a.expect_text is not None:
        bad_text = [r for r in ok if r[5] != a.expect_text]
        ok = [r for r in ok if r[5] == a.expect_text]
    else:
        bad_text = []
    return {
        "requests": len(results),
        "errors": len(results) - len(ok),
        "wrong_text": len(bad_text),
        "events_per_stream": ok[0][4] if ok else None,
        "distinct_texts": len(texts),
        "first_event_ms": summarize([r[1] for r in ok if r[1] is not None]),
        "ttft_ms": summarize([r[2] for r in ok if r[2] is not None]),
        "total_ms": summarize([r[3] for r in ok]),
    } | w.report(len(results))


async def main_async(a: argparse.Namespace) -> dict[str, Any]:
    proto, _, kind = a.mode.partition("-")
    limit = a.concurrency if kind == "conc" else 1
    driver = http_driver if proto == "http" else grpc_driver
    handle, call, stream = await driver(a, limit)
    sample = {}
    for s in a.sample:
        name, _, pid = s.partition("=")
        sample[name] = int(pid)
    try:
        if kind == "seq":
            return await run_seq(call, a, sample)
        if kind == "conc":
            return await run_conc(call, a, sample)
        return await run_stream(stream, a, sample)
    finally:
        await handle.close()


def _loopback(hostport: str) -> bool:
    host = hostport.split("//", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
    return host.startswith("127.") or host in ("localhost", "::1")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "mode", choices=[f"{t}-{m}" for t in ("http", "grpc") for m in ("seq", "conc", "stream")]
    )
    p.add_argument("--url", help="HTTP: the chat completions URL")
    p.add_argument("--target", help="gRPC: host:port")
    p.add_argument("--key", help="gRPC: gateway key sent as `authorization: Bearer <key>`")
    p.add_argument("--body", required=True, help="OpenAI chat request JSON file")
    p.add_argument("-H", "--header", action="append", default=[], help="HTTP header 'K: v'")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--warmup-seconds", type=float, default=1.0)
    p.add_argument("--max-requests", type=int, default=10_000_000)
    p.add_argument("-c", "--concurrency", type=int, default=64)
    p.add_argument("-n", "--requests", type=int, default=100, help="streams to record")
    p.add_argument("--warmup", type=int, default=10, help="warm-up streams")
    p.add_argument("--expect-text", default=None, help="streams must reassemble to this text")
    p.add_argument("--sample", action="append", default=[], help="NAME=PID to CPU-sample")
    a = p.parse_args(argv)
    where = a.url if a.mode.startswith("http") else a.target
    if not where:
        p.error("--url (http) or --target (grpc) is required")
    if not _loopback(where):
        sys.exit(f"refusing non-loopback target {where!r}")
    a.body_bytes = Path(a.body).read_bytes().strip()
    if a.mode.startswith("http"):
        try:
            import uvloop

            out = uvloop.run(main_async(a))
        except ImportError:  # pragma: no cover
            out = asyncio.run(main_async(a))
    else:
        # grpc.aio runs on the default asyncio loop (its uvloop support is experimental).
        out = asyncio.run(main_async(a))
    out["mode"] = a.mode
    sys.stdout.write(orjson.dumps(out).decode() + "\n")


if __name__ == "__main__":
    main()
