"""A small typed client for the Switchboard gateway's gRPC API (``switchboard.v1``)."""

from switchboard_client.client import (
    SwitchboardClient,
    message,
    system,
    tool_result,
    user,
)
from switchboard_client.errors import FieldViolation, QuotaViolation, SwitchboardError

__all__ = [
    "FieldViolation",
    "QuotaViolation",
    "SwitchboardClient",
    "SwitchboardError",
    "message",
    "system",
    "tool_result",
    "user",
]
