"""A fast fake OpenAI upstream for the benchmark (the wire format of POST /v1/chat/completions).

Non-streamed requests get one fixed ``chat.completion`` with ``usage``. Streamed requests get
SSE in OpenAI's order: a role chunk, ``--chunks`` content chunks, a finish chunk, a usage chunk
and ``data: [DONE]``. Every body is built once at startup, so the fake costs as little CPU per
request as aiohttp allows and the gateway is what the benchmark measures.

    python bench/fake_upstream.py --port 0      # prints "LISTENING <port>" once bound

Binds 127.0.0.1 only. With ``--api-key`` a request without ``Authorization: Bearer <key>`` gets
401, which proves the gateway forwards its provider key.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys

import orjson
from aiohttp import web

COMPLETION_TEXT = "This is a canned answer from the fake upstream used for gateway benchmarks."
PROMPT_TOKENS = 42
CREATED = 1_700_000_000
RESPONSE_ID = "chatcmpl-bench000000000000000000000"


def content_words(chunks: int) -> list[str]:
    """The content deltas of one stream, in order; joined they are the streamed text."""
    words = COMPLETION_TEXT.split(" ")
    out = [(w if i == 0 else " " + w) for i, w in enumerate(words)]
    while len(out) < chunks:
        out += [" " + w for w in words]
    return out[:chunks]


def streamed_text(chunks: int) -> str:
    """The text a client reassembles from one stream of ``chunks`` content chunks."""
    return "".join(content_words(chunks))


def _completion(model: str) -> bytes:
    return orjson.dumps(
        {
            "id": RESPONSE_ID,
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "system_fingerprint": "fp_bench",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": COMPLETION_TEXT, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": PROMPT_TOKENS,
                "completion_tokens": 20,
                "total_tokens": PROMPT_TOKENS + 20,
            },
        }
    )


def _chunk(
    model: str, delta: dict | None, finish: str | None = None, usage: dict | None = None
) -> bytes:
    obj: dict = {
        "id": RESPONSE_ID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "system_fingerprint": "fp_bench",
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if usage is not None:
        obj["usage"] = usage
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def _stream(model: str, chunks: int) -> list[bytes]:
    parts = [_chunk(model, {"role": "assistant", "content": ""})]
    parts += [_chunk(model, {"content": w}) for w in content_words(chunks)]
    parts.append(_chunk(model, {}, finish="stop"))
    usage = {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": chunks,
        "total_tokens": PROMPT_TOKENS + chunks,
    }
    parts.append(_chunk(model, None, usage=usage))
    parts.append(b"data: [DONE]\n\n")
    return parts


class FakeUpstream:
    """The request handlers of a fake OpenAI Chat Completions endpoint."""

    def __init__(
        self,
        *,
        chunks: int = 20,
        latency_ms: float = 0.0,
        chunk_delay_ms: float = 0.0,
        api_key: str | None = None,
    ) -> None:
        self.chunks = chunks
        self.latency = latency_ms / 1000.0
        self.chunk_delay = chunk_delay_ms / 1000.0
        self.auth = f"Bearer {api_key}" if api_key else None
        self.requests = 0
        self.spans_exports = 0
        self._bodies: dict[str, bytes] = {}
        self._stream_parts: dict[str, list[bytes]] = {}

    def _for(self, model: str) -> tuple[bytes, list[bytes]]:
        body = self._bodies.get(model)
        if body is None:
            if len(self._bodies) > 64:  # a bounded cache: the model name comes from the client
                self._bodies.clear()
                self._stream_parts.clear()
            body = self._bodies[model] = _completion(model)
            self._stream_parts[model] = _stream(model, self.chunks)
        return body, self._stream_parts[model]

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        if self.auth is not None and request.headers.get("Authorization") != self.auth:
            return web.json_response(
                {
                    "error": {
                        "message": "Incorrect API key provided.",
                        "type": "invalid_request_error",
                        "code": "invalid_api_key",
                    }
                },
                status=401,
            )
        try:
            req = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return web.json_response(
                {"error": {"message": "invalid json", "type": "invalid_request_error"}}, status=400
            )
        body, parts = self._for(str(req.get("model") or "mock-model"))
        if self.latency:
            await asyncio.sleep(self.latency)
        if not req.get("stream"):
            return web.Response(body=body, content_type="application/json")
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        if self.chunk_delay:
            for i, part in enumerate(parts):
                if i:
                    await asyncio.sleep(self.chunk_delay)
                await resp.write(part)
        else:
            # One write per event, like a real upstream; no delay between them.
            for part in parts:
                await resp.write(part)
        await resp.write_eof()
        return resp

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def traces(self, request: web.Request) -> web.Response:
        """An OTLP/HTTP collector that keeps nothing (``bench/run.py --tracing``): an empty
        ExportTraceServiceResponse is zero bytes of protobuf."""
        await request.read()
        self.spans_exports += 1
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response({"requests": self.requests, "trace_exports": self.spans_exports})

    def app(self) -> web.Application:
        """The aiohttp application serving the fake's routes."""
        # The hardening bench sends requests up to the gateway's 32 MiB body limit.
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/chat/completions", self.chat)
        app.router.add_post("/v1/traces", self.traces)
        app.router.add_get("/health", self.health)
        app.router.add_get("/_stats", self.stats)
        return app


async def serve(fake: FakeUpstream, host: str, port: int) -> None:
    """Serves until SIGTERM/SIGINT; prints ``LISTENING <port>`` once the socket is bound."""
    runner = web.AppRunner(fake.app(), access_log=None, handle_signals=False)
    await runner.setup()
    # Bind first, so port 0 resolves to a port we can print.
    sock = socket.create_server((host, port), backlog=1024)
    await web.SockSite(runner, sock).start()
    print(f"LISTENING {sock.getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--chunks", type=int, default=20)
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--chunk-delay-ms", type=float, default=0.0)
    p.add_argument("--api-key", default=None, help="require this bearer key")
    a = p.parse_args(argv)
    if not (a.host.startswith("127.") or a.host in ("localhost", "::1")):
        sys.exit(f"refusing to bind non-loopback host {a.host!r}")
    fake = FakeUpstream(
        chunks=a.chunks, latency_ms=a.latency_ms, chunk_delay_ms=a.chunk_delay_ms, api_key=a.api_key
    )
    with contextlib.suppress(KeyboardInterrupt):
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
            asyncio.run(serve(fake, a.host, a.port))
        else:
            uvloop.run(serve(fake, a.host, a.port))


if __name__ == "__main__":
    main()
