"""``/v1/responses`` over a real Gateway, scripted contract frames and a real SQLite store.

What the SDK tests cannot script exactly: the conversation the provider is sent (instructions
not carried over), parallel tool calls interleaved by an upstream, reasoning with signatures and
redacted blocks (their round trip through ``encrypted_content``), a cut answer (``incomplete``),
a failure after the stream began, and refused request fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from switchboard.v1 import chat_pb2, types_pb2

from server.core.errors import UpstreamServerError
from server.http_shim import create_app
from server.store.embedded.responses import SqliteResponseStore
from tests.unit.http_shim.support import (
    MODEL,
    AsgiClient,
    Raise,
    ScriptedProvider,
    build_gateway,
    end_frame,
    text_frame,
    tool_frame,
)

_R = types_pb2


@pytest.fixture
def client(provider: ScriptedProvider, tmp_path: Path) -> AsgiClient:
    return AsgiClient(create_app(build_gateway(provider, responses=SqliteResponseStore(tmp_path))))


def answer(
    *parts: types_pb2.ContentPart, finish: int = _R.FINISH_REASON_STOP
) -> chat_pb2.ChatResponse:
    message = types_pb2.Message(role=_R.ROLE_ASSISTANT, content=list(parts))
    return chat_pb2.ChatResponse(
        message=message,
        finish_reason=finish,  # type: ignore[arg-type]
        usage=types_pb2.Usage(input_tokens=5, output_tokens=2, reasoning_tokens=1),
    )


def text(value: str) -> types_pb2.ContentPart:
    return types_pb2.ContentPart(text=value)


def events(body: bytes) -> list[dict[str, Any]]:
    out = []
    for block in body.decode().split("\n\n"):
        if block:
            name, data = block.split("\n", 1)
            event = orjson.loads(data.removeprefix("data: "))
            assert name == f"event: {event['type']}"
            out.append(event)
    return out


async def create(client: AsgiClient, **body: Any) -> Any:
    response = await client.request("POST", "/v1/responses", body={"model": MODEL, **body})
    return response


async def test_instructions_are_not_carried_into_the_next_turn(
    client: AsgiClient, provider: ScriptedProvider
) -> None:
    provider.chat_answers += [answer(text("Hi Ada")), answer(text("You are Ada"))]
    first = (await create(client, input="I am Ada", instructions="Be terse.")).json()
    second = (await create(client, input="Who am I?", previous_response_id=first["id"])).json()
    assert second["instructions"] is None and second["previous_response_id"] == first["id"]
    one, two = provider.requests
    assert [(m.role, m.content[0].text) for m in one.messages] == [
        (_R.ROLE_SYSTEM, "Be terse."),
        (_R.ROLE_USER, "I am Ada"),
    ]
    assert [(m.role, m.content[0].text) for m in two.messages] == [
        (_R.ROLE_USER, "I am Ada"),
        (_R.ROLE_ASSISTANT, "Hi Ada"),
        (_R.ROLE_USER, "Who am I?"),
    ]
    # Adapters never see the conversation fields.
    assert not two.previous_response_id and not two.HasField("store") and not two.metadata


async def test_store_false_keeps_nothing(client: AsgiClient, provider: ScriptedProvider) -> None:
    provider.chat_answers.append(answer(text("x")))
    created = (await create(client, input="hi", store=False)).json()
    assert created["store"] is False
    got = await client.request("GET", f"/v1/responses/{created['id']}")
    assert got.status == 404 and got.json()["error"]["code"] == "response_not_found"


async def test_reasoning_round_trips_through_encrypted_content(
    client: AsgiClient, provider: ScriptedProvider
) -> None:
    thought = types_pb2.ContentPart(
        reasoning=types_pb2.ReasoningPart(text="Let me think", signature="sig-123")
    )
    redacted = types_pb2.ContentPart(reasoning=types_pb2.ReasoningPart(redacted_data="REDACTED"))
    provider.chat_answers += [answer(thought, redacted, text("42")), answer(text("ok"))]
    body = (await create(client, input="meaning?", store=False)).json()
    kinds = [item["type"] for item in body["output"]]
    assert kinds == ["reasoning", "reasoning", "message"]
    first = body["output"][0]
    assert first["summary"] == [{"type": "summary_text", "text": "Let me think"}]
    assert first["encrypted_content"] and body["output"][1]["summary"] == []
    assert body["usage"]["output_tokens_details"]["reasoning_tokens"] == 1
    replay = [
        {"role": "user", "content": "meaning?"},
        *body["output"],
        {"role": "user", "content": "and?"},
    ]
    await create(client, input=replay, store=False)
    assistant = provider.requests[1].messages[1]
    parts = [p.reasoning for p in assistant.content if p.WhichOneof("part") == "reasoning"]
    assert (parts[0].text, parts[0].signature) == ("Let me think", "sig-123")
    assert parts[1].redacted_data == "REDACTED"
    assert assistant.content[2].text == "42"


async def test_a_cut_answer_is_incomplete(client: AsgiClient, provider: ScriptedProvider) -> None:
    provider.chat_answers.append(answer(text("one two"), finish=_R.FINISH_REASON_LENGTH))
    body = (await create(client, input="count", max_output_tokens=2)).json()
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["output"][0]["status"] == "incomplete" and body["max_output_tokens"] == 2
    assert provider.requests[0].max_tokens == 2
    provider.streams.append([text_frame("one"), end_frame(_R.FINISH_REASON_LENGTH)])
    streamed = events((await create(client, input="count", stream=True)).body)
    assert streamed[-1]["type"] == "response.incomplete"
    assert streamed[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


async def test_interleaved_parallel_calls_stream_one_item_at_a_time(
    client: AsgiClient, provider: ScriptedProvider
) -> None:
    provider.streams.append(
        [
            tool_frame(0, id="c0", name="a", arguments='{"x"'),
            tool_frame(1, id="c1", name="b", arguments='{"y"'),
            tool_frame(0, arguments=":1}"),
            tool_frame(1, arguments=":2}"),
            end_frame(_R.FINISH_REASON_TOOL_CALLS),
        ]
    )
    tools = [{"type": "function", "name": n, "parameters": {"type": "object"}} for n in "ab"]
    out = events((await create(client, input="go", tools=tools, stream=True)).body)
    assert [e["sequence_number"] for e in out] == list(range(len(out)))
    flow = [(e["type"], e.get("output_index")) for e in out[2:]]
    assert flow == [
        ("response.output_item.added", 0),
        ("response.function_call_arguments.delta", 0),
        ("response.function_call_arguments.delta", 0),
        ("response.function_call_arguments.done", 0),
        ("response.output_item.done", 0),
        ("response.output_item.added", 1),
        ("response.function_call_arguments.delta", 1),
        ("response.function_call_arguments.done", 1),
        ("response.output_item.done", 1),
        ("response.completed", None),
    ]
    final = out[-1]["response"]["output"]
    assert [(i["call_id"], i["name"], i["arguments"]) for i in final] == [
        ("c0", "a", '{"x":1}'),
        ("c1", "b", '{"y":2}'),
    ]
    stored = (await client.request("GET", f"/v1/responses/{out[0]['response']['id']}")).json()
    assert [(i["id"], i["arguments"]) for i in stored["output"]] == [
        (i["id"], i["arguments"]) for i in final
    ]


async def test_a_failure_after_the_start_ends_with_response_failed(
    client: AsgiClient, provider: ScriptedProvider
) -> None:
    provider.streams.append(
        [text_frame("partial"), Raise(UpstreamServerError("boom", provider="script"))]
    )
    out = events((await create(client, input="x", stream=True)).body)
    kinds = [e["type"] for e in out]
    assert kinds[-2:] == ["error", "response.failed"] and "response.completed" not in kinds
    assert set(out[-2]["error"]) == {"message", "type", "param", "code"}
    assert out[-1]["response"]["status"] == "failed"
    assert set(out[-1]["response"]["error"]) == {"code", "message"}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"tools": [{"type": "file_search", "vector_store_ids": []}]}, "tools[0].type"),
        ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input[0].content[0].type",
        ),
        ({"background": True}, "background"),
        ({"include": ["message.output_text.logprobs"]}, "include[0]"),
        ({"tool_choice": {"type": "allowed_tools"}}, "tool_choice.type"),
    ],
)
async def test_what_cannot_be_served_is_refused_not_dropped(
    client: AsgiClient, provider: ScriptedProvider, body: dict[str, Any], param: str
) -> None:
    response = await create(client, **{"input": "x", **body})
    assert response.status == 400
    error = response.json()["error"]
    assert error["code"] == "unsupported_feature" and error["param"] == param
    assert provider.requests == []


async def test_input_items_paginate(client: AsgiClient, provider: ScriptedProvider) -> None:
    provider.chat_answers += [answer(text("a1")), answer(text("a2"))]
    first = (await create(client, input="q1")).json()
    second = (await create(client, input="q2", previous_response_id=first["id"])).json()
    path = f"/v1/responses/{second['id']}/input_items"
    newest = (await client.request("GET", path)).json()
    assert [i["role"] for i in newest["data"]] == ["user", "assistant", "user"]
    assert newest["data"][0]["content"] == [{"type": "input_text", "text": "q2"}]
    scope_query = await _get(client, path, b"order=asc&limit=2")
    assert [i["content"][0]["text"] for i in scope_query["data"]] == ["q1", "a1"]
    assert scope_query["has_more"] is True
    rest = await _get(client, path, b"order=asc&after=" + scope_query["last_id"].encode())
    assert [i["content"][0]["text"] for i in rest["data"]] == ["q2"] and rest["has_more"] is False
    bad = await client.request("GET", f"/v1/responses/{second['id']}/nope")
    assert bad.status == 404


async def _get(client: AsgiClient, path: str, query: bytes) -> Any:
    # AsgiClient sends no query string; the ASGI scope carries it separately.
    original = client.app.__call__

    async def with_query(scope: Any, receive: Any, send: Any) -> None:
        await original({**scope, "query_string": query}, receive, send)

    return (await AsgiClient(with_query).request("GET", path)).json()  # type: ignore[arg-type]
