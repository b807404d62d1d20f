"""Property: any request body either decodes or is a 4xx GatewayError, in both dialects.

Bodies are arbitrary JSON, then dialect-shaped objects whose every known field may hold a value
of the wrong type, arbitrary JSON, or arrays/objects nested up to past orjson's parse limit
(1024). Deep values are written as ``orjson.Fragment`` text, since orjson itself refuses to
write more than 254 levels. What decodes must then also pass the core's validation and every
adapter's encoder, or be refused there with a 4xx: nothing a dialect accepts may crash an
adapter later. Hypothesis shrinks a failure to a small body; each test is bounded so the suite
stays fast.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from switchboard.v1 import chat_pb2

from server.core.errors import GatewayError
from server.core.validate import validate_chat_request
from server.http_shim.anthropic_convert import decode_request
from server.http_shim.openai_convert import to_chat_request
from server.http_shim.openai_schema import parse_chat_request
from server.providers.anthropic.encode import encode_request as anthropic_encode
from server.providers.gemini.encode import encode_request as gemini_encode
from server.providers.openai_compat.encode import encode_request as openai_encode

BOUNDED = settings(
    max_examples=200,
    deadline=None,
    # No .hypothesis/ directory in the worktree; a failure prints its shrunk example.
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.sampled_from(["", "text", "image", "tool_use", "user", "auto", "json_schema", "aGk="]),
)


def _nested(depth: int, kind: str) -> str:
    if kind == "[":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


# Around the bounds that matter: the gateway's 64, Struct's recursion, orjson's 254 and 1024.
nested_text = st.builds(
    _nested,
    st.one_of(st.integers(1, 80), st.sampled_from([253, 254, 255, 300, 500, 1023, 1024, 1025])),
    st.sampled_from(["[", "{"]),
)
deep = nested_text.map(lambda text: orjson.Fragment(text.encode()))
json_values = st.recursive(
    scalars | deep,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)


def field(*good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A known field's value: mostly a plausible one, else anything at all (one wrong field
    in most bodies, so that conversion and the adapters are reached too)."""
    if not good:
        return json_values
    plausible = st.one_of(*good)
    return st.integers(0, 7).flatmap(lambda roll: json_values if roll == 0 else plausible)


def obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> Any:
    return st.fixed_dictionaries(required, optional=optional or {})


schemas = field(st.dictionaries(st.text(max_size=6), json_values, max_size=3))
# Tool-call arguments are JSON text, which adapters that want an object parse.
arguments = field(st.sampled_from(["", "{}", '{"city": "Paris"}', "[1]", '{"a']), nested_text)

# --- OpenAI Chat Completions -------------------------------------------------------------------

openai_part = field(
    obj({"type": st.just("text"), "text": field(st.text(max_size=6))}),
    obj(
        {"type": st.just("image_url"), "image_url": field(obj({"url": field(st.text())}))},
        {"detail": field(st.sampled_from(["auto", "low", "high"]))},
    ),
    obj({"type": st.just("refusal"), "refusal": field(st.text(max_size=6))}),
)
openai_call = field(
    obj(
        {
            "id": field(st.text(max_size=6)),
            "function": field(
                obj({"name": field(st.sampled_from(["w", "f"]))}, {"arguments": arguments})
            ),
        },
        {"type": field(st.just("function"))},
    )
)
openai_message = field(
    obj(
        {"role": field(st.sampled_from(["system", "developer", "user", "assistant", "tool"]))},
        {
            "content": field(st.text(max_size=6), st.lists(openai_part, max_size=3)),
            "name": field(st.text(max_size=4)),
            "tool_calls": field(st.lists(openai_call, max_size=2)),
            "tool_call_id": field(st.text(max_size=4)),
            "refusal": field(st.text(max_size=4)),
        },
    )
)
openai_tool = field(
    obj(
        {"type": field(st.just("function"))},
        {
            "function": field(
                obj(
                    {"name": field(st.text(max_size=6))},
                    {"parameters": schemas, "strict": field(st.booleans())},
                )
            )
        },
    )
)
openai_body = obj(
    {
        "model": field(st.just("p/m")),
        "messages": field(st.lists(openai_message, min_size=1, max_size=3)),
    },
    {
        "tools": field(st.lists(openai_tool, max_size=2)),
        "tool_choice": field(
            st.sampled_from(["none", "auto", "required"]),
            obj({"type": field(st.just("function")), "function": field(obj({"name": field()}))}),
        ),
        "response_format": field(
            obj({"type": field(st.sampled_from(["text", "json_object"]))}),
            obj(
                {
                    "type": st.just("json_schema"),
                    "json_schema": field(obj({"name": field()}, {"schema": schemas})),
                }
            ),
        ),
        "temperature": field(st.floats(0, 2)),
        "max_tokens": field(st.integers(1, 2**31)),
        "stop": field(st.text(max_size=4), st.lists(st.text(max_size=4), max_size=5)),
        "seed": field(st.integers(-(2**63), 2**63)),
        "n": field(st.integers(0, 3)),
        "stream": field(st.booleans()),
        "stream_options": field(obj({}, {"include_usage": field(st.booleans())})),
        "metadata": json_values,
        "reasoning_effort": json_values,
    },
)

