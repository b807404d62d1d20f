"""The wire-neutral helpers in ``server.providers.codec``: JSON depth and tool-call arguments."""

from __future__ import annotations

import orjson
import pytest

from server.core.errors import InvalidRequestError
from server.providers.codec import MAX_JSON_DEPTH, arguments_object, too_deep, tool_arguments


def nested(depth: int) -> object:
    value: object = 1
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


@pytest.mark.parametrize(
    ("value", "depth"),
    [(1, 0), ("x", 0), ({}, 1), ([], 1), ({"a": [1, {"b": None}]}, 3), (nested(7), 7)],
)
def test_too_deep_counts_arrays_and_objects(value: object, depth: int) -> None:
    assert too_deep(value, depth) is False
    assert too_deep(value, depth - 1) is (depth > 0)


def test_too_deep_measures_what_recursion_cannot() -> None:
    assert too_deep(orjson.loads("[" * 1000 + "]" * 1000))
    assert not too_deep(nested(MAX_JSON_DEPTH))
    assert too_deep(nested(MAX_JSON_DEPTH + 1))


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [("", {}), ("  ", {}), ('{"a": 1}', {"a": 1}), ("[1]", None), ('{"a', None), ("null", None)],
)
def test_arguments_object(arguments: str, expected: object) -> None:
    assert arguments_object(arguments) == expected


def test_tool_arguments_refuse_what_an_upstream_body_cannot_hold() -> None:
    deep = orjson.dumps(nested(MAX_JSON_DEPTH + 1)).decode()
    for bad in ("[1]", '{"a', deep):
        with pytest.raises(InvalidRequestError) as info:
            tool_arguments(bad, "messages[0].content[0].tool_call.arguments", "Anthropic")
        assert info.value.param == "messages[0].content[0].tool_call.arguments"
        assert "Anthropic" in info.value.message
    assert tool_arguments('{"city": "Paris"}', "p", "Gemini") == {"city": "Paris"}
