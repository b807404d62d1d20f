"""A small typed client for the Switchboard gateway's gRPC API (``switchboard.v1``)."""

from switchboard_client.client import (
    SwitchboardClient,
    message,
    system,
    tool_result,
    user,
)
from switchboard_client.converse import ConverseResult, ToolFunction
from switchboard_client.errors import FieldViolation, QuotaViolation, SwitchboardError

__all__ = [
    "ConverseResult",
    "FieldViolation",
    "QuotaViolation",
    "SwitchboardClient",
    "SwitchboardError",
    "ToolFunction",
    "message",
    "system",
    "tool_result",
    "user",
]