# --- Anthropic Messages ------------------------------------------------------------------------

text_block = obj({"type": st.just("text"), "text": field(st.text(max_size=6))})
image_block = obj(
    {
        "type": st.just("image"),
        "source": field(
            obj(
                {"type": st.just("base64")},
                {"media_type": field(st.just("image/png")), "data": field(st.just("aGk="))},
            ),
            obj({"type": st.just("url")}, {"url": field(st.just("https://x/a.png"))}),
            obj({"type": field(st.just("file"))}),
        ),
    }
)
anthropic_block = field(
    text_block,
    image_block,
    obj(
        {"type": st.just("tool_use")},
        {"id": field(st.just("toolu_1")), "name": field(st.just("w")), "input": schemas},
    ),
    obj(
        {"type": st.just("tool_result")},
        {
            "tool_use_id": field(st.just("toolu_1")),
            "content": field(st.text(max_size=4), st.lists(field(text_block), max_size=2)),
            "is_error": field(st.booleans()),
        },
    ),
    obj(
        {"type": st.just("thinking")},
        {"thinking": field(st.text(max_size=4)), "signature": field(st.text(max_size=4))},
    ),
    obj({"type": st.just("redacted_thinking")}, {"data": field(st.text(max_size=4))}),
    obj({"type": field(st.sampled_from(["document", "search_result"]))}),
)
anthropic_message = field(
    obj(
        {"role": field(st.sampled_from(["user", "assistant"]))},
        {"content": field(st.text(max_size=6), st.lists(anthropic_block, max_size=3))},
    )
)
anthropic_tool = field(
    obj(
        {"name": field(st.just("w"))},
        {
            "type": field(st.sampled_from(["custom", "web_search_20250305"])),
            "input_schema": schemas,
            "description": field(st.text(max_size=4)),
            "strict": field(st.booleans()),
            "cache_control": json_values,
        },
    )
)
anthropic_body = obj(
    {
        "model": field(st.just("demo/echo")),
        "max_tokens": field(st.integers(1, 2**40)),
        "messages": field(st.lists(anthropic_message, min_size=1, max_size=3)),
    },
    {
        "system": field(st.text(max_size=4), st.lists(field(text_block), max_size=2)),
        "temperature": field(st.floats(0, 1)),
        "top_p": field(st.floats(0, 1)),
        "stop_sequences": field(st.lists(st.text(max_size=4), max_size=5)),
        "metadata": field(obj({}, {"user_id": field(st.text(max_size=4))})),
        "stream": field(st.booleans()),
        "tools": field(st.lists(anthropic_tool, max_size=2)),
        "tool_choice": field(
            obj(
                {"type": field(st.sampled_from(["auto", "any", "tool", "none"]))},
                {"name": field(st.just("w")), "disable_parallel_tool_use": field(st.booleans())},
            )
        ),
        "output_config": field(
            obj(
                {},
                {
                    "format": field(obj({"type": st.just("json_schema")}, {"schema": schemas})),
                    "effort": json_values,
                },
            )
        ),
        "top_k": json_values,
        "thinking": json_values,
    },
)

# --- the properties ---------------------------------------------------------------------------


def raw(body: Any) -> bytes:
    return orjson.dumps(body)


def assert_4xx(error: GatewayError) -> None:
    assert 400 <= error.http_status < 500, (type(error).__name__, error.message)


def assert_adapters_cope(request: chat_pb2.ChatRequest) -> None:
    """What a dialect accepts is validated by the core, then encoded (or refused) by every
    adapter; the bodies they build must serialise."""
    try:
        validate_chat_request(request)
    except GatewayError as error:
        assert_4xx(error)
        return
    for encode in (
        lambda: openai_encode(request, "gpt-4o-mini", stream=False),
        lambda: anthropic_encode(request, "claude-sonnet-4-5").body,
        lambda: gemini_encode(request),
    ):
        try:
            body = encode()
        except GatewayError as error:
            assert_4xx(error)
            continue
        orjson.dumps(body)


def decode_openai(body: bytes) -> None:
    try:
        request = to_chat_request(parse_chat_request(body))
    except GatewayError as error:
        assert_4xx(error)
        return
    assert_adapters_cope(request)


def decode_anthropic(body: bytes) -> None:
    try:
        request, _ = decode_request(body)
    except GatewayError as error:
        assert_4xx(error)
        return
    assert_adapters_cope(request)


@BOUNDED
@given(st.one_of(json_values.map(raw), st.binary(max_size=64)))
def test_openai_any_json(body: bytes) -> None:
    decode_openai(body)


@BOUNDED
@given(openai_body.map(raw))
def test_openai_shaped_bodies(body: bytes) -> None:
    decode_openai(body)


@BOUNDED
@given(st.one_of(json_values.map(raw), st.binary(max_size=64)))
def test_anthropic_any_json(body: bytes) -> None:
    decode_anthropic(body)


@BOUNDED
@given(anthropic_body.map(raw))
def test_anthropic_shaped_bodies(body: bytes) -> None:
    decode_anthropic(body)
