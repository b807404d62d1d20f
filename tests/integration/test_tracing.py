"""OpenTelemetry traces from a running gateway to a real OTLP receiver on loopback (gRPC and
HTTP/protobuf): the span tree (one SERVER span per request, one CLIENT span per upstream
attempt), GenAI and Switchboard attributes, the caller's traceparent continued (HTTP header and
gRPC metadata) and passed on to the upstream, and no prompt text or secret in any attribute."""

from __future__ import annotations

import os

import grpc.aio
import openai
import pytest
from switchboard.v1 import chat_pb2, chat_pb2_grpc, types_pb2

from tests.fakes.openai_upstream import FakeOpenAI, Reply, Status, Usage
from tests.fakes.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.integration.test_limits import new_key
from tests.support.server import running_gateway

MODEL = "openai/gpt-4o-mini"
UPSTREAM_KEY = "sk-tracing-upstream-0123456789abcdef"
CONFIG = {
    "deployments": [
        {"provider": "openai", "model": "gpt-4o-mini", "price": {"input": 1.0, "output": 2.0}}
    ],
    "retry": {"initial_delay": 0.01, "max_delay": 0.02},
    "logging": {"requests": False},
}
# Words that appear only in prompts: no span attribute may carry them.
PROMPT_SECRET = "zanzibar-quokka-7731"
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


def _children(spans: list[ReceivedSpan], parent: ReceivedSpan) -> list[ReceivedSpan]:
    return sorted(
        (s for s in spans if s.parent_span_id == parent.span_id), key=lambda s: s.start_ns
    )


