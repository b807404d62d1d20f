"""Property: whatever a client sends on ChatService — any well-formed message the contract can
express, with any field holding any value (unknown enum numbers, extreme numbers, odd text,
deep Structs), or the bytes of a valid request cut, flipped and spliced — the gateway answers
with OK or a status the caller can act on, carrying `google.rpc.ErrorInfo`; never UNKNOWN,
INTERNAL, a hang (deadline) or a dropped connection, and never a traceback in its details.

Messages are drawn from the descriptors themselves, so a field added to the contract is fuzzed
without touching this file. Calls go to one real gateway subprocess (demo provider) over a
blocking channel; each property is bounded so the suite stays fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor, message_factory, struct_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from switchboard.v1 import chat_pb2, types_pb2

from tests.support.server import RunningGateway
from tests.support.wire import length_delimited

BOUNDED = settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

CALL_TIMEOUT = 15.0
# What a client cannot act on: an unclassified failure, a hang, a broken connection.
FORBIDDEN = {
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DATA_LOSS,
    grpc.StatusCode.CANCELLED,
}

FD = descriptor.FieldDescriptor

# The models worth reaching: the demo one (so validation and the adapter run), and names that
# must be refused cleanly.
MODELS = st.sampled_from(["demo/echo", "demo/echo", "demo/echo", "", "demo/", "nosuch/x", "x"])

texts = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", " ", "\x00", "demo/echo", "{}", '{"a":', "\ud7ff", "🙂" * 3]),
)
json_scalars = st.one_of(
    st.none(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False), texts
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)


def _struct_of(value: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(value)
    return out


def _deep_struct(depth: int) -> struct_pb2.Struct:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    out = struct_pb2.Struct()
    out.update(value)
    return out


structs = st.one_of(
    st.dictionaries(st.text(max_size=6), json_values, max_size=4).map(_struct_of),
    st.sampled_from([40, 63, 64, 65, 90]).map(_deep_struct),
    st.sampled_from(
        [
            {"type": "object", "properties": {"city": {"type": "string"}}},
            {"type": "object", "properties": 3},
            {"type": ["object", 1]},
            {"$ref": "#/nowhere"},
        ]
    ).map(_struct_of),
)


def _wild(field: descriptor.FieldDescriptor) -> st.SearchStrategy[Any]:
    """Any value the field's type can hold, extremes included."""
    kind = field.type
    if kind in (FD.TYPE_INT32, FD.TYPE_SINT32, FD.TYPE_SFIXED32):
        return st.one_of(st.integers(-5, 40), st.sampled_from([-(2**31), 2**31 - 1, 0]))
    if kind in (FD.TYPE_INT64, FD.TYPE_SINT64, FD.TYPE_SFIXED64):
        return st.one_of(st.integers(-5, 40), st.sampled_from([-(2**63), 2**63 - 1]))
    if kind in (FD.TYPE_UINT32, FD.TYPE_FIXED32):
        return st.integers(0, 2**32 - 1)
    if kind in (FD.TYPE_UINT64, FD.TYPE_FIXED64):
        return st.integers(0, 2**64 - 1)
    if kind in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        return st.one_of(
            st.floats(-3, 3),
            st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308, -0.0]),
        )
    if kind == FD.TYPE_BOOL:
        return st.booleans()
    if kind == FD.TYPE_STRING:
        return MODELS if field.name == "model" else texts
    if kind == FD.TYPE_BYTES:
        return st.one_of(st.binary(max_size=16), st.just(b"\x89PNG\r\n\x1a\n"))
    if kind == FD.TYPE_ENUM:
        # Known values mostly, and numbers the contract does not define.
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-3, 40))
    raise AssertionError(f"unhandled field type {kind} of {field.full_name}")


def _plausible(field: descriptor.FieldDescriptor) -> st.SearchStrategy[Any]:
    """A value a sensible client might send, so that most requests get past validation and
    reach routing, the adapter and the response path."""
    kind = field.type
    if field.name == "model":
        return st.just("demo/echo")
    if field.name == "n":
        return st.just(1)
    if field.name == "role":
        return st.sampled_from([types_pb2.ROLE_USER, types_pb2.ROLE_SYSTEM, types_pb2.ROLE_USER])
    if kind in (FD.TYPE_INT32, FD.TYPE_INT64, FD.TYPE_UINT32, FD.TYPE_UINT64):
        return st.integers(1, 64)
    if kind in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        return st.floats(0, 1)
    if kind == FD.TYPE_STRING:
        return st.text(min_size=1, max_size=12)
    if kind == FD.TYPE_ENUM:
        return st.sampled_from([v.number for v in field.enum_type.values])
    return _wild(field)


