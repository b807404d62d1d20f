"""Chaos run: three flaky upstreams behind one route, and clients that must not notice.

Starts three fake OpenAI upstreams on loopback (``tests/fakes/openai_upstream.FakeOpenAI`` with a
random failure injector) and a real gateway process (``python -m server serve`` via
``tests/support/server.py``) whose route ``chaos`` spans the three. Each upstream fails a random
``--fail-rate`` (30%) of the requests it gets, in mixed ways: 429 with ``retry-after-ms``, 500,
503, a timeout (the upstream never answers; the gateway's attempt timeout fires), a dropped
connection, and a stream cut before its first token (non-streamed: half a body).

Then ``--requests`` (1,000) OpenAI-style requests, half of them streamed, at ``--concurrency``
(32) go through the gateway's HTTP API. It prints:

- the zero-failure check (every response 200 with the expected text; every stream ends with
  ``[DONE]`` and no error event) — exit code 1 when it fails;
- the distribution of ``x-switchboard-attempts`` (tries per request, skips of cooling or open
  candidates included) and what each upstream injected;
- latency percentiles through the gateway under chaos against the same load sent directly to a
  healthy fake (no failures), and the added latency p50/p90/p99.

Failures after a stream's first token are deliberately not injected: by design nothing can be
retried once text has reached the client (the stream ends with an error event instead), so
they cannot be hidden from clients by any gateway.

    python bench/chaos.py                      # ~15 s; bounded by --max-seconds
    python bench/chaos.py --requests 300 --seed 7

Everything binds 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fakes.openai_upstream import (  # noqa: E402
    CutStream,
    Disconnect,
    FakeOpenAI,
    Stall,
    Status,
    default_reply_text,
)
from tests.support.server import running_gateway  # noqa: E402

ROUTE = "chaos"
# Upstream name → the built-in provider whose `<NAME>_BASE_URL` points at it.
PROVIDERS = ("openai", "groq", "mistral")
MODES: dict[str, Any] = {
    "429": Status(429, headers={"retry-after-ms": "50"}),
    "500": Status(500),
    "503": Status(503),
    "timeout": Stall(),
    "disconnect": Disconnect(),
    "cut-before-first-token": CutStream(after_chunks=1),
}
GATEWAY_CONFIG: dict[str, Any] = {
    "deployments": [{"provider": p, "model": "chaos-model"} for p in PROVIDERS],
    "routes": [
        {
            "name": ROUTE,
            "strategy": "available",
            "deployments": [f"{p}/chaos-model" for p in PROVIDERS],
        }
    ],
    # A stalled upstream is given up on after 0.3 s; the whole request has 30 s.
    "timeouts": {"request": 30, "attempt": 0.3, "stream_idle": 2},
    "retry": {
        "max_attempts_per_deployment": 3,
        "initial_delay": 0.01,
        "max_delay": 0.1,
        "max_retry_after": 1.0,
        "rate_limit_cooldown": 0.05,
        "max_rounds": 3,
    },
    # 30% random failures are noise, not an outage: only trip on long streaks or >70% errors.
    "circuit": {
        "consecutive_failures": 10,
        "error_rate": 0.7,
        "min_requests": 50,
        "window_seconds": 10,
        "cooldown_seconds": 1,
    },
    "logging": {"requests": False},
}


class ChaosUpstream(FakeOpenAI):
    """A FakeOpenAI that answers a random share of requests with a random failure."""

    def __init__(self, rng: random.Random, fail_rate: float) -> None:
        super().__init__()
        self.rng = rng
        self.fail_rate = fail_rate
        self.injected: Counter[str] = Counter()

    def next_behaviour(self) -> Any:
        if self.rng.random() >= self.fail_rate:
            self.injected["ok"] += 1
            return None
        mode = self.rng.choice(list(MODES))
        self.injected[mode] += 1
        return MODES[mode]


@dataclass
class Result:
    """One client request as the client saw it."""

    ok: bool
    seconds: float
    stream: bool
    attempts: int = 0
    provider: str = ""
    problem: str = ""


@dataclass
class Run:
    results: list[Result] = field(default_factory=list)

    @property
    def failures(self) -> list[Result]:
        return [r for r in self.results if not r.ok]


def body(i: int, stream: bool) -> bytes:
    payload: dict[str, Any] = {
        "model": ROUTE,
        "messages": [{"role": "user", "content": f"chaos request number {i}"}],
        "stream": stream,
    }
    if stream:
        payload["stream_options"] = {"include_usage": True}
    return orjson.dumps(payload)


def expected_text(i: int) -> str:
    return default_reply_text(
        {"messages": [{"role": "user", "content": f"chaos request number {i}"}]}
    )


async def one(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], i: int, stream: bool
) -> Result:
    started = time.perf_counter()
    try:
        async with session.post(url, data=body(i, stream), headers=headers) as response:
            raw = await response.read()
            seconds = time.perf_counter() - started
            attempts = int(response.headers.get("x-switchboard-attempts", "0") or 0)
            provider = response.headers.get("x-switchboard-provider", "")
            if response.status != 200:
                problem = f"HTTP {response.status}: {raw[:2000]!r}"
                return Result(False, seconds, stream, attempts, provider, problem)
            text = _stream_text(raw) if stream else _chat_text(raw)
            if text != expected_text(i):
                return Result(False, seconds, stream, attempts, provider, f"bad body: {text!r}")
            return Result(True, seconds, stream, attempts, provider)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        seconds = time.perf_counter() - started
        return Result(False, seconds, stream, problem=f"{type(exc).__name__}: {exc}")


def _chat_text(raw: bytes) -> str:
    return str(orjson.loads(raw)["choices"][0]["message"]["content"])


def _stream_text(raw: bytes) -> str:
    events = [line[6:] for line in raw.decode().splitlines() if line.startswith("data: ")]
    if not events or events[-1] != "[DONE]":
        raise ValueError(f"stream did not end with [DONE]: {events[-1:]!r}")
    parts = []
    for event in events[:-1]:
        chunk = orjson.loads(event)
        if "error" in chunk:
            raise ValueError(f"error event: {chunk['error']!r}")
        for choice in chunk.get("choices") or []:
            parts.append(choice.get("delta", {}).get("content") or "")
    return "".join(parts)


async def load(
    url: str,
    headers: dict[str, str],
    requests: int,
    concurrency: int,
    stream_share: float,
    seed: int,
) -> Run:
    """`requests` requests from `concurrency` workers, closed loop; the same mix every run."""
    rng = random.Random(seed)
    plan = [rng.random() < stream_share for _ in range(requests)]
    run = Run()
    next_index = 0
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            nonlocal next_index
            while next_index < requests:
                i = next_index
                next_index += 1
                run.results.append(await one(session, url, headers, i, plan[i]))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return run


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def report(
    args: argparse.Namespace,
    direct: Run,
    chaos: Run,
    upstreams: dict[str, ChaosUpstream],
    wall: float,
) -> bool:
    ok = not chaos.failures and len(chaos.results) == args.requests
    print()
    print(
        f"Chaos run: {args.requests} requests at concurrency {args.concurrency}, "
        f"{args.stream_share:.0%} streamed, 3 upstreams each failing {args.fail_rate:.0%} "
        f"(seed {args.seed}), {wall:.1f} s"
    )
    print()
    print("Injected by the upstreams (per upstream request):")
    modes = ["ok", *MODES]
    print(
        "  "
        + "upstream".ljust(10)
        + "".join(m.rjust(24 if m.startswith("cut") else 12) for m in modes)
        + "  failed"
    )
    for name, up in upstreams.items():
        total = sum(up.injected.values())
        failed = total - up.injected["ok"]
        cells = "".join(str(up.injected[m]).rjust(24 if m.startswith("cut") else 12) for m in modes)
        print(f"  {name.ljust(10)}{cells}  {failed}/{total} = {failed / max(total, 1):.1%}")
    print()
    print("Attempts per client request (x-switchboard-attempts, skips included):")
    dist = Counter(r.attempts for r in chaos.results if r.ok)
    for attempts in sorted(dist):
        share = dist[attempts] / max(len(chaos.results), 1)
        bar = "#" * round(share * 60)
        print(f"  {attempts:>2} attempt(s): {dist[attempts]:>5}  {share:6.1%}  {bar}")
    served = Counter(r.provider for r in chaos.results if r.ok)
    print("  served by: " + ", ".join(f"{p} {n}" for p, n in sorted(served.items())))
    print()
    print("Latency (ms)            p50        p90        p99        max")
    rows = [("direct (healthy)", direct), ("gateway (chaos)", chaos)]
    for label, run in rows:
        secs = [r.seconds * 1000 for r in run.results if r.ok]
        print(
            f"  {label:<18}"
            + "".join(f"{percentile(secs, q):>11.1f}" for q in (0.5, 0.9, 0.99))
            + f"{max(secs, default=float('nan')):>11.1f}"
        )
    d = [r.seconds * 1000 for r in direct.results if r.ok]
    c = [r.seconds * 1000 for r in chaos.results if r.ok]
    added = [percentile(c, q) - percentile(d, q) for q in (0.5, 0.9, 0.99)]
    print("  added latency     " + "".join(f"{a:>11.1f}" for a in added))
    for kind, flag in (("non-streamed", False), ("streamed", True)):
        dk = [r.seconds * 1000 for r in direct.results if r.ok and r.stream is flag]
        ck = [r.seconds * 1000 for r in chaos.results if r.ok and r.stream is flag]
        print(
            f"    {kind:<16}"
            + "".join(f"{percentile(ck, q) - percentile(dk, q):>11.1f}" for q in (0.5, 0.9, 0.99))
        )
    print()
    if ok:
        print(f"ZERO-FAILURE CHECK: PASS — {len(chaos.results)}/{args.requests} requests succeeded")
    else:
        print(
            f"ZERO-FAILURE CHECK: FAIL — {len(chaos.failures)} of {len(chaos.results)} failed "
            f"({args.requests - len(chaos.results)} not run)"
        )
        for r in chaos.failures[:10]:
            print(f"  {'stream' if r.stream else 'chat'}: {r.problem}")
    return ok


async def main(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    async with (
        ChaosUpstream(random.Random(rng.random()), args.fail_rate) as a,
        ChaosUpstream(random.Random(rng.random()), args.fail_rate) as b,
        ChaosUpstream(random.Random(rng.random()), args.fail_rate) as c,
    ):
        upstreams = dict(zip(PROVIDERS, (a, b, c), strict=True))
        env = {f"{p.upper()}_API_KEY": f"sk-chaos-{p}" for p in PROVIDERS}
        env |= {f"{p.upper()}_BASE_URL": up.base_url for p, up in upstreams.items()}
        async with running_gateway(env=env, config=GATEWAY_CONFIG) as gw:
            assert gw.http_url is not None, "the gateway has no HTTP shim"
            key = gw.create_key("chaos")
            gateway_url = f"{gw.http_url}/v1/chat/completions"
            headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}

            async def phase(label: str, run: Callable[[], Awaitable[Run]]) -> Run:
                print(f"{label}...", flush=True)
                return await run()

            # Direct baseline: the same load against one upstream with its failures off.
            direct_up = upstreams["openai"]
            rate = direct_up.fail_rate
            direct_up.fail_rate = 0.0
            direct_url = f"{direct_up.base_url}/chat/completions"
            direct_headers = {
                "authorization": "Bearer sk-chaos-openai",
                "content-type": "application/json",
            }
            # Warm both paths (connections, first-request costs) before measuring.
            await load(direct_url, direct_headers, 64, args.concurrency, args.stream_share, 1)
            direct = await phase(
                "direct (healthy upstream)",
                lambda: load(
                    direct_url,
                    direct_headers,
                    args.requests,
                    args.concurrency,
                    args.stream_share,
                    args.seed,
                ),
            )
            await load(gateway_url, headers, 64, args.concurrency, args.stream_share, 2)
            direct_up.fail_rate = rate
            for up in upstreams.values():
                up.injected.clear()
            started = time.perf_counter()
            chaos = await phase(
                "through the gateway (chaos)",
                lambda: load(
                    gateway_url,
                    headers,
                    args.requests,
                    args.concurrency,
                    args.stream_share,
                    args.seed,
                ),
            )
            wall = time.perf_counter() - started
    return 0 if report(args, direct, chaos, upstreams, wall) else 1


def cli() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--fail-rate", type=float, default=0.3)
    parser.add_argument("--stream-share", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument("--max-seconds", type=float, default=300.0, help="hard bound on the run")
    args = parser.parse_args()

    async def bounded() -> int:
        async with asyncio.timeout(args.max_seconds):
            return await main(args)

    try:
        return asyncio.run(bounded())
    except TimeoutError:
        print(f"chaos run exceeded --max-seconds {args.max_seconds}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(cli())
