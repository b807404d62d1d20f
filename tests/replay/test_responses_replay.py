"""The recorded OpenAI Responses traffic (../shared/fixtures/provider-wire/openai-responses) is
the specification of what ``/v1/responses`` serves.

For each cassette interaction the recorded request body is sent to a running gateway as it is
(its bare model names resolve to the ``openai`` deployment, a ``FakeOpenAI`` on loopback scripted
to answer the same kind of turn: text, function calls, reasoning), and the answer must have the
recorded shape: the same output item types (and content part types), status, usage fields and
top-level fields, except the few that describe OpenAI's own account (``billing``...). Recorded
``previous_response_id`` values are mapped to the ids this gateway gave the earlier turns.
Recorded streams (cassettes and vercel-ai ``*.chunks.txt``) must come out as the same event
type sequence, runs of deltas compared as one (their count depends on how the text is cut).
Recorded error answers must come back in the same error shape and status class.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.fakes.common import ToolCall
from tests.fakes.openai_upstream import FakeOpenAI, Reply, StreamError, Usage
from tests.fixtures_dir import shared_fixtures_dir
from tests.replay.openai_wire import load_cassette, post_json
from tests.support.server import RunningGateway, running_gateway

pytestmark = pytest.mark.asyncio(loop_scope="module")

# Facts about OpenAI's own account and newest experiments that a gateway does not have.
ACCOUNT_FIELDS = {
    "billing",
    "moderation",
    "tool_usage",
    "prompt_cache_options",
    "prompt_cache_retention",
}
# Recorded model names without a price-table row get an alias, as an operator would add one.
CONFIG = {
    "retry": {"max_attempts_per_deployment": 1},
    "models": {"o3-mini": "openai/o3-mini", "gpt-5.6-sol": "openai/gpt-5.6-sol"},
}


def fixtures() -> Path:
    return shared_fixtures_dir() / "provider-wire" / "openai-responses"


def cassettes() -> list[str]:
    return sorted(p.name for p in fixtures().glob("*.yaml"))


def _body(part: dict[str, Any]) -> Any:
    if "parsed_body" in part:
        return part["parsed_body"]
    body = part.get("body")
    if isinstance(body, dict) and "content" in body:
        return body["content"]
    if isinstance(body, dict) and "string" in body:
        return body["string"]
    return None


def _status(response: dict[str, Any]) -> int:
    status = response["status"]
    return status if isinstance(status, int) else status["code"]


def sse_events(text: str) -> list[dict[str, Any]]:
    """The JSON of each ``data:`` line of an SSE body."""
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


def chunk_streams(path: Path) -> list[list[dict[str, Any]]]:
    """A vercel-ai chunks file split into its streams (one starts at sequence 0)."""
    streams: list[list[dict[str, Any]]] = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        event = json.loads(line)
        if event["type"] == "response.created" and event.get("sequence_number") == 0:
            streams.append([])
        streams[-1].append(event)
    return streams


def collapsed(types: list[str]) -> list[str]:
    """Event types with runs of the same delta type as one."""
    return [t for t, _ in itertools.groupby(types)]


def items_shape(output: list[dict[str, Any]]) -> list[tuple[str, tuple[str, ...]]]:
    return [(item["type"], tuple(p["type"] for p in item.get("content") or ())) for item in output]


def answer_like(recorded: dict[str, Any]) -> Reply:
    """A FakeOpenAI reply producing the same kind of turn as a recorded Responses output."""
    calls, texts, reasoning = [], [], None
    for item in recorded.get("output", []):
        if item["type"] == "function_call":
            calls.append(ToolCall(item["name"], item["arguments"], id=item["call_id"]))
        elif item["type"] == "message":
            texts.extend(p["text"] for p in item["content"] if p["type"] == "output_text")
        elif item["type"] == "reasoning":
            reasoning = "thinking it over"
    usage = recorded.get("usage") or {}
    cached = (usage.get("input_tokens_details") or {}).get("cached_tokens", 0)
    return Reply(
        text="".join(texts) if texts else None,
        tool_calls=calls,
        reasoning=reasoning,
        usage=Usage(
            usage.get("input_tokens", 10),
            usage.get("output_tokens", 5),
            cached_tokens=cached,
            reasoning_tokens=(usage.get("output_tokens_details") or {}).get("reasoning_tokens", 0),
        ),
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def setup() -> AsyncIterator[tuple[FakeOpenAI, RunningGateway, str]]:
    async with FakeOpenAI() as up:
        env = {"OPENAI_API_KEY": "sk-replay", "OPENAI_BASE_URL": up.base_url}
        async with running_gateway(env=env, config=CONFIG) as gw:
            yield up, gw, gw.create_key("replay")


async def post(gw: RunningGateway, key: str, body: Any) -> tuple[int, str, str]:
    return await post_json(f"{gw.http_url}/v1/responses", key, body)


def check_response(ours: dict[str, Any], recorded: dict[str, Any]) -> None:
    assert ours["object"] == recorded["object"] == "response"
    assert items_shape(ours["output"]) == items_shape(recorded["output"])
    assert ours["status"] == recorded["status"]
    missing = set(recorded) - set(ours) - ACCOUNT_FIELDS
    assert not missing, f"fields the recording has and the gateway does not: {missing}"
    for field in ("usage",):
        rec, got = recorded[field], ours[field]
        assert set(rec) <= set(got)
        for detail in ("input_tokens_details", "output_tokens_details"):
            assert set(rec[detail]) <= set(got[detail])
    assert ours["usage"]["input_tokens"] == recorded["usage"]["input_tokens"]
    assert ours["usage"]["output_tokens"] == recorded["usage"]["output_tokens"]
    for item, rec in zip(ours["output"], recorded["output"], strict=True):
        assert set(rec) - {"phase"} <= set(item), (item, rec)
        if item["type"] == "function_call":
            assert (item["name"], item["arguments"], item["call_id"]) == (
                rec["name"],
                rec["arguments"],
                rec["call_id"],
            )
        if item["type"] == "message":
            assert [p.get("text") for p in item["content"]] == [
                p.get("text") for p in rec["content"]
            ]


@pytest.mark.parametrize("name", cassettes())
async def test_recorded_requests_get_the_recorded_shape(
    setup: tuple[FakeOpenAI, RunningGateway, str], name: str
) -> None:
    up, gw, key = setup
    ids: dict[str, str] = {}
    for interaction in load_cassette(fixtures() / name):
        up.clear()
        request = dict(_body(interaction["request"]))
        recorded_status = _status(interaction["response"])
        recorded = _body(interaction["response"])
        if request.get("previous_response_id"):
            request["previous_response_id"] = ids[request["previous_response_id"]]
        if recorded_status != 200:
            status, _, text = await post(gw, key, request)
            error = json.loads(text)["error"]
            # Refused by the gateway itself, in the recorded shape and status class.
            assert status // 100 == recorded_status // 100 == 4
            assert (
                set(error) == set(recorded["error"]) and error["type"] == recorded["error"]["type"]
            )
            assert up.requests == []
            continue
        if isinstance(recorded, str):
            events = sse_events(recorded)
            final = events[-1]["response"]
            up.script(answer_like(final))
            status, content_type, text = await post(gw, key, request)
            assert status == 200 and content_type.startswith("text/event-stream")
            ours = sse_events(text)
            assert collapsed([e["type"] for e in ours]) == collapsed([e["type"] for e in events])
            assert [e["sequence_number"] for e in ours] == list(range(len(ours)))
            check_response(ours[-1]["response"], final)
            ids[final["id"]] = ours[-1]["response"]["id"]
            continue
        up.script(answer_like(recorded))
        status, _, text = await post(gw, key, request)
        assert status == 200, text
        ours = json.loads(text)
        check_response(ours, recorded)
        # The upstream got the recorded conversation: one message per recorded input message.
        sent = up.last.json
        assert (
            sent["model"]
            == (CONFIG["models"].get(request["model"], "openai/" + request["model"])).partition(
                "/"
            )[2]
        )
        if request.get("instructions"):
            assert sent["messages"][0] == {"role": "system", "content": request["instructions"]}
        ids[recorded["id"]] = ours["id"]


CHUNK_STREAMS = [
    ("vercel-ai__issue-20047-openai-responses.chunks.txt", "text"),
    ("vercel-ai__issue-19493-gpt-5.1-tool-call.chunks.txt", "call"),
    ("vercel-ai__openai-reasoning-encrypted-content.1.chunks.txt", "mixed"),
    ("vercel-ai__openai-error.1.chunks.txt", "error"),
]


@pytest.mark.parametrize(("name", "kind"), CHUNK_STREAMS)
async def test_recorded_streams_come_out_as_the_same_event_sequence(
    setup: tuple[FakeOpenAI, RunningGateway, str], name: str, kind: str
) -> None:
    up, gw, key = setup
    for recorded in chunk_streams(fixtures() / name):
        up.clear()
        final = recorded[-1]["response"]
        tools = [
            {"type": "function", "name": item["name"], "parameters": {"type": "object"}}
            for item in final.get("output", [])
            if item["type"] == "function_call"
        ]
        if kind == "error":
            # The gateway holds a stream's start until its first chunk (before it, the error
            # is an HTTP error and another deployment may still serve): fail after one.
            up.script(StreamError("You exceeded your current quota", after_chunks=1))
        else:
            up.script(answer_like(final))
        body: dict[str, Any] = {"model": "gpt-4o-mini", "input": "hi", "stream": True}
        if tools:
            body["tools"] = tools
        status, _, text = await post(gw, key, body)
        assert status == 200
        ours = sse_events(text)
        types = [e["type"] for e in ours]
        if kind == "error":
            # What the one delivered chunk added comes between, then the recorded ending.
            delivered = {"response.output_item.added", "response.content_part.added"}
            types = [t for t in types if t not in delivered and not t.endswith(".delta")]
        assert collapsed(types) == collapsed([e["type"] for e in recorded])
        assert [e["sequence_number"] for e in ours] == list(range(len(ours)))
        if kind == "error":
            error_event = next(e for e in ours if e["type"] == "error")
            recorded_error = next(e for e in recorded if e["type"] == "error")
            assert set(error_event["error"]) == set(recorded_error["error"])
            failed = ours[-1]["response"]
            assert failed["status"] == "failed" and set(failed["error"]) == {"code", "message"}
        else:
            check_response(ours[-1]["response"], final)
