"""A do-nothing switchboard.v1.ChatService: the floor that grpcio itself costs on this machine.

Chat returns one canned ChatResponse and StreamChat a canned start, text deltas and end, with no
upstream call, routing or policy. The benchmark's ``--floor`` target measures it with the same
gRPC client as the gateway, so the report can say how much of the gRPC path's added latency is
the gRPC hop and how much is the gateway's own work.

    python bench/grpc_floor.py --port 0          # grpc.aio; prints "LISTENING <port>" once bound
    python bench/grpc_floor.py --port 0 --sync   # grpc.server on a thread pool, the same answers

``--sync`` is grpcio's other server: handlers run on a ``ThreadPoolExecutor`` (``--threads``),
so the report can put the two servers grpcio offers side by side. It runs on the gateway's
grpcio defaults (``import server`` sets them: iomgr's listener, see server/__init__.py);
``GRPC_EXPERIMENTS=`` (empty) in the environment gives grpcio's own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from typing import Any

# isort: off
# First: sets grpcio's defaults as the gateway does, before grpc core reads them.
import server as _gateway_defaults  # noqa: F401
import grpc

# isort: on
from fake_upstream import COMPLETION_TEXT, CREATED, PROMPT_TOKENS, RESPONSE_ID, content_words
from switchboard.v1 import chat_pb2, chat_pb2_grpc, types_pb2


class FloorChat(chat_pb2_grpc.ChatServiceServicer):
    """ChatService answering from memory (mirrors the gateway's transport edge only)."""

    def __init__(self, chunks: int) -> None:
        self.response = chat_pb2.ChatResponse(
            id=RESPONSE_ID,
            model="mock-model",
            created=CREATED,
            finish_reason=types_pb2.FINISH_REASON_STOP,
            message=types_pb2.Message(
                role=types_pb2.ROLE_ASSISTANT, content=[types_pb2.ContentPart(text=COMPLETION_TEXT)]
            ),
            usage=types_pb2.Usage(input_tokens=PROMPT_TOKENS, output_tokens=20),
        )
        frames = [
            chat_pb2.StreamChatResponse(
                start=chat_pb2.StreamStart(id=RESPONSE_ID, model="mock-model", created=CREATED)
            )
        ]
        frames += [
            chat_pb2.StreamChatResponse(text=chat_pb2.TextDelta(text=w))
            for w in content_words(chunks)
        ]
        frames.append(
            chat_pb2.StreamChatResponse(
                end=chat_pb2.StreamEnd(
                    id=RESPONSE_ID,
                    finish_reason=types_pb2.FINISH_REASON_STOP,
                    usage=types_pb2.Usage(input_tokens=PROMPT_TOKENS, output_tokens=chunks),
                )
            )
        )
        self.frames = frames

    async def Chat(self, request: chat_pb2.ChatRequest, context: Any) -> chat_pb2.ChatResponse:
        return self.response

    async def StreamChat(
        self, request: chat_pb2.StreamChatRequest, context: Any
    ) -> AsyncIterator[chat_pb2.StreamChatResponse]:
        for f in self.frames:
            yield f


class SyncFloorChat(chat_pb2_grpc.ChatServiceServicer):
    """The same canned answers for the thread-pool server."""

    def __init__(self, chunks: int) -> None:
        self._answers = FloorChat(chunks)

    def Chat(self, request: chat_pb2.ChatRequest, context: Any) -> chat_pb2.ChatResponse:
        return self._answers.response

    def StreamChat(
        self, request: chat_pb2.StreamChatRequest, context: Any
    ) -> Iterator[chat_pb2.StreamChatResponse]:
        yield from self._answers.frames


def serve_sync(port: int, chunks: int, threads: int) -> None:
    """The thread-pool server until SIGTERM/SIGINT; prints ``LISTENING <port>`` once bound."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads))
    chat_pb2_grpc.add_ChatServiceServicer_to_server(SyncFloorChat(chunks), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print(f"LISTENING {bound}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(0)


async def serve(port: int, chunks: int) -> None:
    """Serves until SIGTERM/SIGINT; prints ``LISTENING <port>`` once bound."""
    server = grpc.aio.server()
    chat_pb2_grpc.add_ChatServiceServicer_to_server(FloorChat(chunks), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"LISTENING {bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--chunks", type=int, default=20)
    p.add_argument("--sync", action="store_true", help="grpc.server on a thread pool")
    p.add_argument("--threads", type=int, default=64, help="--sync: handler threads")
    a = p.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        if a.sync:
            serve_sync(a.port, a.chunks, a.threads)
        else:
            asyncio.run(serve(a.port, a.chunks))


if __name__ == "__main__":
    main()
