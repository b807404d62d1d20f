"""Hardening figures: what one abusive request, caller-chosen names, an oversized schema and a
SIGKILL cost the gateway — for this checkout and, with ``--baseline DIR``, another one, in the
same run.

- ``stall``: the largest request the gateway refuses and the largest it serves (HTTP and gRPC),
  each sent while a probe calls ``/healthz`` and gRPC health every 10 ms from other threads;
  prints each request's status and time, the probe's worst latency meanwhile and the gateway's
  RSS growth.
- ``metrics``: 5,000 requests naming 5,000 distinct unknown models, then one ``/metrics`` scrape:
  its size and time, and RSS before and after.
- ``budget``: a key with a $0.0005 budget sends a request carrying a 500-property tool schema
  until it is refused, against an upstream that bills a token per three bytes it receives:
  spend vs budget.
- ``kill``: traffic from 12 clients, SIGKILL after 1.5 s, restart, five times on one data dir:
  requests that finished (the client got its whole answer) without a ledger row.

    python bench/hardening.py                                  # all four, this checkout
    python bench/hardening.py --baseline ../wt/base --only stall,budget

Everything binds 127.0.0.1; each part is bounded in requests and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import multiprocessing
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import orjson
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
for path in (str(ROOT), str(ROOT / "bench")):
    if path not in sys.path:
        sys.path.insert(0, path)

from harness.process import fake_upstream  # noqa: E402
from switchboard.v1 import chat_pb2, types_pb2  # noqa: E402

from tests.fakes.common import RecordedRequest  # noqa: E402
from tests.fakes.openai_upstream import FakeOpenAI, Reply, Usage  # noqa: E402
from tests.support.server import RunningGateway, run_cli, start_gateway  # noqa: E402

MASTER = "sk-hardening-master-0123456789abcdef"
UPSTREAM_KEY = "sk-hardening-upstream-0123456789"
MODEL = "openai/gpt-4o-mini"
PRICE = {"input": 0.15, "output": 0.6}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def gateway(
    repo: Path, upstream_url: str, data_dir: Path | None = None, **cfg: Any
) -> RunningGateway:
    config = {
        "deployments": [{"provider": "openai", "model": "gpt-4o-mini", "price": PRICE}],
        "logging": {"requests": False},
        **cfg,
    }
    return start_gateway(
        env={"OPENAI_API_KEY": UPSTREAM_KEY, "OPENAI_BASE_URL": upstream_url},
        config=config,
        data_dir=data_dir,
        master_key=MASTER,
        repo_root=repo,
        startup_timeout=60,
    )


def create_key(gw: RunningGateway, repo: Path, name: str, *limits: str) -> str:
    done = run_cli(
        "keys",
        "create",
        "--name",
        name,
        *limits,
        "--json",
        "--data-dir",
        str(gw.data_dir),
        repo_root=repo,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return str(json.loads(done.stdout)["key"])


# --- the probe --------------------------------------------------------------------------------


def _probe_http(host: str, port: int, stop: Any, out: list[tuple[float, float]]) -> None:
    conn = http.client.HTTPConnection(host, port, timeout=60)
    while not stop.is_set():
        start = time.monotonic()
        try:
            conn.request("GET", "/healthz")
            conn.getresponse().read()
        except OSError:
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=60)
        out.append((start, time.monotonic() - start))
        time.sleep(0.01)
    conn.close()


def _probe_grpc(target: str, stop: Any, out: list[tuple[float, float]]) -> None:
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while not stop.is_set():
            start = time.monotonic()
            with contextlib.suppress(grpc.RpcError):
                stub.Check(health_pb2.HealthCheckRequest(), timeout=60)
            out.append((start, time.monotonic() - start))
            time.sleep(0.01)


def _probe_main(host: str, port: int, target: str, stop: Any, results: Any) -> None:
    samples: list[tuple[float, float]] = []
    threads = [
        threading.Thread(target=_probe_http, args=(host, port, stop, samples)),
        threading.Thread(target=_probe_grpc, args=(target, stop, samples)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put(samples)


class Probe:
    """Calls /healthz and gRPC health every 10 ms, from a process of its own (so that the
    bench's own work never delays it); ``worst`` is its slowest call within a time window
    (CLOCK_MONOTONIC is one clock for every process)."""

    def __init__(self, http_host: str, http_port: int, grpc_target: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._stop = ctx.Event()
        self._results: Any = ctx.Queue()
        self._proc = ctx.Process(
            target=_probe_main,
            args=(http_host, http_port, grpc_target, self._stop, self._results),
            daemon=True,
        )
        self.samples: list[tuple[float, float]] = []

    def __enter__(self) -> Probe:
        self._proc.start()
        time.sleep(1.0)  # spawned, imported, calling
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.samples = self._results.get(timeout=120)
        self._proc.join(timeout=10)

    def worst(self, since: float, until: float) -> float:
        # A call that started before `until` and was still waiting counts in full.
        inside = [s for start, s in self.samples if since <= start + s and start <= until]
        return max(inside, default=float("nan"))


# --- stall ------------------------------------------------------------------------------------


def _empty_messages(n: int) -> bytes:
    return b'{"model":"%s","messages":[' % MODEL.encode() + b",".join([b"{}"] * n) + b"]}"


def _parts_body(messages: int, parts_each: int, text: str) -> bytes:
    part = {"type": "text", "text": text}
    body = {
        "model": MODEL,
        "max_tokens": 16,
        "messages": [{"role": "user", "content": [part] * parts_each}] * messages,
    }
    return orjson.dumps(body)


def _grpc_request(messages: int, parts_each: int, text: str) -> bytes:
    part = types_pb2.ContentPart(text=text)
    message = types_pb2.Message(role=types_pb2.ROLE_USER, content=[part] * parts_each)
    request = chat_pb2.ChatRequest(model=MODEL, max_tokens=16)
    request.messages.extend([message] * messages)
    return request.SerializeToString()


def http_cases() -> list[tuple[str, Callable[[], bytes]]]:
    # Text per part that brings the served request just under the 32 MiB body limit.
    return [
        ("HTTP refused: 1,000,000 empty messages", lambda: _empty_messages(1_000_000)),
        ("HTTP refused: 2,000,000 parts, ~59 MB", lambda: _parts_body(2000, 1000, "x")),
        (
            "HTTP served: 4,096 messages, 16,384 parts, ~31 MB",
            lambda: _parts_body(4096, 4, "y" * 1950),
        ),
    ]


def grpc_cases() -> list[tuple[str, Callable[[], bytes]]]:
    return [
        ("gRPC refused: 1,000,000 empty messages", lambda: _grpc_request(1_000_000, 0, "")),
        (
            "gRPC served: 4,096 messages, 16,384 parts, ~31 MB",
            lambda: _grpc_request(4096, 4, "y" * 1950),
        ),
    ]


def stall(repo: Path, upstream_url: str) -> list[str]:
    done: list[tuple[str, int, str, float, float, float]] = []  # name, size, outcome, t0, s, MB
    gw = gateway(repo, upstream_url)
    try:
        host, port = gw.http_url.removeprefix("http://").rsplit(":", 1)
        pid = gw.process.pid if gw.process else 0
        with (
            Probe(host, int(port), gw.grpc_target) as probe,
            httpx.Client(base_url=gw.http_url, timeout=120) as client,
            grpc.insecure_channel(
                gw.grpc_target,
                options=[
                    ("grpc.max_send_message_length", 64 << 20),
                    ("grpc.max_receive_message_length", 64 << 20),
                ],
            ) as channel,
        ):
            raw_chat = channel.unary_unary(
                "/switchboard.v1.ChatService/Chat", lambda b: b, lambda b: b
            )
            start = time.monotonic()
            time.sleep(1.0)
            done.append(("idle (no request), 1 s", 0, "-", start, 1.0, 0.0))
            for name, build in [*http_cases(), *grpc_cases()]:
                body = build()
                rss0 = rss_mb(pid)
                start = time.monotonic()
                if name.startswith("HTTP"):
                    r = client.post(
                        "/v1/chat/completions",
                        content=body,
                        headers={
                            "authorization": f"Bearer {MASTER}",
                            "content-type": "application/json",
                        },
                    )
                    outcome = str(r.status_code)
                else:
                    try:
                        raw_chat(
                            body, metadata=[("authorization", f"Bearer {MASTER}")], timeout=120
                        )
                        outcome = "OK"
                    except grpc.RpcError as err:
                        outcome = err.code().name  # type: ignore[attr-defined]
                took = time.monotonic() - start
                done.append((name, len(body), outcome, start, took, rss_mb(pid) - rss0))
                del body
                time.sleep(0.3)  # the request's memory is freed before the next one
    finally:
        gw.terminate()
        gw.close()
    return [
        f"  {name:<50} {size / 1e6:5.1f} MB -> {outcome:<16} {took * 1000:6.0f} ms; "
        f"probe worst {probe.worst(start, start + took) * 1000:6.1f} ms; RSS +{grew:4.0f} MB"
        for name, size, outcome, start, took, grew in done
    ]


# --- metrics ----------------------------------------------------------------------------------


async def _names(gw: RunningGateway, prefix: str, count: int) -> Counter[int]:
    sem = asyncio.Semaphore(16)
    statuses: Counter[int] = Counter()
    async with httpx.AsyncClient(base_url=gw.http_url, timeout=30) as http:

        async def one(i: int) -> None:
            async with sem:
                r = await http.post(
                    "/v1/chat/completions",
                    headers={"authorization": f"Bearer {MASTER}"},
                    json={
                        "model": f"{prefix}{i:05d}",
                        "messages": [{"role": "user", "content": "x"}],
                    },
                )

                statuses[r.status_code] += 1

        await asyncio.gather(*(one(i) for i in range(count)))
    return statuses


def metrics(repo: Path, upstream_url: str) -> list[str]:
    lines = []
    # Unknown names of a known provider: refused (demo) or passed through to the upstream.
    for prefix in ("demo/made-up-", "openai/made-up-"):
        gw = gateway(repo, upstream_url)
        try:
            pid = gw.process.pid if gw.process else 0
            with httpx.Client(base_url=gw.http_url, timeout=60) as client:
                before = len(client.get("/metrics").content)
                rss0 = rss_mb(pid)
                statuses = asyncio.run(_names(gw, prefix, 5000))
                start = time.monotonic()
                size = len(client.get("/metrics").content)
                took = time.monotonic() - start
            answers = ", ".join(f"{n}x {code}" for code, n in sorted(statuses.items()))
            lines.append(
                f"  5,000 x {prefix}N ({answers}): /metrics {before / 1e3:.1f} kB -> "
                f"{size / 1e3:.1f} kB, scrape {took * 1000:.1f} ms; RSS {rss0:.0f} -> "
                f"{rss_mb(pid):.0f} MB"
            )
        finally:
            gw.terminate()
            gw.close()
    return lines


# --- budget -----------------------------------------------------------------------------------


class BytesBilledUpstream(FakeOpenAI):
    """Bills what it received: a prompt token per three request bytes, and max_tokens out."""

    def default_reply(self, recorded: RecordedRequest) -> Reply:
        body = recorded.json if isinstance(recorded.json, dict) else {}
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or 200
        return Reply(text="ok", usage=Usage(len(recorded.body) // 3, int(limit)))


def _spent(data_dir: Path, name: str) -> tuple[int, int]:
    keys = sqlite3.connect(data_dir / "keys.db")
    (key_id,) = keys.execute("SELECT id FROM gateway_keys WHERE name = ?", (name,)).fetchone()
    keys.close()
    usage = sqlite3.connect(data_dir / "usage.db")
    total, rows = usage.execute(
        "SELECT COALESCE(SUM(total_nanousd), 0), COUNT(*) FROM usage "
        "WHERE key_id = ? AND output_tokens > 0",
        (key_id,),
    ).fetchone()
    usage.close()
    return int(total), int(rows)


async def _budget(repo: Path, budget: float) -> str:
    props = {
        f"field_{i}": {"type": "string", "description": f"Description of field {i}. " * 6}
        for i in range(500)
    }
    tool = {
        "type": "function",
        "function": {"name": "fill_form", "parameters": {"type": "object", "properties": props}},
    }
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "fill the form"}],
        "tools": [tool],
        "max_tokens": 50,
    }
    async with BytesBilledUpstream() as upstream:
        gw = await asyncio.to_thread(gateway, repo, upstream.base_url)
        try:
            key = create_key(gw, repo, "budget", "--monthly-budget", str(budget))
            served = 0
            async with httpx.AsyncClient(base_url=gw.http_url, timeout=30) as http:
                for _ in range(200):
                    r = await http.post(
                        "/v1/chat/completions",
                        json=body,
                        headers={"authorization": f"Bearer {key}"},
                    )
                    if r.status_code != 200:
                        break
                    served += 1
        finally:
            await asyncio.to_thread(gw.terminate)  # SIGTERM writes every row
        total, _ = _spent(gw.data_dir, "budget")
        gw.close()
    ratio = total / (budget * 1e9)
    return (
        f"  budget ${budget}: {served} requests served, spent ${total / 1e9:.6f} "
        f"= {ratio:.2f}x the budget (last answer {r.status_code})"
    )


def budget(repo: Path, upstream_url: str) -> list[str]:
    return [asyncio.run(_budget(repo, b)) for b in (0.0005, 0.05)]


# --- kill -------------------------------------------------------------------------------------


async def _traffic(gw: RunningGateway, key: str, tag: str, seconds: float) -> set[str]:
    done: set[str] = set()

    async def client(n: int) -> None:
        headers = {"authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=gw.http_url, headers=headers, timeout=5) as http:
            for i in range(100_000):
                rid = f"{tag}-{n}-{i}"
                stream = i % 2 == 0
                body = {
                    "model": "demo/echo",
                    "messages": [{"role": "user", "content": "hi"}],
                    "stream": stream,
                }
                try:
                    r = await http.post(
                        "/v1/chat/completions", json=body, headers={"x-request-id": rid}
                    )
                except httpx.HTTPError:
                    return
                if r.status_code == 200 and (not stream or "[DONE]" in r.text):
                    done.add(rid)

    clients = [asyncio.ensure_future(client(n)) for n in range(12)]
    await asyncio.sleep(seconds)
    assert gw.process is not None
    gw.process.kill()
    await asyncio.gather(*clients)
    return done


def kill(repo: Path, upstream_url: str, kills: int = 5) -> list[str]:
    lines = []
    with tempfile.TemporaryDirectory(prefix="hardening-kill-") as tmp:
        data = Path(tmp)
        total_done: set[str] = set()
        key = ""
        for k in range(kills):
            gw = gateway(repo, upstream_url, data_dir=data)
            key = key or create_key(gw, repo, "killed")
            done = asyncio.run(_traffic(gw, key, f"k{k}", 1.5))
            gw.close()
            total_done |= done
            lines.append(f"  kill {k + 1}: {len(done)} requests finished before the kill")
        gw = gateway(repo, upstream_url, data_dir=data)  # imports what the last kill left
        try:
            conn = sqlite3.connect(data / "usage.db")
            recorded = {r for (r,) in conn.execute("SELECT request_id FROM usage")}
            conn.close()
        finally:
            gw.terminate()
            gw.close()
        lost = total_done - recorded
        lines.append(
            f"  over {kills} kills: {len(lost)} of {len(total_done)} finished requests have no row"
        )
    return lines


PARTS: dict[str, Callable[[Path, str], list[str]]] = {
    "stall": stall,
    "metrics": metrics,
    "budget": budget,
    "kill": kill,
}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", type=Path, help="another checkout to measure in the same run")
    parser.add_argument(
        "--only", default=",".join(PARTS), help="comma-separated: " + ",".join(PARTS)
    )
    args = parser.parse_args()
    repos = [("this checkout", ROOT)] + (
        [("baseline", args.baseline.resolve())] if args.baseline else []
    )
    with fake_upstream() as upstream_url:
        for part in args.only.split(","):
            for label, repo in repos:
                print(f"{part} — {label} ({repo})", flush=True)
                try:
                    for line in PARTS[part](repo, upstream_url):
                        print(line, flush=True)
                except Exception as e:
                    print(f"  failed: {type(e).__name__}: {str(e)[:300]}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