def _assert_nothing_private(spans: list[ReceivedSpan], *secrets: str) -> None:
    for span in spans:
        for name, value in span.attributes.items():
            for secret in (PROMPT_SECRET, *secrets):
                assert secret not in str(value), f"{span.name}: {name} carries {secret!r}"


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
async def test_spans_reach_an_otlp_receiver_and_continue_the_callers_trace(
    protocol: str,
) -> None:
    async with OtlpReceiver(protocol) as otlp, FakeOpenAI() as up:
        env = {
            "OPENAI_API_KEY": UPSTREAM_KEY,
            "OPENAI_BASE_URL": up.base_url,
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "OTEL_SERVICE_NAME": "switchboard-under-test",
            # Export within 50 ms rather than the default 5 s.
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        }
        async with running_gateway(env=env, config=CONFIG) as gw:
            key = new_key(gw, "traced")
            # --- HTTP: the first attempt fails (500) and is retried -------------------------
            up.script(Status(500, "try again"), Reply(text="Paris.", usage=Usage(11, 2)))
            client = openai.AsyncOpenAI(
                api_key=key.secret, base_url=f"{gw.http_url}/v1", max_retries=0
            )
            raw = await client.chat.completions.with_raw_response.create(
                model=MODEL,
                messages=[{"role": "user", "content": f"Capital of France? {PROMPT_SECRET}"}],
                temperature=0.1,
                extra_headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"},
            )
            request_id = raw.headers["x-request-id"]
            spans = await otlp.wait_for(lambda s: sum(x.trace_id == CALLER_TRACE for x in s) >= 3)
            mine = [s for s in spans if s.trace_id == CALLER_TRACE]
            (server,) = [s for s in mine if s.is_server]
            assert server.parent_span_id == CALLER_SPAN, "the caller's trace is continued"
            assert server.name == f"chat {MODEL}"
            assert server.resource["service.name"] == "switchboard-under-test"
            a = server.attributes
            assert a["gen_ai.operation.name"] == "chat"
            assert a["gen_ai.request.model"] == MODEL
            assert a["gen_ai.request.temperature"] == 0.1
            assert a["gen_ai.provider.name"] == "openai"
            assert a["gen_ai.response.model"] == "gpt-4o-mini"
            assert a["gen_ai.usage.input_tokens"] == 11
            assert a["gen_ai.usage.output_tokens"] == 2
            assert a["gen_ai.response.finish_reasons"] == ("stop",)
            assert a["switchboard.route"] == MODEL
            assert a["switchboard.strategy"] == "ordered"
            assert a["switchboard.request_id"] == request_id
            assert a["switchboard.key_id"] == key.id
            assert a["switchboard.attempts"] == 2
            assert a["switchboard.retries"] == 1
            assert a["switchboard.cost_usd"] == pytest.approx((11 * 1.0 + 2 * 2.0) / 1e6)
            assert a["switchboard.outcome"] == "success"
            failed, succeeded = _children(mine, server)
            assert failed.is_client and succeeded.is_client
            assert failed.name == succeeded.name == "chat gpt-4o-mini"
            assert failed.attributes["switchboard.attempt.outcome"] == "server_error"
            assert failed.attributes["http.response.status_code"] == 500
            assert failed.attributes["switchboard.retry_delay_s"] >= 0.0
            assert failed.status_code == 2  # STATUS_CODE_ERROR
            assert succeeded.attributes["switchboard.attempt.outcome"] == "success"
            assert succeeded.attributes["gen_ai.provider.name"] == "openai"
            assert succeeded.attributes["gen_ai.response.model"] == "gpt-4o-mini"
            # The upstream saw each attempt's own span as its parent, in the caller's trace.
            sent = [r.headers["traceparent"] for r in up.requests]
            assert sent == [
                f"00-{CALLER_TRACE}-{failed.span_id}-01",
                f"00-{CALLER_TRACE}-{succeeded.span_id}-01",
            ]
            # --- gRPC: metadata carries the traceparent; a stream too -----------------------
            grpc_trace = "0af7651916cd43dd8448eb211c80319c"
            grpc_parent = "b7ad6b7169203331"
            metadata = (
                ("authorization", f"Bearer {key.secret}"),
                ("traceparent", f"00-{grpc_trace}-{grpc_parent}-01"),
            )
            request = chat_pb2.ChatRequest(
                model=MODEL,
                messages=[
                    types_pb2.Message(
                        role=types_pb2.ROLE_USER,
                        content=[types_pb2.ContentPart(text=f"Stream it {PROMPT_SECRET}")],
                    )
                ],
            )
            async with grpc.aio.insecure_channel(gw.grpc_target) as channel:
                stub = chat_pb2_grpc.ChatServiceStub(channel)
                frames = [
                    f
                    async for f in stub.StreamChat(
                        chat_pb2.StreamChatRequest(chat=request), metadata=metadata
                    )
                ]
            assert frames[-1].WhichOneof("frame") == "end"
            spans = await otlp.wait_for(lambda s: sum(x.trace_id == grpc_trace for x in s) >= 2)
            streamed = [s for s in spans if s.trace_id == grpc_trace]
            (server,) = [s for s in streamed if s.is_server]
            assert server.parent_span_id == grpc_parent
            assert server.attributes["switchboard.transport"] == "grpc"
            assert server.attributes["switchboard.stream"] is True
            assert server.attributes["gen_ai.usage.output_tokens"] > 0
            (attempt,) = _children(streamed, server)
            assert attempt.attributes["switchboard.attempt.outcome"] == "success"
            assert up.requests[-1].headers["traceparent"].split("-")[1] == grpc_trace
            # --- no caller trace: a new one, still passed on ---------------------------------
            await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "untraced caller"}]
            )
            fresh = up.requests[-1].headers["traceparent"].split("-")[1]
            assert fresh not in (CALLER_TRACE, grpc_trace)
            spans = await otlp.wait_for(lambda s: any(x.trace_id == fresh for x in s))
            _assert_nothing_private(spans, key.secret, UPSTREAM_KEY, gw.master_key)
            assert f"tracing on: OTLP {protocol}" in gw.output()


async def test_tracing_is_off_by_default_and_sends_no_traceparent() -> None:
    async with FakeOpenAI() as up:
        env = {"OPENAI_API_KEY": UPSTREAM_KEY, "OPENAI_BASE_URL": up.base_url}
        assert not any(k.startswith("OTEL_EXPORTER") for k in os.environ), (
            "this test needs an environment without OTEL_EXPORTER_* variables"
        )
        async with running_gateway(env=env, config=CONFIG) as gw:
            client = openai.AsyncOpenAI(
                api_key=gw.create_key("plain"), base_url=f"{gw.http_url}/v1", max_retries=0
            )
            await client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "hello"}],
                extra_headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"},
            )
            assert "traceparent" not in up.requests[-1].headers
            assert "tracing on" not in gw.output()
