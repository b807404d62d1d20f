"""Plug-in point of the shared adapter conformance suite (tensorzero ``generate_provider_tests!``).

Every adapter passes the same tests (``test_conformance.py``), gated by the capabilities the
adapter declares (``Provider.capabilities``) and the ``Feature``s its harness declares. An
adapter plugs in with one file ``tests/conformance/harness_<kind>.py`` that defines
``HARNESS``, an object satisfying ``Harness`` below. ``conftest.py`` finds every
``harness_*.py`` and runs the whole suite once per harness; a harness that fails to import is
an error, never a silent skip. See README.md in this directory for a walkthrough.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from switchboard.v1 import chat_pb2, types_pb2

from server.providers.base import Provider, UpstreamCall
from tests.fakes.common import CutStream, FakeUpstream, Stall, Status


class Feature(StrEnum):
    """What a harness can make its upstream do, beyond the adapter's capabilities."""

    # The upstream can be made to answer error statuses, stall, and cut a stream.
    WIRE_ERRORS = "wire_errors"
    # The wire format has an error event inside a 200 stream (OpenAI/OpenRouter, Anthropic).
    STREAM_ERROR_EVENT = "stream_error_event"


@dataclass(frozen=True)
class ExpectedCall:
    """A tool call the adapter must return. None means "any" (checked for shape only)."""

    name: str
    arguments: dict[str, Any] | None = None
    id: str | None = None


@dataclass(frozen=True)
class Expected:
    """What the adapter must produce for one scripted answer.

    ``text`` None means any non-empty text; ``usage`` None means any usage with output > 0.
    """

    text: str | None = ""
    calls: Sequence[ExpectedCall] = ()
    finish: types_pb2.FinishReason = types_pb2.FINISH_REASON_STOP
    usage: types_pb2.Usage | None = None


@dataclass(frozen=True)
class Failure:
    """An upstream failure to arrange for the next request.

    kind: ``status`` (HTTP ``status`` with ``message`` in the wire's error shape and an optional
    ``retry_after`` header value), ``stall`` (accept, never answer), ``cut_stream`` (drop the
    connection after a couple of stream events) or ``stream_error`` (an error event carrying
    ``message`` inside a 200 stream).
    """

    kind: str
    status: int = 0
    message: str | None = None
    retry_after: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


class Session(Protocol):
    """One running fake upstream and an adapter pointed at it."""

    provider: Provider
    # The provider key this session's calls carry (the auth test checks it never leaks).
    api_key: str

    def call(self, *, timeout: float | None = None) -> UpstreamCall:
        """The UpstreamCall to pass to the adapter (model, key, timeout)."""
        ...

    def reply(self, request: chat_pb2.ChatRequest, expected: Expected) -> Expected:
        """Script the next upstream answer to be ``expected`` in the wire format and return
        what the adapter must produce (normally ``expected`` itself; a harness whose
        "upstream" cannot be scripted, like demo, returns its own deterministic expectation)."""
        ...

    def fail(self, failure: Failure) -> None:
        """Script the next upstream answer to fail (only called with Feature.WIRE_ERRORS)."""
        ...


class Harness(Protocol):
    """How the suite drives one adapter."""

    # Shown in test ids, e.g. ``test_text[openai_compat-chat]``.
    name: str
    features: frozenset[Feature]
    # The upstream model the embeddings test uses (harnesses of adapters with
    # Capability.EMBEDDINGS set it).
    embed_model: str

    def provider(self, base_url: str) -> Provider:
        """The adapter under test, pointed at ``base_url`` (also used with a closed port)."""
        ...

    def session(self) -> AbstractAsyncContextManager[Session]:
        """Starts the fake upstream and yields a Session."""
        ...


def script_failure(
    upstream: FakeUpstream,
    failure: Failure,
    *,
    cut_after: int,
    stream_error: Callable[[str], Any],
) -> None:
    """``Session.fail`` for a wire fake: scripts ``failure`` as its next answer. ``cut_after``
    is how many stream events go out before the cut; ``stream_error(message)`` builds the
    wire's in-stream error behaviour."""
    if failure.kind == "status":
        headers = dict(failure.headers)
        if failure.retry_after is not None:
            headers["retry-after"] = failure.retry_after
        upstream.script(Status(failure.status, message=failure.message, headers=headers))
    elif failure.kind == "stall":
        upstream.script(Stall())
    elif failure.kind == "cut_stream":
        upstream.script(CutStream(after_chunks=cut_after))
    elif failure.kind == "stream_error":
        upstream.script(stream_error(failure.message or "stream failed"))
    else:
        raise ValueError(f"unknown failure kind {failure.kind}")


def finish_name(finish: types_pb2.FinishReason) -> str:
    """OpenAI's spelling of a contract finish reason (handy for wire harnesses)."""
    return {
        types_pb2.FINISH_REASON_STOP: "stop",
        types_pb2.FINISH_REASON_LENGTH: "length",
        types_pb2.FINISH_REASON_TOOL_CALLS: "tool_calls",
        types_pb2.FINISH_REASON_CONTENT_FILTER: "content_filter",
    }[finish]


def last_user_text(request: chat_pb2.ChatRequest) -> str:
    """The text of the request's last user message."""
    for message in reversed(request.messages):
        if message.role == types_pb2.ROLE_USER:
            return " ".join(p.text for p in message.content if p.WhichOneof("part") == "text")
    return ""
