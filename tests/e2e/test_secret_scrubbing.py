"""An upstream that echoes the operator's provider key in every field of its errors, in every
form it might take: no caller (OpenAI and Anthropic dialects, gRPC, every error detail) and no
log line ever sees it."""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import httpx
import pytest
import pytest_asyncio
from google.rpc import status_pb2
from switchboard.v1 import chat_pb2, chat_pb2_grpc, types_pb2

from tests.fakes.openai_upstream import FakeOpenAI, Json, Raw
from tests.support.server import RunningGateway, running_gateway

KEY = "sk-proj-SecretProviderKey0123456789abcdefXYZ"
FORMS = {
    "raw": KEY,
    "url": urllib.parse.quote(KEY, safe=""),
    "base64": base64.b64encode(KEY.encode()).decode(),
    "base64url": base64.urlsafe_b64encode(KEY.encode()).decode().rstrip("="),
    "masked": KEY[:8] + "*" * 20 + KEY[-4:],
}
# Substrings of the key that are secret on their own (anything a reader could use).
NEEDLES = [KEY, KEY[8:30], *FORMS.values()]


def echoing_error(form: str, status: int) -> Json:
    text = FORMS[form]
    return Json(
        {
            "error": {
                "message": f"Incorrect API key provided: {text}. You can find your key at ...",
                "type": f"invalid_request_error {text}",
                "param": text,
                "code": text,
            }
        },
        status=status,
    )


def assert_clean(text: str | bytes, where: str) -> None:
    blob = text.decode("latin-1") if isinstance(text, bytes) else text
    for needle in NEEDLES:
        assert needle not in blob, f"{where} leaks {needle!r}: {blob[:500]}"


pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def setup() -> AsyncIterator[tuple[FakeOpenAI, RunningGateway]]:
    async with (
        FakeOpenAI() as upstream,
        running_gateway(
            env={"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": upstream.base_url},
            config={"retry": {"max_attempts_per_deployment": 1}},
        ) as gw,
    ):
        yield upstream, gw


STATUSES = [400, 401, 403, 404, 422, 429, 500]


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("status", STATUSES)
async def test_no_transport_shows_the_key(
    setup: tuple[FakeOpenAI, RunningGateway], form: str, status: int
) -> None:
    upstream, gw = setup
    upstream.clear()
    headers = {"authorization": f"Bearer {gw.master_key}"}
    # A model of its own per case: a refused key trips that deployment's key circuit, which
    # must not keep the next case from reaching the upstream.
    model = f"openai/m-{status}-{form}"
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(base_url=gw.http_url, timeout=10) as http:
        upstream.script(echoing_error(form, status))
        r = await http.post("/v1/chat/completions", json=body, headers=headers)
        assert r.status_code >= 400
        assert_clean(r.content, "OpenAI dialect body")
        assert_clean(str(r.headers), "OpenAI dialect headers")
        upstream.script(echoing_error(form, status))
        r = await http.post(
            "/v1/messages", json={**body, "model": model + "-a", "max_tokens": 5}, headers=headers
        )
        assert r.status_code >= 400
        assert_clean(r.content, "Anthropic dialect body")
    upstream.script(echoing_error(form, status))
    async with grpc.aio.insecure_channel(gw.grpc_target) as channel:
        request = chat_pb2.ChatRequest(
            model=model + "-g",
            messages=[
                types_pb2.Message(
                    role=types_pb2.ROLE_USER, content=[types_pb2.ContentPart(text="hi")]
                )
            ],
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await chat_pb2_grpc.ChatServiceStub(channel).Chat(
                request, metadata=(("authorization", f"Bearer {gw.master_key}"),), timeout=10
            )
    err = info.value
    assert len(upstream.requests) == 3  # every transport reached the upstream's error
    assert_clean(err.details() or "", "gRPC status message")
    for name, value in err.trailing_metadata() or ():
        assert_clean(value if isinstance(value, bytes) else str(value), f"gRPC trailer {name}")
        if name == "grpc-status-details-bin":
            details = status_pb2.Status.FromString(value)
            for any_detail in details.details:
                assert_clean(any_detail.value, f"gRPC detail {any_detail.type_url}")


async def test_an_error_event_inside_a_stream_is_scrubbed(
    setup: tuple[FakeOpenAI, RunningGateway],
) -> None:
    upstream, gw = setup
    event = (
        b'data: {"error": {"message": "key ' + KEY.encode() + b' was revoked", "code": "x"}}\n\n'
    )
    upstream.script(Raw(event))
    body = {
        "model": "openai/gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
    }
    async with httpx.AsyncClient(base_url=gw.http_url, timeout=10) as http:
        r = await http.post(
            "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {gw.master_key}"}
        )
    assert_clean(r.content, "stream error")


async def test_the_log_never_shows_the_key(setup: tuple[FakeOpenAI, RunningGateway]) -> None:
    _, gw = setup
    assert_clean(gw.output(), "gateway log")
