"""AdminService (gateway keys) through the generated stubs against a real gateway process."""

from __future__ import annotations

import grpc
import grpc.aio
import pytest
from switchboard.v1 import admin_pb2, admin_pb2_grpc, chat_pb2, chat_pb2_grpc, types_pb2
from switchboard_client import SwitchboardError

from tests.support.server import RunningGateway


def _auth(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


def _chat_request() -> chat_pb2.ChatRequest:
    return chat_pb2.ChatRequest(
        model="demo/echo",
        messages=[
            types_pb2.Message(role=types_pb2.ROLE_USER, content=[types_pb2.ContentPart(text="hi")])
        ],
    )


async def _error(call: object) -> SwitchboardError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    return SwitchboardError.from_rpc_error(info.value)


async def test_create_list_revoke_and_revoked_key_is_rejected_at_once(
    demo_gateway: RunningGateway, demo_channel: grpc.aio.Channel
) -> None:
    admin = admin_pb2_grpc.AdminServiceStub(demo_channel)
    chat = chat_pb2_grpc.ChatServiceStub(demo_channel)
    master = _auth(demo_gateway.master_key)

    limits = admin_pb2.KeyLimits(requests_per_minute=60)
    created = await admin.CreateKey(
        admin_pb2.CreateKeyRequest(name="billing-service", limits=limits), metadata=master
    )
    secret, key = created.secret, created.key
    assert secret.startswith("sb-") and len(secret) > 40
    assert key.id.startswith("key_") and key.name == "billing-service"
    assert secret.startswith(key.prefix) and len(key.prefix) < 16
    assert key.create_time.seconds > 0 and not key.revoked
    assert key.limits.requests_per_minute == 60 and not key.limits.HasField("tokens_per_minute")

    response = await chat.Chat(_chat_request(), metadata=_auth(secret))
    assert response.message.content[0].text == "Echo: hi"

    listed = await admin.ListKeys(admin_pb2.ListKeysRequest(), metadata=master)
    assert key.id in {k.id for k in listed.keys}
    assert secret not in str(listed)

    revoked = await admin.RevokeKey(admin_pb2.RevokeKeyRequest(id=key.id), metadata=master)
    assert revoked.key.revoked and revoked.key.revoke_time.seconds > 0

    err = await _error(chat.Chat(_chat_request(), metadata=_auth(secret)))
    assert err.code == grpc.StatusCode.UNAUTHENTICATED

    active = await admin.ListKeys(admin_pb2.ListKeysRequest(), metadata=master)
    assert key.id not in {k.id for k in active.keys}
    everything = await admin.ListKeys(
        admin_pb2.ListKeysRequest(include_revoked=True), metadata=master
    )
    assert [k.revoked for k in everything.keys if k.id == key.id] == [True]


async def test_admin_needs_the_master_key(
    demo_gateway: RunningGateway, demo_channel: grpc.aio.Channel
) -> None:
    admin = admin_pb2_grpc.AdminServiceStub(demo_channel)
    ordinary = demo_gateway.create_key("ordinary")
    err = await _error(
        admin.CreateKey(admin_pb2.CreateKeyRequest(name="x"), metadata=_auth(ordinary))
    )
    assert err.code == grpc.StatusCode.PERMISSION_DENIED
    assert err.reason == "PERMISSION_DENIED"
    err = await _error(admin.ListKeys(admin_pb2.ListKeysRequest()))
    assert err.code == grpc.StatusCode.UNAUTHENTICATED


async def test_admin_validation_and_unknown_id(
    demo_gateway: RunningGateway, demo_channel: grpc.aio.Channel
) -> None:
    admin = admin_pb2_grpc.AdminServiceStub(demo_channel)
    master = _auth(demo_gateway.master_key)
    err = await _error(admin.CreateKey(admin_pb2.CreateKeyRequest(name="  "), metadata=master))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in err.field_violations] == ["name"]
    err = await _error(
        admin.CreateKey(
            admin_pb2.CreateKeyRequest(name="x", limits=admin_pb2.KeyLimits(monthly_budget_usd=-1)),
            metadata=master,
        )
    )
    assert [v.field for v in err.field_violations] == ["limits.monthly_budget_usd"]
    err = await _error(admin.RevokeKey(admin_pb2.RevokeKeyRequest(id="key_nope"), metadata=master))
    assert err.code == grpc.StatusCode.NOT_FOUND and "key_nope" in err.message
