"""Property: any body sent to ``/v1/responses``, ``/v1/embeddings`` or
``/v1/messages/count_tokens`` either decodes or is a 4xx, and through the whole app (a real
Gateway over the demo provider and a real SQLite response store) never a 5xx: every refusal is
OpenAI's (or, for count_tokens, Anthropic's) error shape.

Bodies are arbitrary JSON, then Responses- and embeddings-shaped objects whose every known field
may hold a value of the wrong type, arbitrary JSON or deeply nested values (the strategies of
``test_fuzz_dialects``). What decodes must also pass the core's validation and every adapter's
encoder, or be refused there with a 4xx.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from server.core.errors import GatewayError
from server.core.validate import validate_embed_request
from server.http_shim import create_app
from server.http_shim.openai_embeddings import parse_embeddings_request, to_embed_request
from server.http_shim.responses_convert import to_chat_request
from server.http_shim.responses_schema import parse_create_response
from server.providers.gemini.embed import encode_embed_request as gemini_embed
from server.providers.openai_compat.embed import encode_embed_request as openai_embed
from server.providers.registry import build_providers
from server.store.embedded.responses import SqliteResponseStore
from tests.unit.http_shim.support import APP_KEY, AsgiClient, build_gateway
from tests.unit.http_shim.test_fuzz_dialects import (
    BOUNDED,
    arguments,
    assert_4xx,
    assert_adapters_cope,
    field,
    json_values,
    obj,
    raw,
    schemas,
)

text = field(st.text(max_size=6))
part = field(
    obj({"type": st.just("input_text"), "text": text}),
    obj({"type": st.just("output_text"), "text": text}, {"annotations": json_values}),
    obj({"type": st.just("refusal"), "refusal": text}),
    obj(
        {"type": st.just("input_image")},
        {
            "image_url": field(
                st.sampled_from(["https://x/a.png", "data:image/png;base64,aGk=", "x"])
            ),
            "detail": field(st.sampled_from(["auto", "low", "high"])),
            "file_id": text,
        },
    ),
    obj({"type": field(st.sampled_from(["input_file", "input_audio"]))}),
)
content = field(st.text(max_size=6), st.lists(part, max_size=3))
item = field(
    obj(
        {"role": field(st.sampled_from(["user", "assistant", "system", "developer"]))},
        {"content": content, "type": field(st.just("message")), "id": text, "status": text},
    ),
    obj(
        {"type": st.just("function_call")},
        {"call_id": field(st.just("c1")), "name": field(st.just("w")), "arguments": arguments},
    ),
    obj(
        {"type": st.just("function_call_output")},
        {"call_id": field(st.just("c1")), "output": content},
    ),
    obj(
        {"type": st.just("reasoning")},
        {
            "summary": field(
                st.lists(obj({"type": st.just("summary_text"), "text": text}), max_size=2)
            ),
            "encrypted_content": field(st.sampled_from(["sbr1.", "sbr1.EgJoaQ==", "gAAAA", ""])),
        },
    ),
    obj({"type": field(st.sampled_from(["item_reference", "web_search_call"]))}),
)
tool = field(
    obj(
        {"type": st.just("function"), "name": field(st.sampled_from(["w", "f", "bad name"]))},
        {"parameters": schemas, "strict": field(st.booleans()), "description": text},
    ),
    obj({"type": field(st.sampled_from(["web_search", "file_search", "mcp"]))}),
)
responses_body = obj(
    {"model": field(st.sampled_from(["demo/echo", "echo", "nosuch/x", "demo/embed"]))},
    {
        "input": field(st.text(max_size=6), st.lists(item, max_size=4)),
        "instructions": text,
        "tools": field(st.lists(tool, max_size=2)),
        "tool_choice": field(
            st.sampled_from(["none", "auto", "required"]),
            obj({"type": st.just("function"), "name": field(st.just("w"))}),
            obj({"type": field(st.just("allowed_tools"))}),
        ),
        "text": field(
            obj(
                {},
                {
                    "format": field(
                        obj({"type": field(st.sampled_from(["text", "json_object"]))}),
                        obj(
                            {"type": st.just("json_schema"), "name": field(st.just("S"))},
                            {"schema": schemas, "strict": field(st.booleans())},
                        ),
                    ),
                    "verbosity": field(st.sampled_from(["low", "high"])),
                },
            )
        ),
        "max_output_tokens": field(st.integers(-1, 2**31)),
        "temperature": field(st.floats(-1, 3)),
        "reasoning": field(obj({}, {"effort": field(st.sampled_from(["none", "low", "high"]))})),
        "metadata": field(st.dictionaries(st.text(max_size=70), st.text(max_size=4), max_size=18)),
        "store": field(st.booleans()),
        "previous_response_id": field(st.sampled_from(["resp_x", ""])),
        "stream": field(st.booleans()),
        "include": field(
            st.lists(st.sampled_from(["reasoning.encrypted_content", "x"]), max_size=2)
        ),
        "truncation": field(st.sampled_from(["disabled", "auto"])),
        "background": field(st.booleans()),
        "parallel_tool_calls": field(st.booleans()),
        "logprobs": json_values,
    },
)
embeddings_body = obj(
    {"model": field(st.sampled_from(["demo/embed", "embed", "demo/echo", "x"]))},
    {
        "input": field(
            st.text(max_size=6),
            st.lists(st.text(max_size=6), max_size=3),
            st.lists(st.integers(-(2**63), 2**63), max_size=3),
            st.lists(st.lists(st.integers(0, 10), max_size=3), max_size=3),
        ),
        "dimensions": field(st.integers(-1, 10_000)),
        "encoding_format": field(st.sampled_from(["float", "base64", "hex"])),
        "user": text,
        "task_type": json_values,
    },
)


def decode_responses(body: bytes) -> None:
    try:
        request = to_chat_request(parse_create_response(body))
    except GatewayError as error:
        assert_4xx(error)
        return
    assert_adapters_cope(request)


def decode_embeddings(body: bytes) -> None:
    try:
        request = to_embed_request(parse_embeddings_request(body))
        validate_embed_request(request)
    except GatewayError as error:
        assert_4xx(error)
        return
    for encode in (lambda: openai_embed(request, "m"), lambda: gemini_embed(request, "m")):
        try:
            orjson.dumps(encode())
        except GatewayError as error:
            assert_4xx(error)


@BOUNDED
@given(st.one_of(json_values.map(raw), st.binary(max_size=64)))
def test_responses_any_json(body: bytes) -> None:
    decode_responses(body)


@BOUNDED
@given(responses_body.map(raw))
def test_responses_shaped_bodies(body: bytes) -> None:
    decode_responses(body)


@BOUNDED
@given(st.one_of(json_values.map(raw), embeddings_body.map(raw)))
def test_embeddings_bodies(body: bytes) -> None:
    decode_embeddings(body)


_DATA = Path(tempfile.mkdtemp(prefix="sb-fuzz-responses-"))


APP = AsgiClient(
    create_app(build_gateway(*build_providers({}).values(), responses=SqliteResponseStore(_DATA)))
)
PATHS = ("/v1/responses", "/v1/embeddings", "/v1/messages/count_tokens")


def _through_app(path: str, body: bytes) -> None:
    response = asyncio.run(APP.request("POST", path, body=body, key=APP_KEY))
    assert response.status < 500, (path, response.status, response.body[:300])
    if response.status >= 400:
        error: Any = response.json()
        if path.startswith("/v1/messages"):
            assert error["type"] == "error" and set(error["error"]) == {"type", "message"}
        else:
            assert set(error["error"]) == {"message", "type", "param", "code"}, error


@BOUNDED
@given(st.sampled_from(PATHS), st.one_of(responses_body.map(raw), embeddings_body.map(raw)))
def test_no_body_gets_a_5xx_from_the_app(path: str, body: bytes) -> None:
    _through_app(path, body)
