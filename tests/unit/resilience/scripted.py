"""An in-test ``Provider`` whose calls follow a script, for the executor's and router's logic.

Tests of the wire (real HTTP, real adapters, loopback fake upstreams) live in
``tests/integration/test_routing_*.py``; these unit tests pin the executor's decisions.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from switchboard.v1 import chat_pb2, types_pb2

from server.config import Config, DeploymentConfig, RetryConfig, RouteConfig
from server.core.context import CallContext, Principal
from server.core.errors import GatewayError
from server.providers.base import Capability, UpstreamCall
from server.routing.catalog import Catalog


@dataclass(frozen=True)
class Step:
    """One scripted call: wait `delay`, then answer `text`, or raise `error`.

    Streams: `after` text frames are sent before `error` / a stall / an early end (`no_end`);
    `stall=True` with `after=0` never sends anything."""

    text: str = "ok fine"
    error: GatewayError | None = None
    delay: float = 0.0
    after: int = 0
    stall: bool = False
    no_end: bool = False
    chunk_delay: float = 0.0


OK = Step()


class ScriptedProvider:
    """Implements ``server.providers.base.Provider``; records every call it gets."""

    kind = "scripted"
    capabilities = frozenset({Capability.TEXT, Capability.STREAM})

    def __init__(self, name: str, *steps: Step) -> None:
        self.name = name
        self._steps: deque[Step] = deque(steps)
        self.calls: list[UpstreamCall] = []
        self.cancelled = 0
        self.closed_streams = 0

    def script(self, *steps: Step) -> None:
        self._steps.extend(steps)

    def _next(self, call: UpstreamCall) -> Step:
        self.calls.append(call)
        return self._steps.popleft() if self._steps else OK

    async def _wait(self, seconds: float, forever: bool = False) -> None:
        try:
            if forever:
                await asyncio.Event().wait()
            elif seconds:
                await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    async def chat(
        self, request: chat_pb2.ChatRequest, call: UpstreamCall
    ) -> chat_pb2.ChatResponse:
        step = self._next(call)
        await self._wait(step.delay, forever=step.stall)
        if step.error is not None:
            raise step.error
        return chat_pb2.ChatResponse(
            message=types_pb2.Message(
                role=types_pb2.ROLE_ASSISTANT, content=[types_pb2.ContentPart(text=step.text)]
            ),
            finish_reason=types_pb2.FINISH_REASON_STOP,
            usage=types_pb2.Usage(input_tokens=3, output_tokens=len(step.text.split())),
        )

    async def stream(
        self, request: chat_pb2.ChatRequest, call: UpstreamCall
    ) -> AsyncIterator[chat_pb2.StreamChatResponse]:
        step = self._next(call)
        try:
            await self._wait(step.delay)
            words = step.text.split()
            broken = step.error is not None or step.stall or step.no_end
            for i, word in enumerate(words):
                if broken and i == step.after:
                    break
                if i:
                    await self._wait(step.chunk_delay)
                yield chat_pb2.StreamChatResponse(text=chat_pb2.TextDelta(text=word + " "))
            if step.stall:
                await self._wait(0, forever=True)
            if step.error is not None:
                raise step.error
            if step.no_end:
                return
            end = chat_pb2.StreamChatResponse()
            end.end.finish_reason = types_pb2.FINISH_REASON_STOP
            end.end.usage.input_tokens = 3
            end.end.usage.output_tokens = len(words)
            yield end
        finally:
            self.closed_streams += 1

    async def aclose(self) -> None:
        return None


@dataclass
class Entry:
    """A registry entry (``ProviderEntryLike``)."""

    provider: ScriptedProvider
    api_keys: tuple[str, ...] = ("sk-one",)


def request(model: str = "r", text: str = "hello there", **fields: object) -> chat_pb2.ChatRequest:
    """A one-message chat request."""
    return chat_pb2.ChatRequest(
        model=model,
        messages=[
            types_pb2.Message(role=types_pb2.ROLE_USER, content=[types_pb2.ContentPart(text=text)])
        ],
        **fields,  # type: ignore[arg-type]
    )


def ctx(timeout: float = 10.0) -> CallContext:
    """A call context with a deadline `timeout` seconds from now."""
    import time

    return CallContext(
        request_id="req-1",
        principal=Principal(key_id="k1", name="test"),
        deadline=time.monotonic() + timeout,
    )


def config(
    *providers: str,
    strategy: str = "ordered",
    retry: RetryConfig | None = None,
    **sections: object,
) -> Config:
    """A config with deployment `<p>/m` for each provider and a route `r` over them in order."""
    return Config(
        deployments=[DeploymentConfig(provider=p, model="m") for p in providers],
        routes=[
            RouteConfig(name="r", strategy=strategy, deployments=[f"{p}/m" for p in providers])
        ],  # type: ignore[arg-type]
        retry=retry or RetryConfig(initial_delay=0.01, max_delay=0.05, max_retry_after=1.0),
        **sections,  # type: ignore[arg-type]
    )


def catalog(
    cfg: Config, *providers: ScriptedProvider, keys: tuple[str, ...] = ("sk-one",)
) -> Catalog:
    """A catalog over scripted providers (no default price table)."""
    return Catalog({p.name: Entry(p, keys) for p in providers}, cfg, prices={})
