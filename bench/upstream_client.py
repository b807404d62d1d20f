"""What one upstream POST costs the gateway's process, per client path, in one run.

Starts ``bench/fake_upstream.py`` and sends the same small chat-completion POST through:

- ``http1``: ``server.providers.http_client.UpstreamClient.post`` (keep-alive connections over
  httptools' parser — the gateway's path);
- ``aiohttp``: one pooled ``aiohttp.ClientSession`` used directly, configured as the gateway
  used it before ``http1`` (no cookies, no proxy variables, no per-request timer);
- ``httpx+aiohttp transport``: an ``httpx.Request`` handed to ``httpx_aiohttp.AiohttpTransport``
  (the gateway's path before, which skipped ``httpx.AsyncClient``);
- ``httpx.AsyncClient``: the same transport under httpx's client (openai-python's
  ``DefaultAioHttpClient`` shape).

Each path runs ``--requests`` requests at ``--concurrency`` after a warm-up, alternating paths for
``--rounds`` rounds, and prints the client process's CPU per request (``time.process_time``) —
the figure that matters to a gateway — and wall time per request.

    python bench/upstream_client.py [--requests 5000] [--concurrency 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx
import orjson
import yarl
from httpx_aiohttp import AiohttpTransport

ROOT = Path(__file__).resolve().parents[1]
for path in (str(ROOT), str(ROOT / "bench")):
    if path not in sys.path:
        sys.path.insert(0, path)

from harness.process import fake_upstream  # noqa: E402

from server.providers.http_client import UpstreamClient  # noqa: E402

BODY = orjson.dumps(
    {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 64}
)
HEADERS = {
    "authorization": "Bearer sk-bench",
    "content-type": "application/json",
    "accept": "application/json",
}


async def measure(send: Callable[[], Awaitable[None]], n: int, conc: int) -> tuple[float, float]:
    sem = asyncio.Semaphore(conc)

    async def one() -> None:
        async with sem:
            await send()

    for _ in range(200):
        await send()
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return (time.process_time() - cpu) / n * 1e6, (time.perf_counter() - wall) / n * 1e6


async def main(url: str, args: argparse.Namespace) -> None:
    direct = UpstreamClient()
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=1000, keepalive_timeout=60.0),
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10.0),
        skip_auto_headers=("User-Agent",),
        trust_env=False,
    )
    aio_url = yarl.URL(url)
    transport = AiohttpTransport()
    parsed = httpx.URL(url)
    client = httpx.AsyncClient(transport=AiohttpTransport())

    async def via_http1() -> None:
        orjson.loads((await direct.post(url, content=BODY, headers=HEADERS)).content)

    async def via_aiohttp() -> None:
        async with session.post(
            aio_url, data=BODY, headers=HEADERS, allow_redirects=False
        ) as response:
            orjson.loads(await response.read())

    async def via_transport() -> None:
        request = httpx.Request("POST", parsed, content=BODY, headers=HEADERS)
        response = await transport.handle_async_request(request)
        orjson.loads(await response.aread())
        await response.aclose()

    async def via_client() -> None:
        orjson.loads((await client.post(url, content=BODY, headers=HEADERS)).content)

    paths = {
        "http1 (gateway now)": via_http1,
        "aiohttp session": via_aiohttp,
        "httpx+aiohttp transport": via_transport,
        "httpx.AsyncClient": via_client,
    }
    cpu: dict[str, list[float]] = {name: [] for name in paths}
    wall: dict[str, list[float]] = {name: [] for name in paths}
    for rnd in range(args.rounds):
        order = list(paths)[rnd % len(paths) :] + list(paths)[: rnd % len(paths)]
        for name in order:
            c, w = await measure(paths[name], args.requests, args.concurrency)
            cpu[name].append(c)
            wall[name].append(w)
    await direct.aclose()
    await session.close()
    await transport.aclose()
    await client.aclose()
    base = statistics.median(cpu["http1 (gateway now)"])
    print(f"client CPU per POST (median of {args.rounds} rounds, c{args.concurrency}):")
    for name in paths:
        c, w = statistics.median(cpu[name]), statistics.median(wall[name])
        print(f"  {name:<26} {c:7.1f} us CPU  {w:7.1f} us wall  ({c / base:.2f}x)")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    with fake_upstream() as base_url:
        asyncio.run(main(f"{base_url}/chat/completions", args))


if __name__ == "__main__":
    cli()
