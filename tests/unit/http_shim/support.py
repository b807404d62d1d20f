"""Shim unit-test helpers: a real Gateway over a scripted provider, and an ASGI driver.

The provider is a real ``Provider`` implementation whose answers are scripted per test (the
upstream HTTP side is covered by the adapters' own tests and by tests/e2e). The ASGI driver
speaks the ASGI 3 protocol to the app exactly as uvicorn does: ``http.request`` messages in,
``http.response.*`` messages out, ``http.disconnect`` when the client goes away. Gateway keys
come from the real ``KeyStore`` on a temporary SQLite file (``APP_KEY``); ``MASTER`` is the
master key.
"""

from __future__ import annotations

import asyncio
import atexit
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from switchboard.v1 import chat_pb2, types_pb2

from server.config import Config, RetryConfig
from server.core.service import Gateway
from server.core.state import ResponseStore
from server.http_shim import ShimApp
from server.providers.base import Capability, UpstreamCall
from server.resilience.executor import Executor
from server.routing.catalog import Catalog
from server.routing.router import Router
from server.store.embedded.keys import SqliteKeyStore

MASTER = "sb-master-test"
MODEL = "script/m1"


def text_frame(text: str) -> chat_pb2.StreamChatResponse:
    return chat_pb2.StreamChatResponse(text=chat_pb2.TextDelta(text=text))


def tool_frame(index: int, *, id: str = "", name: str = "", arguments: str = ""):
    return chat_pb2.StreamChatResponse(
        tool_call=chat_pb2.ToolCallDelta(index=index, id=id, name=name, arguments=arguments)
    )


def end_frame(
    finish: int = types_pb2.FINISH_REASON_STOP, *, prompt: int = 3, completion: int = 2
) -> chat_pb2.StreamChatResponse:
    return chat_pb2.StreamChatResponse(
        end=chat_pb2.StreamEnd(
            finish_reason=finish,  # type: ignore[arg-type]
            usage=types_pb2.Usage(
                input_tokens=prompt, output_tokens=completion, cached_input_tokens=1
            ),
        )
    )


@dataclass
class Raise:
    """A scripted stream step that raises ``error``."""

    error: BaseException


@dataclass
class Wait:
    """A scripted stream step that waits until ``event`` is set (or forever)."""

    event: asyncio.Event = field(default_factory=asyncio.Event)


class ScriptedProvider:
    """A Provider whose chat answers and stream frames are queued by the test."""

    kind = "openai_compat"
    capabilities = frozenset(Capability)

    def __init__(self, name: str = "script") -> None:
        self.name = name
        self.requests: list[chat_pb2.ChatRequest] = []
        self.calls: list[UpstreamCall] = []
        self.chat_answers: list[chat_pb2.ChatResponse | BaseException] = []
        self.streams: list[Sequence[Any]] = []
        self.cancelled = 0
        self.closed_streams = 0
        self.arrived = asyncio.Event()

    async def chat(self, request: chat_pb2.ChatRequest, call: UpstreamCall):
        self.requests.append(request)
        self.calls.append(call)
        self.arrived.set()
        answer = self.chat_answers.pop(0)
        if isinstance(answer, Wait):
            try:
                await answer.event.wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
            answer = self.chat_answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def stream(
        self, request: chat_pb2.ChatRequest, call: UpstreamCall
    ) -> AsyncIterator[chat_pb2.StreamChatResponse]:
        self.requests.append(request)
        self.calls.append(call)
        self.arrived.set()
        steps = self.streams.pop(0)
        try:
            for step in steps:
                if isinstance(step, Raise):
                    raise step.error
                if isinstance(step, Wait):
                    await step.event.wait()
                    continue
                yield step
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.closed_streams += 1

    async def aclose(self) -> None:
        return None


@dataclass
class _Entry:
    provider: Any
    api_keys: tuple[str, ...] = ("sk-upstream-secret",)


def _key_store() -> tuple[SqliteKeyStore, str]:
    # The real key store on a throwaway SQLite file, shared by the whole test session: one key,
    # created once, so APP_KEY is a real secret that every helper user can import.
    data_dir = Path(tempfile.mkdtemp(prefix="switchboard-shim-test-"))
    store = SqliteKeyStore(data_dir)
    _, secret = store.create_sync("shim-unit-tests")

    def cleanup() -> None:
        store.close()
        shutil.rmtree(data_dir, ignore_errors=True)

    atexit.register(cleanup)
    return store, secret


KEYS, APP_KEY = _key_store()


def build_gateway(
    *providers: Any, config: Config | None = None, responses: ResponseStore | None = None
) -> Gateway:
    """A Gateway over these providers (``ProviderEntry``s or bare providers), optionally with a
    response store."""
    # One try per deployment keeps each test's script short; retries are the executor's tests.
    config = config or Config(retry=RetryConfig(max_attempts_per_deployment=1))
    entries = {p.name: p if hasattr(p, "provider") else _Entry(p) for p in providers}
    catalog = Catalog(entries, config, prices={})
    return Gateway(
        Router(catalog), Executor(config), KEYS, MASTER, default_timeout=30.0, responses=responses
    )


@dataclass
class Response:
    """What the app sent for one request."""

    status: int
    headers: dict[str, str]
    body: bytes
    complete: bool

    def json(self) -> Any:
        return orjson.loads(self.body)

    def events(self) -> list[str]:
        """The ``data:`` payloads of an SSE body, in order."""
        assert self.body.endswith(b"\n\n"), self.body[-80:]
        out = []
        for block in self.body.decode().split("\n\n")[:-1]:
            assert block.startswith("data: "), block
            out.append(block.removeprefix("data: "))
        return out


class AsgiClient:
    """Drives a ShimApp through the ASGI 3 protocol."""

    def __init__(self, app: ShimApp) -> None:
        self.app = app

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | Any = b"",
        headers: dict[str, str] | None = None,
        key: str | None = APP_KEY,
        chunks: int = 1,
        disconnect: asyncio.Event | None = None,
        on_send: Callable[[dict[str, Any]], None] | None = None,
    ) -> Response:
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        all_headers = {"content-type": "application/json", **(headers or {})}
        if key is not None:
            all_headers["authorization"] = f"Bearer {key}"
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": [(k.lower().encode(), v.encode()) for k, v in all_headers.items()],
        }
        size = max(1, -(-len(raw) // chunks))
        pieces = [raw[i : i + size] for i in range(0, len(raw), size)] or [b""]
        incoming: list[dict[str, Any]] = [
            {"type": "http.request", "body": p, "more_body": i < len(pieces) - 1}
            for i, p in enumerate(pieces)
        ]
        done = asyncio.Event()
        gone = disconnect or done

        async def receive() -> dict[str, Any]:
            if incoming:
                return incoming.pop(0)
            await gone.wait()
            return {"type": "http.disconnect"}

        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            assert not (sent and not sent[-1].get("more_body", False) and len(sent) > 1), (
                "message after the response completed"
            )
            sent.append(message)
            if on_send is not None:
                on_send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                done.set()

        await self.app(scope, receive, send)
        assert sent, "the app sent nothing"
        start = sent[0]
        assert start["type"] == "http.response.start"
        body_out = b"".join(m.get("body", b"") for m in sent[1:])
        complete = bool(sent[1:]) and not sent[-1].get("more_body", False)
        return Response(
            status=start["status"],
            headers={k.decode(): v.decode() for k, v in start["headers"]},
            body=body_out,
            complete=complete,
        )

    async def chat(self, payload: Any, **kwargs: Any) -> Response:
        return await self.request("POST", "/v1/chat/completions", body=payload, **kwargs)
