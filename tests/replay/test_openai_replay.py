"""Replays recorded OpenAI-compatible traffic (../shared/fixtures/provider-wire/openai) through
OpenAICompatProvider: each recorded response is served by a loopback FakeOpenAI, and the
adapter's contract output is checked against values read off the recording. For cassettes the
request the adapter sends for the recorded conversation is compared with the recorded one.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from switchboard.v1 import chat_pb2, types_pb2

from server.core.errors import (
    UpstreamBadRequestError,
    UpstreamError,
    UpstreamRateLimitedError,
    UpstreamStreamError,
)
from server.providers.base import UpstreamCall
from server.providers.http_client import close_http_client
from server.providers.openai_compat import OpenAICompatProvider
from tests.fakes.common import Raw
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fixtures_dir import shared_fixtures_dir
from tests.replay.openai_wire import (
    cassette_response,
    chat_request_from_openai,
    chunks_body,
    essential,
    load_cassette,
)

pytestmark = pytest.mark.replay

STOP = types_pb2.FINISH_REASON_STOP
LENGTH = types_pb2.FINISH_REASON_LENGTH
TOOL_CALLS = types_pb2.FINISH_REASON_TOOL_CALLS


@pytest.fixture(autouse=True)
async def _close_shared_client() -> AsyncIterator[None]:
    yield
    await close_http_client()


def openai_dir() -> Path:
    return shared_fixtures_dir() / "provider-wire" / "openai"


@dataclass(frozen=True)
class Want:
    """What the adapter must produce for one recorded response."""

    text: str | Callable[[str], bool] | None = None
    reasoning: str | Callable[[str], bool] | None = None
    # (id, name, parsed arguments)
    calls: tuple[tuple[str, str, Any], ...] = ()
    finish: int = STOP
    usage: dict[str, int] = field(default_factory=dict)
    error: type[UpstreamError] | None = None
    message: str | None = None
    code: str | None = None
    retry_after: float | None = None
    never_shown: tuple[str, ...] = ()


@dataclass(frozen=True)
class Case:
    """One recorded response: which file, which interaction, what to expect."""

    file: str
    index: int
    want: Want
    # The upstream's name as configured in the registry (decides max_tokens_field).
    provider: str = "openai"
    # Set when the request the adapter sends cannot match the recording, with the reason.
    request_xfail: str | None = None

    @property
    def id(self) -> str:
        stem = self.file.split("__", 1)[1].rsplit(".", 1)[0]
        return f"{stem}#{self.index}"


def startswith(prefix: str) -> Callable[[str], bool]:
    return lambda value: value.startswith(prefix)


def chunked_text(path: Path) -> str:
    """The text a chunks recording carries, for the 300-chunk stream."""
    text = ""
    for line in path.read_text().splitlines():
        if line.strip():
            for choice in json.loads(line)["choices"]:
                text += choice["delta"].get("content") or ""
    return text


CASES = [
    Case(
        "vercel-ai__openai-text.json",
        0,
        Want(
            text=lambda t: (
                t.startswith("**Holiday Name:** Galaxy Day")
                and t.endswith("dream beyond our world.")
            ),
            usage={"input_tokens": 16, "output_tokens": 363},
        ),
    ),
    Case(
        "vercel-ai__openai-text.chunks.txt",
        0,
        Want(text="CHUNKED", usage={"input_tokens": 16, "output_tokens": 300}),
    ),
    Case(
        "vercel-ai__reasoning-model-legacy-parameter-error.json",
        0,
        Want(
            error=UpstreamBadRequestError,
            message="Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead.",
            code="unsupported_parameter",
        ),
    ),
    Case(
        "vercel-ai__deepseek-tool-call.json",
        0,
        Want(
            text="",
            reasoning=startswith("The user is asking for the weather in San Francisco."),
            calls=(("call_00_9V0vrf86Pc9aelHCJMZqnJBo", "weather", {"location": "San Francisco"}),),
            finish=TOOL_CALLS,
            usage={
                "input_tokens": 339,
                "output_tokens": 92,
                "cached_input_tokens": 320,
                "reasoning_tokens": 48,
            },
        ),
        provider="deepseek",
    ),
    Case(
        "pydantic-ai__test_dbos_agent_with_hitl_tool.yaml",
        0,
        Want(
            text="",
            calls=(
                ("call_jYdIdRZHxZTn5bWCq5jlMrJi", "delete_file", {"path": ".env"}),
                ("call_TmlTVWQbzrXCZ4jNsCVNbNqu", "create_file", {"path": "test.txt"}),
            ),
            finish=TOOL_CALLS,
            usage={"input_tokens": 71, "output_tokens": 46},
        ),
    ),
    Case(
        "pydantic-ai__test_dbos_agent_with_hitl_tool.yaml",
        1,
        Want(
            text="The file `.env` has been deleted and `test.txt` has been created successfully.",
            usage={"input_tokens": 133, "output_tokens": 19},
        ),
    ),
    Case(
        "pydantic-ai__test_groq_tool_use_failed_error.yaml",
        0,
        Want(
            error=UpstreamBadRequestError,
            message="Tool call validation failed: tool call validation failed: parameters for "
            "tool get_something_by_name did not match schema: errors: [missing properties: "
            "'name', additionalProperties 'foo' not allowed]",
            code="tool_use_failed",
            # Groq's failed_generation is the model's raw output: never passed on.
            never_shown=('"arguments"', '"foo": "bar"'),
        ),
        provider="groq",
    ),
    Case(
        "pydantic-ai__test_groq_tool_use_failed_error.yaml",
        1,
        Want(
            text="",
            reasoning="We need to call with correct param: name field. "
            'Use some name, e.g., "test".',
            calls=(
                (
                    "fc_311ba17b-89f9-48d3-8fd9-7e74a1264855",
                    "get_something_by_name",
                    {"name": "test"},
                ),
            ),
            finish=TOOL_CALLS,
            usage={"input_tokens": 301, "output_tokens": 52, "reasoning_tokens": 22},
        ),
        provider="groq",
    ),
    Case(
        "pydantic-ai__test_groq_tool_use_failed_error.yaml",
        2,
        Want(
            text=startswith("The first call failed due to missing and extra parameters"),
            reasoning=startswith("We need to respond to user request."),
            usage={
                "input_tokens": 336,
                "output_tokens": 96,
                "cached_input_tokens": 256,
                "reasoning_tokens": 59,
            },
        ),
        provider="groq",
    ),
    *[
        Case(
            "pydantic-ai__test_openai_chat_prompt_cache_e2e.yaml",
            index,
            Want(text="OK", usage=usage),
            request_xfail=(
                "the recording marks a content part with OpenAI's `prompt_cache_breakpoint`; "
                "ContentPart has no field for part-level provider markers and passthrough is "
                "request-level, so the marker cannot be sent"
            ),
        )
        for index, usage in (
            (0, {"input_tokens": 4020, "output_tokens": 4, "cache_write_input_tokens": 4012}),
            (1, {"input_tokens": 4020, "output_tokens": 4, "cached_input_tokens": 4012}),
        )
    ],
    Case(
        "pydantic-ai__test_openai_native_output.yaml",
        0,
        Want(
            text="",
            calls=(("call_PkRGedQNRFUzJp2R7dO7avWR", "get_user_country", {}),),
            finish=TOOL_CALLS,
            usage={"input_tokens": 71, "output_tokens": 12},
        ),
    ),
    Case(
        "pydantic-ai__test_openai_native_output.yaml",
        1,
        Want(
            text='{"city":"Mexico City","country":"Mexico"}',
            usage={"input_tokens": 92, "output_tokens": 15},
        ),
    ),
    *[
        Case(
            "pydantic-ai__test_openrouter_errors_raised.yaml",
            index,
            Want(
                error=UpstreamRateLimitedError,
                message="Provider returned error",
                retry_after=None,
                # metadata.raw is the upstream provider's raw text: never passed on.
                never_shown=("temporarily rate-limited upstream", "user_2wT5"),
            ),
            provider="openrouter",
        )
        for index in range(3)
    ],
    Case(
        "pydantic-ai__test_openrouter_stream_error.yaml",
        0,
        Want(
            reasoning="We need to respond to a greeting. The user",
            error=UpstreamStreamError,
            message="Token limit reached",
        ),
        provider="openrouter",
    ),
    Case(
        "pydantic-ai__test_run_stream_sync_streams_real_model.yaml",
        0,
        Want(
            text="",
            calls=(("call_ZR5UUuTt3pf61kjwAJIYdVMj", "get_capital", {"country": "UK"}),),
            finish=TOOL_CALLS,
            usage={"input_tokens": 53, "output_tokens": 15},
        ),
    ),
    Case(
        "pydantic-ai__test_run_stream_sync_streams_real_model.yaml",
        1,
        Want(
            text="The capital of the UK is London.", usage={"input_tokens": 78, "output_tokens": 9}
        ),
    ),
    Case(
        "pydantic-ai__test_temporal_complex_agent_run.yaml",
        0,
        Want(
            text="",
            calls=(
                ("call_q2UyBRP7eXNTzAoR8lEhjc9Z", "get_country", {}),
                ("call_b51ijcpFkDiTQG1bQzsrmtW5", "get_product_name", {}),
            ),
            finish=TOOL_CALLS,
            usage={"input_tokens": 364, "output_tokens": 40},
        ),
    ),
    Case(
        "pydantic-ai__test_temporal_complex_agent_run.yaml",
        1,
        Want(
            text="",
            calls=(("call_LwxJUB9KppVyogRRLQsamRJv", "get_weather", {"city": "Mexico City"}),),
            finish=TOOL_CALLS,
            usage={"input_tokens": 423, "output_tokens": 15},
        ),
    ),
    Case(
        "pydantic-ai__test_temporal_complex_agent_run.yaml",
        2,
        Want(
            text="",
            calls=(
                (
                    "call_CCGIWaMeYWmxOQ91orkmTvzn",
                    "final_result",
                    {
                        "answers": [
                            {"label": "Capital", "answer": "The capital of Mexico is Mexico City."},
                            {
                                "label": "Weather",
                                "answer": "The weather in Mexico City is currently sunny.",
                            },
                            {"label": "Product Name", "answer": "The product name is Pydantic AI."},
                        ]
                    },
                ),
            ),
            finish=TOOL_CALLS,
            usage={"input_tokens": 448, "output_tokens": 62},
        ),
    ),
]


# --- running one recording -------------------------------------------------------------------


@dataclass
class Outcome:
    text: str = ""
    reasoning: str = ""
    calls: list[types_pb2.ToolCall] = field(default_factory=list)
    finish: int = types_pb2.FINISH_REASON_UNSPECIFIED
    usage: types_pb2.Usage = field(default_factory=types_pb2.Usage)
    error: UpstreamError | None = None


async def run_adapter(
    provider: OpenAICompatProvider, request: chat_pb2.ChatRequest, stream: bool, key: str
) -> Outcome:
    call = UpstreamCall(model=request.model or "gpt-4o-mini", api_key=key, timeout=10)
    outcome = Outcome()
    try:
        if not stream:
            response = await provider.chat(request, call)
            outcome.finish, outcome.usage = response.finish_reason, response.usage
            for part in response.message.content:
                kind = part.WhichOneof("part")
                if kind == "text":
                    outcome.text += part.text
                elif kind == "reasoning":
                    outcome.reasoning += part.reasoning.text
                elif kind == "tool_call":
                    outcome.calls.append(part.tool_call)
            return outcome
        calls: dict[int, types_pb2.ToolCall] = {}
        async for frame in provider.stream(request, call):
            kind = frame.WhichOneof("frame")
            if kind == "text":
                outcome.text += frame.text.text
            elif kind == "reasoning":
                outcome.reasoning += frame.reasoning.text
            elif kind == "tool_call":
                delta = frame.tool_call
                entry = calls.setdefault(
                    delta.index, types_pb2.ToolCall(id=delta.id, name=delta.name)
                )
                entry.arguments += delta.arguments
            elif kind == "end":
                outcome.finish, outcome.usage = frame.end.finish_reason, frame.end.usage
        outcome.calls = [calls[i] for i in sorted(calls)]
    except UpstreamError as error:
        outcome.error = error
    return outcome


def check(outcome: Outcome, want: Want, recorded_text: str | None, key: str) -> None:
    if want.error is not None:
        assert isinstance(outcome.error, want.error), outcome.error
        error = outcome.error
        assert error.message == want.message
        if want.code is not None:
            assert error.metadata.get("upstream_code") == want.code
        assert error.retry_after == want.retry_after
        for hidden in (*want.never_shown, key):
            assert hidden not in error.message and hidden not in repr(error)
    else:
        assert outcome.error is None, outcome.error
        assert outcome.finish == want.finish
        assert outcome.usage == types_pb2.Usage(**want.usage)
        expected_calls = [(c.id, c.name, json.loads(c.arguments)) for c in outcome.calls]
        assert expected_calls == list(want.calls)
    for got, expected in ((outcome.text, want.text), (outcome.reasoning, want.reasoning)):
        if expected == "CHUNKED":
            assert got == recorded_text and got.startswith("**Holiday Name:** Harmony Day")
        elif callable(expected):
            assert expected(got), got[:80]
        elif expected is not None:
            assert got == expected


def provider_named(name: str, base_url: str) -> OpenAICompatProvider:
    from server.providers.registry import KNOWN_PROVIDERS

    known = KNOWN_PROVIDERS[name]
    return OpenAICompatProvider(
        name,
        base_url,
        max_tokens_field=known.max_tokens_field,
        send_reasoning=known.send_reasoning,
    )


KEY = "sk-replay-0123456789abcdef"


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_replay_response(case: Case) -> None:
    path = openai_dir() / case.file
    recorded_text = None
    if case.file.endswith(".yaml"):
        interaction = load_cassette(path)[case.index]
        body = interaction["request"]["parsed_body"]
        request = chat_request_from_openai(body)
        behaviour: Raw = cassette_response(interaction)
        stream = bool(body.get("stream"))
    else:
        request = chat_request_from_openai(
            {"model": "gpt-4.1-nano", "messages": [{"role": "user", "content": "Hello"}]}
        )
        stream = case.file.endswith(".chunks.txt")
        if stream:
            recorded_text = chunked_text(path)
            behaviour = Raw(chunks_body(path))
        else:
            status = 400 if "error" in case.file else 200
            behaviour = Raw(path.read_bytes(), status=status, content_type="application/json")
    async with FakeOpenAI() as upstream:
        upstream.script(behaviour)
        provider = provider_named(case.provider, upstream.base_url)
        outcome = await run_adapter(provider, request, stream, KEY)
        assert len(upstream.requests) == 1
    check(outcome, case.want, recorded_text, KEY)


YAML_CASES = [case for case in CASES if case.file.endswith(".yaml")]


def _request_param(case: Case) -> Any:
    marks = []
    if case.request_xfail:
        marks.append(pytest.mark.xfail(reason=case.request_xfail, strict=True))
    return pytest.param(case, id=case.id, marks=marks)


@pytest.mark.parametrize("case", [_request_param(case) for case in YAML_CASES])
async def test_replay_request_encoding(case: Case) -> None:
    """The adapter's request for the recorded conversation matches the recorded request."""
    interaction = load_cassette(openai_dir() / case.file)[case.index]
    recorded = interaction["request"]["parsed_body"]
    async with FakeOpenAI() as upstream:
        upstream.script(cassette_response(interaction))
        provider = provider_named(case.provider, upstream.base_url)
        await run_adapter(
            provider, chat_request_from_openai(recorded), bool(recorded.get("stream")), KEY
        )
        sent = upstream.last
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    max_field = "max_completion_tokens" if case.provider == "openai" else "max_tokens"
    if recorded.get("max_completion_tokens", recorded.get("max_tokens")) is not None:
        assert max_field in sent.json
    assert essential(sent.json) == essential(recorded)


