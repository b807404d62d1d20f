"""The client half of ``ChatService.Converse``: local tools and the collected result.

The server streams each model turn, pauses with ``tool_calls_required`` when the model asks for
tools, and continues once it has their results. ``SwitchboardClient.converse`` answers those
pauses by calling the functions in a ``tools`` mapping (name → function of the parsed
arguments); this module holds what it needs to do that and what ``converse_result`` returns.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from switchboard.v1 import chat_pb2, types_pb2

# A local tool: takes the call's parsed JSON arguments and returns (or awaits) the result text.
# Sync functions run on the event loop; a non-string return value is sent as JSON.
ToolFunction = Callable[[dict[str, Any]], Awaitable[str] | str]


@dataclass
class ConverseResult:
    """A whole Converse call: the last turn's text and finish reason, each turn's end frame
    (usage, cost, route), usage and cost summed over the turns, and every tool call made with
    the result that was sent back."""

    text: str = ""
    finish_reason: types_pb2.FinishReason = types_pb2.FINISH_REASON_UNSPECIFIED
    turns: list[chat_pb2.StreamEnd] = field(default_factory=list)
    usage: types_pb2.Usage = field(default_factory=types_pb2.Usage)
    cost: types_pb2.Cost = field(default_factory=types_pb2.Cost)
    tool_calls: list[tuple[types_pb2.ToolCall, types_pb2.ToolResult]] = field(default_factory=list)
    _pieces: list[str] = field(default_factory=list, init=False, repr=False)

    def add(self, event: chat_pb2.ConverseResponse) -> None:
        """Folds one server event into the result."""
        if event.WhichOneof("event") != "frame":
            return
        frame = event.frame
        kind = frame.WhichOneof("frame")
        if kind == "text":
            self._pieces.append(frame.text.text)
        elif kind == "start":
            # Each turn restarts the text: the result is what the model said last.
            self._pieces = []
        elif kind == "end":
            end = frame.end
            self.turns.append(end)
            self.text = "".join(self._pieces)
            self.finish_reason = end.finish_reason
            for name in _USAGE_FIELDS:
                setattr(self.usage, name, getattr(self.usage, name) + getattr(end.usage, name))
            for name in _COST_FIELDS:
                setattr(self.cost, name, getattr(self.cost, name) + getattr(end.cost, name))


_USAGE_FIELDS = tuple(f.name for f in types_pb2.Usage.DESCRIPTOR.fields)
_COST_FIELDS = tuple(f.name for f in types_pb2.Cost.DESCRIPTOR.fields)


async def run_tools(
    tools: Mapping[str, ToolFunction], calls: Sequence[types_pb2.ToolCall]
) -> list[types_pb2.ToolResult]:
    """Runs the requested calls concurrently; each failure becomes an ``is_error`` result that
    tells the model what went wrong (unknown tool, bad JSON arguments, the exception raised)."""
    return list(await asyncio.gather(*(run_tool(tools, call) for call in calls)))


async def run_tool(
    tools: Mapping[str, ToolFunction], call: types_pb2.ToolCall
) -> types_pb2.ToolResult:
    """One call's result (``run_tools``)."""
    result = types_pb2.ToolResult(tool_call_id=call.id, name=call.name)
    function = tools.get(call.name)
    if function is None:
        return _failed(result, f"unknown tool {call.name!r}")
    try:
        arguments = json.loads(call.arguments or "{}")
    except ValueError as exc:
        return _failed(result, f"the arguments are not valid JSON: {exc}")
    if not isinstance(arguments, dict):
        return _failed(result, "the arguments must be a JSON object")
    try:
        value: Any = function(arguments)
        if inspect.isawaitable(value):
            value = await value
    except Exception as exc:
        return _failed(result, f"{type(exc).__name__}: {exc}")
    result.content = value if isinstance(value, str) else json.dumps(value)
    return result


def _failed(result: types_pb2.ToolResult, message: str) -> types_pb2.ToolResult:
    result.content = message
    result.is_error = True
    return result
