"""What the HTTP server alone costs: uvicorn (httptools, uvloop, raw ASGI, as the shim runs it)
against granian's embedded server (ASGI and RSGI), each serving a do-nothing app.

The app reads the POSTed JSON body, parses it and answers one canned chat completion: no
gateway work at all, so the figures are each server's floor. For every server, interleaved over
``--rounds``, wrk at concurrency 1 (latency) and 64 (throughput) with the server's CPU per
request from ``/proc``. granian is not a dependency: without it (``pip install granian``) only
uvicorn is measured.

    python bench/http_servers.py [--rounds 2] [--seconds 6]

    python bench/http_servers.py --serve uvicorn --port 0   # one server; prints LISTENING <port>

Everything binds 127.0.0.1; each run is bounded by ``--seconds``.
"""

from __future__ import annotations

import argparse
import importlib.util
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
for path in (str(ROOT), str(ROOT / "bench")):
    if path not in sys.path:
        sys.path.insert(0, path)

from harness.config import BODY, PY  # noqa: E402
from harness.load import Target, run_wrk  # noqa: E402
from harness.process import start_listening  # noqa: E402

ANSWER = orjson.dumps(
    {
        "id": "chatcmpl-floor",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hello there " * 10},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30},
    }
)
HEAD = [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    # No lifespan: uvicorn runs with lifespan="off", granian with its no-lifespan ASGI.
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    orjson.loads(body)
    await send({"type": "http.response.start", "status": 200, "headers": HEAD})
    await send({"type": "http.response.body", "body": ANSWER})


async def rsgi_app(scope: Any, protocol: Any) -> None:
    orjson.loads(await protocol())
    protocol.response_bytes(200, [("content-type", "application/json")], ANSWER)


def serve(kind: str, port: int) -> None:
    """Runs one server on a uvloop loop until killed; prints ``LISTENING <port>`` once bound."""
    import uvloop

    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]
    if kind == "uvicorn":
        import uvicorn

        async def run() -> None:
            config = uvicorn.Config(
                asgi_app,
                http="httptools",
                loop="none",
                lifespan="off",
                access_log=False,
                log_level="warning",
            )
            server = uvicorn.Server(config)
            print(f"LISTENING {port}", flush=True)
            await server.serve(sockets=[sock])

        uvloop.run(run())
        return
    from granian.constants import HTTPModes, Interfaces
    from granian.server.embed import Server

    sock.close()  # granian binds its own socket: take the port that was free a moment ago

    async def run_granian() -> None:
        server = Server(
            asgi_app if kind == "granian-asgi" else rsgi_app,
            address="127.0.0.1",
            port=port,
            interface=Interfaces.ASGINL if kind == "granian-asgi" else Interfaces.RSGI,
            http=HTTPModes.http1,
            log_enabled=False,
        )
        print(f"LISTENING {port}", flush=True)
        await server.serve()

    uvloop.run(run_granian())


def _wait_accepting(port: int, timeout: float = 10.0) -> None:
    # LISTENING is printed before the server's loop is up: wait until it accepts.
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--serve", choices=["uvicorn", "granian-asgi", "granian-rsgi"])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port)
        return 0
    kinds = ["uvicorn"]
    if importlib.util.find_spec("granian") is not None:
        kinds += ["granian-asgi", "granian-rsgi"]
    else:
        print("granian is not installed (pip install granian): measuring uvicorn only")
    results: dict[tuple[str, int], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-servers-") as tmp:
        work = Path(tmp)
        body = work / "body.json"
        body.write_bytes(orjson.dumps(BODY))
        for rnd in range(args.rounds):
            order = kinds if rnd % 2 == 0 else kinds[::-1]
            for kind in order:
                cmd = [PY, str(Path(__file__).resolve()), "--serve", kind, "--port", "0"]
                proc, port = start_listening(kind, cmd, work, None)
                try:
                    _wait_accepting(port)
                    url = f"http://127.0.0.1:{port}/v1/chat/completions"
                    target = Target(kind, "http", url, "unused", {"server": proc.pid})
                    for conns in (1, 64):
                        res = run_wrk(target, body, conns, args.seconds, warmup=2.0)
                        results.setdefault((kind, conns), []).append(res)
                        print(
                            f"round {rnd + 1} {kind:13s} c{conns:<3d} {res['rps']:9.0f} req/s"
                            f"  p50 {res['lat_ms']['p50']:.3f} ms  errors {res['errors']}",
                            flush=True,
                        )
                finally:
                    proc.stop()
    print()
    print("| server | c1 p50 ms | c1 p99 ms | c1 CPU ms/req | c64 req/s | c64 CPU ms/req |")
    print("|---|---|---|---|---|---|")
    for kind in kinds:
        c1, c64 = results[(kind, 1)], results[(kind, 64)]
        print(
            f"| {kind} | {_median(c1, 'lat_ms', 'p50'):.3f} | {_median(c1, 'lat_ms', 'p99'):.3f}"
            f" | {_median(c1, 'cpu', 'server', 'ms_per_req'):.4f} | {_median(c64, 'rps'):,.0f}"
            f" | {_median(c64, 'cpu', 'server', 'ms_per_req'):.4f} |"
        )
    return 0


def _median(runs: list[dict[str, Any]], *path: str) -> float:
    """The median over rounds of the figure at ``path`` in each wrk result."""
    values = []
    for run in runs:
        value: Any = run
        for key in path:
            value = value[key]
        values.append(value)
    return statistics.median(values)


if __name__ == "__main__":
    raise SystemExit(main())
