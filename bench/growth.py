"""How the gateway's CPU per request grows with the request body and with the stream's length.

Starts ``bench/fake_upstream.py`` upstreams answering streams of 20, 200 and 2,000 chunks —
each twice: in a burst (the fake writes every event at once, so they reach the gateway
together) and paced (``--pace-ms`` between events, so each arrives in a read of its own) —
and a gateway (this checkout; with ``--baseline DIR`` also that one, in the same run) with one
OpenAI-compatible provider per upstream. Then, for ``--seconds`` per case, one request after
another:

- non-streamed HTTP requests whose user message makes the body 1 KB, 100 KB and 1 MB;
- streamed HTTP requests (SSE) and gRPC ``StreamChat`` calls of each length and pacing.

It prints the gateway's CPU per request (``/proc/<pid>/stat``, all threads) for each case, the
slope per KB of body and per streamed chunk (least squares over the three sizes), and with a
baseline the ratio current / baseline.

    python bench/growth.py [--seconds 3] [--pace-ms 0.3] [--baseline ../wt/base]

Everything binds 127.0.0.1; each case runs for a bounded time.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import grpc
import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
for path in (str(ROOT), str(ROOT / "bench")):
    if path not in sys.path:
        sys.path.insert(0, path)

from harness.config import PY  # noqa: E402
from harness.process import start_listening  # noqa: E402
from switchboard.v1 import chat_pb2, chat_pb2_grpc, types_pb2  # noqa: E402

from tests.support.server import RunningGateway, start_gateway  # noqa: E402

CHUNKS = (20, 200, 2000)
BODIES_KB = (1, 100, 1024)
KEY = "sk-growth-" + secrets.token_hex(8)
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


@contextmanager
def upstreams(pace_ms: float) -> Iterator[dict[str, str]]:
    """One fake per (chunks, pacing); yields provider name → base URL."""
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="growth-") as tmp:
        urls: dict[str, str] = {}
        for chunks in CHUNKS:
            for paced in (False, True):
                name = f"up{chunks}{'p' if paced else ''}"
                cmd = [PY, str(ROOT / "bench" / "fake_upstream.py"), "--port", "0"]
                cmd += ["--chunks", str(chunks), "--api-key", KEY]
                if paced:
                    cmd += ["--chunk-delay-ms", str(pace_ms)]
                proc, port = start_listening(name, cmd, Path(tmp), None)
                stack.callback(proc.stop)
                urls[name] = f"http://127.0.0.1:{port}/v1"
        yield urls


def gateway(repo: Path, urls: dict[str, str]) -> RunningGateway:
    providers = [
        {"name": name, "kind": "openai_compat", "base_url": url, "api_key_env": "GROWTH_KEY"}
        for name, url in urls.items()
    ]
    return start_gateway(
        env={"GROWTH_KEY": KEY},
        config={"providers": providers},
        repo_root=repo,
        startup_timeout=60,
    )


def body(kb: int) -> bytes:
    base = {"model": "up20/mock-model", "max_tokens": 64, "messages": [{"role": "user"}]}
    empty = len(orjson.dumps({**base, "messages": [{"role": "user", "content": ""}]}))
    text = "word " * ((kb * 1024 - empty) // 5)
    return orjson.dumps({**base, "messages": [{"role": "user", "content": text}]})


def per_request(pid: int, seconds: float, send: Callable[[], None]) -> float:
    """CPU ms the gateway spent per request, over ``seconds`` of back-to-back requests."""
    for _ in range(3):
        send()
    deadline = time.monotonic() + seconds
    start = cpu_seconds(pid)
    n = 0
    while n < 3 or time.monotonic() < deadline:
        send()
        n += 1
    return (cpu_seconds(pid) - start) * 1000.0 / n


def measure(gw: RunningGateway, seconds: float) -> dict[str, float]:
    assert gw.process is not None
    pid = gw.process.pid
    headers = {"authorization": f"Bearer {gw.master_key}", "content-type": "application/json"}
    out: dict[str, float] = {}
    with (
        httpx.Client(base_url=gw.http_url, headers=headers, timeout=60) as http,
        grpc.insecure_channel(gw.grpc_target) as channel,
    ):
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        metadata = [("authorization", f"Bearer {gw.master_key}")]
        for kb in BODIES_KB:
            content = body(kb)

            def post(content: bytes = content) -> None:
                r = http.post("/v1/chat/completions", content=content)
                assert r.status_code == 200, r.text

            out[f"shim body {kb} KB"] = per_request(pid, seconds, post)
        for paced in (False, True):
            for chunks in CHUNKS:
                model = f"up{chunks}{'p' if paced else ''}/mock-model"
                label = f"{chunks} chunks {'paced' if paced else 'burst'}"
                stream_body = orjson.dumps(
                    {
                        "model": model,
                        "stream": True,
                        "stream_options": {"include_usage": True},
                        "messages": [{"role": "user", "content": "hi"}],
                    }
                )

                def sse(content: bytes = stream_body) -> None:
                    with http.stream("POST", "/v1/chat/completions", content=content) as r:
                        assert r.status_code == 200
                        tail = b"".join(r.iter_raw())[-14:]
                        assert tail.endswith(b"[DONE]\n\n"), tail

                request = chat_pb2.StreamChatRequest(
                    chat=chat_pb2.ChatRequest(
                        model=model,
                        messages=[
                            types_pb2.Message(
                                role=types_pb2.ROLE_USER,
                                content=[types_pb2.ContentPart(text="hi")],
                            )
                        ],
                    )
                )

                def stream(request: chat_pb2.StreamChatRequest = request) -> None:
                    frames = list(stub.StreamChat(request, metadata=metadata, timeout=60))
                    assert frames[-1].WhichOneof("frame") == "end"

                out[f"shim stream {label}"] = per_request(pid, seconds, sse)
                out[f"grpc stream {label}"] = per_request(pid, seconds, stream)
    return out


def slope(xs: tuple[int, ...], ys: list[float]) -> float:
    """Least-squares slope of ys over xs."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )


