"""Stateful chat requests (the Responses API's conversation state, on every transport).

A request is stateful when it sets ``previous_response_id``, ``store`` or ``instructions``
(``Gateway`` checks the three inline). ``Conversation.open`` then builds the two requests the
gateway needs:

- ``kept``: what a stored response records as its request: the caller's request with its
  messages preceded by the previous response's messages and answer (so a later turn needs one
  read, whatever the chain's length), and its own ``instructions``;
- ``upstream``: what the model is sent: ``kept``'s messages after one system message holding
  this turn's ``instructions`` (the previous turns' instructions are not carried over, as in
  OpenAI's Responses API), with the stateful fields cleared so adapters never see them.

``save`` stores the answer under the id chosen at ``open`` (``resp_<random>``: never derived
from a caller-chosen request id, so one key cannot collide with another's ids).
"""

from __future__ import annotations

import time

from switchboard.v1 import chat_pb2, types_pb2

from server.core.errors import (
    FailedPreconditionError,
    FieldViolation,
    InvalidRequestError,
    ResponseNotFoundError,
)
from server.core.ids import new_request_id
from server.core.state import ResponseStore

# OpenAI's bounds on `metadata`.
MAX_METADATA = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512
_STATEFUL = ("previous_response_id", "store", "instructions", "metadata")


def response_not_found(response_id: str, param: str | None = None) -> ResponseNotFoundError:
    """OpenAI's wording for an unknown (or another key's) response id."""
    noun = "Previous response" if param == "previous_response_id" else "Response"
    return ResponseNotFoundError(f"{noun} with id '{response_id}' not found.", param=param)


class Conversation:
    """One stateful request: what is stored and what goes upstream (module docstring)."""

    __slots__ = ("kept", "key_id", "response_id", "store", "upstream")

    def __init__(
        self,
        store: ResponseStore | None,
        key_id: str,
        kept: chat_pb2.ChatRequest,
        upstream: chat_pb2.ChatRequest,
    ) -> None:
        self.store = store
        self.key_id = key_id
        self.kept = kept
        self.upstream = upstream
        # Chosen before the call, so a stream can name it in its first frame.
        self.response_id = "resp_" + new_request_id() if kept.store else ""

    @classmethod
    async def open(
        cls, store: ResponseStore | None, key_id: str, request: chat_pb2.ChatRequest
    ) -> Conversation:
        """Reads the previous response (NOT_FOUND when unknown or another key's) and builds
        the kept and upstream requests."""
        _check_metadata(request)
        if (request.store or request.previous_response_id) and store is None:
            raise FailedPreconditionError(
                "This gateway's state backend keeps no stored responses: send store=false "
                "and no previous_response_id.",
                param="store" if request.store else "previous_response_id",
            )
        kept = chat_pb2.ChatRequest()
        kept.CopyFrom(request)
        if request.previous_response_id:
            assert store is not None
            previous = await store.get(key_id, request.previous_response_id)
            if previous is None:
                raise response_not_found(request.previous_response_id, "previous_response_id")
            del kept.messages[:]
            kept.messages.extend(previous.request.messages)
            kept.messages.append(previous.response.message)
            kept.messages.extend(request.messages)
        upstream = chat_pb2.ChatRequest()
        upstream.CopyFrom(kept)
        for name in _STATEFUL:
            upstream.ClearField(name)
        if request.instructions:
            del upstream.messages[:]
            system = upstream.messages.add(role=types_pb2.ROLE_SYSTEM)
            system.content.add(text=request.instructions)
            upstream.messages.extend(kept.messages)
        return cls(store, key_id, kept, upstream)

    async def save(self, response: chat_pb2.ChatResponse) -> str:
        """Stores the answer when the request asked for it; returns the response id ("" when
        not stored)."""
        if not self.response_id or self.store is None:
            return ""
        stored = chat_pb2.StoredResponse(
            id=self.response_id, created=response.created or int(time.time())
        )
        stored.request.CopyFrom(self.kept)
        stored.response.CopyFrom(response)
        stored.response.response_id = self.response_id
        await self.store.put(self.key_id, stored)
        return self.response_id


def _check_metadata(request: chat_pb2.ChatRequest) -> None:
    metadata = request.metadata
    if not metadata:
        return
    violations = []
    if len(metadata) > MAX_METADATA:
        violations.append(FieldViolation("metadata", f"at most {MAX_METADATA} pairs"))
    for key, value in metadata.items():
        if len(key) > MAX_METADATA_KEY:
            violations.append(
                FieldViolation("metadata", f"keys are at most {MAX_METADATA_KEY} characters")
            )
        if len(value) > MAX_METADATA_VALUE:
            violations.append(
                FieldViolation(
                    f"metadata.{key[:MAX_METADATA_KEY]}", f"at most {MAX_METADATA_VALUE} characters"
                )
            )
    if violations:
        raise InvalidRequestError.of(violations)
