"""ChatService through the generated stubs against a real gateway process (demo provider)."""

from __future__ import annotations

import grpc
import grpc.aio
import httpx
import orjson
import pytest
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from switchboard.v1 import admin_pb2, admin_pb2_grpc, chat_pb2, chat_pb2_grpc, types_pb2
from switchboard_client import SwitchboardError

from server.core.errors import ERROR_DOMAIN
from tests.support.server import RunningGateway

DEMO = "demo/echo"


def _auth(key: str, **extra: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"), *extra.items())


def _user(text: str) -> types_pb2.Message:
    return types_pb2.Message(role=types_pb2.ROLE_USER, content=[types_pb2.ContentPart(text=text)])


def _request(text: str = "hello gateway", **fields: object) -> chat_pb2.ChatRequest:
    return chat_pb2.ChatRequest(model=DEMO, messages=[_user(text)], **fields)  # type: ignore[arg-type]


async def _error(call: object) -> SwitchboardError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    return SwitchboardError.from_rpc_error(info.value)


async def test_chat_answers_with_usage_route_and_request_id(
    demo_gateway: RunningGateway, demo_channel: grpc.aio.Channel
) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(demo_channel)
    call = stub.Chat(_request("hello gateway"), metadata=_auth(demo_gateway.master_key))
    response = await call
    assert [p.text for p in response.message.content] == ["Echo: hello gateway"]
    assert response.message.role == types_pb2.ROLE_ASSISTANT
    assert response.finish_reason == types_pb2.FINISH_REASON_STOP
    assert response.usage.input_tokens == 2 and response.usage.output_tokens == 3
    assert response.model == DEMO
    assert response.route.provider == "demo" and response.route.model == "echo"
    assert [a.outcome for a in response.route.attempts] == [types_pb2.ATTEMPT_OUTCOME_SUCCESS]
    trailing = dict(await call.trailing_metadata())
    assert len(trailing["x-request-id"]) == 24
    assert response.id == trailing["x-request-id"]


async def test_caller_request_id_is_echoed(
    demo_gateway: RunningGateway, demo_channel: grpc.aio.Channel
) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(demo_channel)
    call = stub.Chat(
        _request(), metadata=_auth(demo_gateway.master_key, **{"x-request-id": "trace-42"})
    )
    response = await call
    assert response.id == "trace-42"
    assert dict(await call.trailing_metadata())["x-request-id"] == "trace-42"


async def test_stream_chat_frames_start_deltas_end(
    demo_gateway: RunningGateway, demo_channel: grpc.aio.Channel
) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(demo_channel)
    request = chat_pb2.StreamChatRequest(chat=_request("one two three"))
    frames = [f async for f in stub.StreamChat(request, metadata=_auth(demo_gateway.master_key))]
    kinds = [f.WhichOneof("frame") for f in frames]
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert set(kinds[1:-1]) == {"text"} and len(kinds) > 3
    assert "".join(f.text.text for f in frames[1:-1]) == "Echo: one two three"
    start, end = frames[0].start, frames[-1].end
    assert start.id == end.id and len(start.id) == 24
    assert start.route.provider == "demo" and start.model == DEMO
    assert end.finish_reason == types_pb2.FINISH_REASON_STOP
    assert end.usage.input_tokens == 3 and end.usage.output_tokens == 4
    assert end.HasField("cost") and end.cost.total_usd == 0.0
    assert end.route.provider == "demo" and end.route.deployment == DEMO


async def test_tool_call_round_trip(
    demo_gateway: RunningGateway, demo_channel: grpc.aio.Channel
) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(demo_channel)
    params = struct_pb2.Struct()
    params.update(
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    )
    tool = types_pb2.Tool(name="get_weather", description="Weather", parameters=params)
    first = await stub.Chat(
        _request("Paris", tools=[tool]), metadata=_auth(demo_gateway.master_key)
    )
    assert first.finish_reason == types_pb2.FINISH_REASON_TOOL_CALLS
    (part,) = first.message.content
    call = part.tool_call
    assert call.name == "get_weather" and call.id
    assert orjson.loads(call.arguments) == {"city": "Paris"}

    result = types_pb2.ToolResult(tool_call_id=call.id, content="sunny, 21 C")
    second = await stub.Chat(
        chat_pb2.ChatRequest(
            model=DEMO,
            tools=[tool],
            messages=[
                _user("Paris"),
                first.message,
                types_pb2.Message(
                    role=types_pb2.ROLE_TOOL, content=[types_pb2.ContentPart(tool_result=result)]
                ),
            ],
        ),
        metadata=_auth(demo_gateway.master_key),
    )
    assert second.finish_reason == types_pb2.FINISH_REASON_STOP
    assert second.message.content[0].text == "The tool get_weather returned: sunny, 21 C"


async def test_json_mode(demo_gateway: RunningGateway, demo_channel: grpc.aio.Channel) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(demo_channel)
    fmt = types_pb2.ResponseFormat(type=types_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT)
    response = await stub.Chat(
        _request("as json", response_format=fmt), metadata=_auth(demo_gateway.master_key)
    )
    assert orjson.loads(response.message.content[0].text) == {"echo": "Echo: as json"}


async def test_list_models_includes_demo(
    demo_gateway: RunningGateway, demo_channel: grpc.aio.Channel
) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(demo_channel)
    response = await stub.ListModels(
        chat_pb2.ListModelsRequest(), metadata=_auth(demo_gateway.master_key)
    )
    demo = [m for m in response.models if m.id == DEMO]
    assert demo and demo[0].demo and demo[0].provider == "demo"


async def test_unknown_model_is_not_found_with_error_info(
    demo_gateway: RunningGateway, demo_channel: grpc.aio.Channel
) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(demo_channel)
    request = chat_pb2.ChatRequest(model="nope/unknown-model", messages=[_user("hi")])
    err = await _error(stub.Chat(request, metadata=_auth(demo_gateway.master_key)))
    assert err.code == grpc.StatusCode.NOT_FOUND
    assert err.reason == "MODEL_NOT_FOUND" and err.domain == ERROR_DOMAIN
    assert "nope/unknown-model" in err.message
    assert err.request_id and err.metadata["request_id"] == err.request_id


@pytest.mark.parametrize("key", [None, "sb-not-a-real-key", "Basic abc"])
async def test_missing_or_bad_key_is_unauthenticated(
    demo_channel: grpc.aio.Channel, key: str | None
) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(demo_channel)
    metadata = () if key is None else (("authorization", key if " " in key else f"Bearer {key}"),)
    err = await _error(stub.Chat(_request(), metadata=metadata))
    assert err.code == grpc.StatusCode.UNAUTHENTICATED
    assert err.reason == "INVALID_API_KEY" and err.domain == ERROR_DOMAIN
    assert err.request_id
    stream = stub.StreamChat(chat_pb2.StreamChatRequest(chat=_request()), metadata=metadata)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in stream:
            pass
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_invalid_request_has_bad_request_details(
    demo_gateway: RunningGateway, demo_channel: grpc.aio.Channel
) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(demo_channel)
    bad = chat_pb2.ChatRequest(model=DEMO, temperature=3.5)
    err = await _error(stub.Chat(bad, metadata=_auth(demo_gateway.master_key)))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.reason == "INVALID_REQUEST"
    fields = {v.field for v in err.field_violations}
    assert fields == {"messages", "temperature"}

    stream = stub.StreamChat(
        chat_pb2.StreamChatRequest(chat=bad), metadata=_auth(demo_gateway.master_key)
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in stream:
            pass
    streamed = SwitchboardError.from_rpc_error(info.value)
    assert streamed.code == grpc.StatusCode.INVALID_ARGUMENT
    assert {v.field for v in streamed.field_violations} == {"chat.messages", "chat.temperature"}


async def test_health_is_serving_without_a_key(demo_channel: grpc.aio.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(demo_channel)
    for service in ("", "switchboard.v1.ChatService"):
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service))
        assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_services_without_a_key(demo_channel: grpc.aio.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(demo_channel)
    responses = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = {s.name async for r in responses for s in r.list_services_response.service}
    assert {"switchboard.v1.ChatService", "switchboard.v1.AdminService"} <= names
    assert "grpc.health.v1.Health" in names


async def test_reflection_v1_lists_and_describes_services(demo_channel: grpc.aio.Channel) -> None:
    # grpc.reflection.v1 is the same messages as v1alpha under another package.
    call = demo_channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="switchboard.v1.ChatService"),
        reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="grpc.reflection.v1.ServerReflection"
        ),
    ]
    answers = [r async for r in call(iter(requests))]
    names = {s.name for s in answers[0].list_services_response.service}
    assert {"switchboard.v1.ChatService", "grpc.reflection.v1.ServerReflection"} <= names
    assert "grpc.reflection.v1alpha.ServerReflection" in names
    chat_files = answers[1].file_descriptor_response.file_descriptor_proto
    assert chat_files and not answers[1].HasField("error_response")
    v1_files = answers[2].file_descriptor_response.file_descriptor_proto
    assert v1_files and b"grpc.reflection.v1" in v1_files[0]


async def test_http_shim_in_the_same_process_shares_keys(
    demo_gateway: RunningGateway, demo_channel: grpc.aio.Channel
) -> None:
    admin = admin_pb2_grpc.AdminServiceStub(demo_channel)
    created = await admin.CreateKey(
        admin_pb2.CreateKeyRequest(name="http-user"), metadata=_auth(demo_gateway.master_key)
    )
    async with httpx.AsyncClient(base_url=demo_gateway.http_url, timeout=10) as http:
        assert (await http.get("/healthz")).status_code == 200
        body = {"model": DEMO, "messages": [{"role": "user", "content": "via http"}]}
        ok = await http.post(
            "/v1/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {created.secret}"},
        )
        assert ok.status_code == 200, ok.text
        assert ok.json()["choices"][0]["message"]["content"] == "Echo: via http"
        await admin.RevokeKey(
            admin_pb2.RevokeKeyRequest(id=created.key.id), metadata=_auth(demo_gateway.master_key)
        )
        refused = await http.post(
            "/v1/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {created.secret}"},
        )
        assert refused.status_code == 401