def test_openai_sends_the_parameter_the_legacy_error_asks_for() -> None:
    """The recorded 400 says reasoning models want max_completion_tokens: the openai entry
    sends that, the other compatible providers keep max_tokens."""
    body = json.loads(
        (openai_dir() / "vercel-ai__reasoning-model-legacy-parameter-error.json").read_text()
    )
    assert body["error"]["param"] == "max_tokens"
    request = chat_request_from_openai(
        {"model": "o3", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    )
    openai = provider_named("openai", "http://127.0.0.1:9/v1")
    groq = provider_named("groq", "http://127.0.0.1:9/v1")
    call = UpstreamCall(model="o3", api_key="")
    assert "max_completion_tokens" in openai._encode(request, call, stream=False)
    assert "max_tokens" in groq._encode(request, call, stream=False)


def test_every_recording_is_replayed() -> None:
    """A new recording in the directory must get a case here, not be ignored."""
    files = {path.name for path in openai_dir().iterdir() if path.is_file()}
    covered = {case.file for case in CASES}
    assert files == covered
    for case in YAML_CASES:
        assert case.index < len(load_cassette(openai_dir() / case.file))
    counts: dict[str, int] = {}
    for case in YAML_CASES:
        counts[case.file] = counts.get(case.file, 0) + 1
    for name, count in counts.items():
        assert count == len(load_cassette(openai_dir() / name)), name