def _scalar(field: descriptor.FieldDescriptor) -> st.SearchStrategy[Any]:
    """Mostly plausible, one field in eight wild: most requests carry one odd value, so each
    check on the way is reached and probed."""
    plausible, wild = _plausible(field), _wild(field)
    return st.integers(0, 7).flatmap(lambda roll: wild if roll == 7 else plausible)


def _is_repeated(field: descriptor.FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def _is_map(field: descriptor.FieldDescriptor) -> bool:
    return field.type == FD.TYPE_MESSAGE and field.message_type.GetOptions().map_entry


def messages(desc: descriptor.Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Any instance of ``desc``: a random subset of its fields set to random values."""
    cls = _class_of(desc)
    if desc.full_name == "google.protobuf.Struct":
        return structs
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in desc.fields:
        if _is_map(field):
            # map<string, string> (ChatRequest.metadata): any keys and values, a few of them.
            fields[field.name] = st.dictionaries(
                st.text(max_size=80), st.text(max_size=600), max_size=20
            )
            continue
        if field.type == FD.TYPE_MESSAGE:
            if depth >= 4:
                continue
            value = messages(field.message_type, depth + 1)
        else:
            value = _scalar(field)
        fields[field.name] = st.lists(value, max_size=3) if _is_repeated(field) else value

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        out = cls()
        chosen = draw(st.sets(st.sampled_from(sorted(fields)), max_size=len(fields)))
        for name in sorted(chosen):
            value = draw(fields[name])
            field = desc.fields_by_name[name]
            if _is_map(field):
                getattr(out, name).update(value)
            elif _is_repeated(field):
                target = getattr(out, name)
                for item in value:
                    if field.type == FD.TYPE_MESSAGE:
                        target.add().CopyFrom(item)
                    else:
                        target.append(item)
            elif field.type == FD.TYPE_MESSAGE:
                getattr(out, name).CopyFrom(value)
            else:
                setattr(out, name, value)
        return out

    return build()


def _class_of(desc: descriptor.Descriptor) -> type[Message]:
    return message_factory.GetMessageClass(desc)


def user(text: str) -> types_pb2.Message:
    return types_pb2.Message(role=types_pb2.ROLE_USER, content=[types_pb2.ContentPart(text=text)])


@st.composite
def chat_requests(draw: st.DrawFn) -> chat_pb2.ChatRequest:
    """A random ChatRequest; three in four completed with what a request needs (a model, a
    message, a small ``max_tokens``) so that the checks after the first refusal are reached."""
    request = draw(messages(chat_pb2.ChatRequest.DESCRIPTOR))
    # Hypothesis favours small draws; the likelier branch goes on 0.
    if draw(st.integers(0, 3)) != 3:
        if not request.model:
            request.model = "demo/echo"
        if not request.messages:
            request.messages.append(user("hello"))
        if not request.HasField("max_tokens"):
            request.max_tokens = 64
    return request


@st.composite
def mangled_bytes(draw: st.DrawFn) -> bytes:
    """The bytes of a valid request, cut, with bytes flipped, spliced or inserted."""
    valid = bytearray(draw(chat_requests()).SerializeToString())
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "cut"]))
        at = draw(st.integers(0, max(len(valid) - 1, 0)))
        if op == "flip" and valid:
            valid[at] ^= draw(st.integers(1, 255))
        elif op == "insert":
            valid[at:at] = draw(st.binary(min_size=1, max_size=6))
        elif op == "delete" and valid:
            del valid[at : at + draw(st.integers(1, 4))]
        elif op == "cut":
            del valid[at:]
    return bytes(valid)


@pytest.fixture(scope="module")
def channel(demo_gateway: RunningGateway) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(demo_gateway.grpc_target) as ch:
        grpc.channel_ready_future(ch).result(timeout=10)
        yield ch


def _metadata(gw: RunningGateway) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {gw.master_key}"),)


def check_status(err: grpc.RpcError, sent: object) -> None:
    code = err.code()  # type: ignore[attr-defined]
    details = err.details() or ""  # type: ignore[attr-defined]
    assert code not in FORBIDDEN, f"{code} {details!r} for {sent!r}"
    assert "Traceback" not in details and "Exception" not in details, details
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None, f"{code} {details!r}: no google.rpc.Status details"
    reasons = [
        any_
        for any_ in status.details
        if any_.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)  # ErrorInfo says what it was
    ]
    assert reasons, f"{code} {details!r}: no ErrorInfo"


def _raw(channel: grpc.Channel, method: str, kind: str) -> Any:
    identity = (lambda b: b), (lambda b: b)
    path = f"/switchboard.v1.ChatService/{method}"
    return getattr(channel, kind)(path, *identity)


def call_chat(channel: grpc.Channel, gw: RunningGateway, body: bytes) -> None:
    try:
        reply = _raw(channel, "Chat", "unary_unary")(
            body, metadata=_metadata(gw), timeout=CALL_TIMEOUT
        )
        chat_pb2.ChatResponse.FromString(reply)  # an OK answer is a well-formed response
    except grpc.RpcError as err:
        check_status(err, body)


def call_stream(channel: grpc.Channel, gw: RunningGateway, body: bytes) -> None:
    frames = _raw(channel, "StreamChat", "unary_stream")(
        body, metadata=_metadata(gw), timeout=CALL_TIMEOUT
    )
    try:
        seen = [chat_pb2.StreamChatResponse.FromString(frame) for frame in frames]
        # A stream that ends OK ends with its end frame.
        assert seen and seen[-1].WhichOneof("frame") == "end", seen
    except grpc.RpcError as err:
        check_status(err, body)


@BOUNDED
@given(chat_requests())
def test_any_chat_request_gets_a_classified_answer(
    demo_gateway: RunningGateway, channel: grpc.Channel, request: chat_pb2.ChatRequest
) -> None:
    call_chat(channel, demo_gateway, request.SerializeToString())


@BOUNDED
@given(chat_requests())
def test_any_stream_request_gets_a_classified_answer(
    demo_gateway: RunningGateway, channel: grpc.Channel, request: chat_pb2.ChatRequest
) -> None:
    # Wrapped on the wire: a message class would re-parse (and refuse) a deep Struct here.
    body = length_delimited(1, request.SerializeToString())  # StreamChatRequest.chat
    call_stream(channel, demo_gateway, body)


@BOUNDED
@given(mangled_bytes())
def test_mangled_bytes_get_a_classified_answer(
    demo_gateway: RunningGateway, channel: grpc.Channel, body: bytes
) -> None:
    call_chat(channel, demo_gateway, body)


@settings(BOUNDED, max_examples=60)
@given(st.lists(messages(chat_pb2.ConverseRequest.DESCRIPTOR), min_size=0, max_size=4))
def test_any_converse_sequence_gets_a_classified_answer(
    demo_gateway: RunningGateway, channel: grpc.Channel, events: list[chat_pb2.ConverseRequest]
) -> None:
    """Starts, tool results at any point (before a start, unasked, twice), a second start,
    nothing at all; the client then half-closes. The server must end the call itself."""
    call = _raw(channel, "Converse", "stream_stream")(
        (event.SerializeToString() for event in events),
        metadata=_metadata(demo_gateway),
        timeout=CALL_TIMEOUT,
    )
    try:
        for frame in call:
            chat_pb2.ConverseResponse.FromString(frame)
    except grpc.RpcError as err:
        check_status(err, events)


@st.composite
def embed_requests(draw: st.DrawFn) -> chat_pb2.EmbedRequest:
    """A random EmbedRequest; three in four aimed at the demo embedding model."""
    request = draw(messages(chat_pb2.EmbedRequest.DESCRIPTOR))
    if draw(st.integers(0, 3)) != 3:
        request.model = request.model if request.model.startswith("demo/") else "demo/embed"
        if not request.inputs:
            request.inputs.add(text="hello")
    return request


@BOUNDED
@given(embed_requests())
def test_any_embed_request_gets_a_classified_answer(
    demo_gateway: RunningGateway, channel: grpc.Channel, request: chat_pb2.EmbedRequest
) -> None:
    try:
        reply = _raw(channel, "Embed", "unary_unary")(
            request.SerializeToString(), metadata=_metadata(demo_gateway), timeout=CALL_TIMEOUT
        )
        answer = chat_pb2.EmbedResponse.FromString(reply)
        assert len(answer.embeddings) == len(request.inputs)
    except grpc.RpcError as err:
        check_status(err, request)


@settings(BOUNDED, max_examples=40)
@given(texts)
def test_any_stored_response_id_gets_a_classified_answer(
    demo_gateway: RunningGateway, channel: grpc.Channel, response_id: str
) -> None:
    for method, message in (
        ("GetStoredResponse", chat_pb2.GetStoredResponseRequest(id=response_id)),
        ("DeleteStoredResponse", chat_pb2.DeleteStoredResponseRequest(id=response_id)),
    ):
        with pytest.raises(grpc.RpcError) as info:
            _raw(channel, method, "unary_unary")(
                message.SerializeToString(), metadata=_metadata(demo_gateway), timeout=CALL_TIMEOUT
            )
        assert info.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
        check_status(info.value, message)