def slopes(r: dict[str, float]) -> dict[str, float]:
    out = {"shim per KB of body": slope(BODIES_KB, [r[f"shim body {kb} KB"] for kb in BODIES_KB])}
    for transport in ("shim", "grpc"):
        for pacing in ("burst", "paced"):
            ys = [r[f"{transport} stream {c} chunks {pacing}"] for c in CHUNKS]
            out[f"{transport} per chunk, {pacing}"] = slope(CHUNKS, ys)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="per case")
    parser.add_argument("--pace-ms", type=float, default=0.3, help="between paced chunks")
    parser.add_argument("--baseline", type=Path, help="another checkout, in the same run")
    args = parser.parse_args()
    repos = {"current": ROOT}
    if args.baseline:
        repos["baseline"] = args.baseline.resolve()
    results: dict[str, dict[str, float]] = {}
    load = os.getloadavg()[0]
    with upstreams(args.pace_ms) as urls:
        for name, repo in repos.items():
            gw = gateway(repo, urls)
            try:
                results[name] = measure(gw, args.seconds)
            finally:
                gw.terminate()
                gw.close()
    print(f"gateway CPU ms per request ({args.seconds:g} s per case; load average {load:.2f})")
    header = f"  {'case':<34} {'current':>9}"
    if "baseline" in results:
        header += f" {'baseline':>9} {'ratio':>7}"
    print(header)
    for case, value in results["current"].items():
        line = f"  {case:<34} {value:9.3f}"
        if "baseline" in results:
            base = results["baseline"][case]
            line += f" {base:9.3f} {value / base:7.2f}"
        print(line)
    print("slopes (ms of gateway CPU)")
    current = slopes(results["current"])
    base_slopes = slopes(results["baseline"]) if "baseline" in results else {}
    for name, value in current.items():
        line = f"  {name:<34} {value * 1000:9.2f} us"
        if name in base_slopes:
            line += f" {base_slopes[name] * 1000:9.2f} us {value / base_slopes[name]:7.2f}"
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
