"""The in-process gateway helper: the same server served from the test's own event loop."""

from __future__ import annotations

import asyncio

import grpc.aio
import pytest
from switchboard_client import SwitchboardClient

from tests.fakes.openai_upstream import FakeOpenAI
from tests.support.server import running_gateway_in_process

PROVIDER_KEY = "sk-inprocess-0123456789abcdef"


async def test_in_process_gateway_serves_grpc_and_stops_cleanly() -> None:
    async with (
        FakeOpenAI(api_key=PROVIDER_KEY) as upstream,
        running_gateway_in_process(
            env={"OPENAI_API_KEY": PROVIDER_KEY, "OPENAI_BASE_URL": upstream.base_url}
        ) as gw,
    ):
        key = gw.create_key("in-process")
        async with SwitchboardClient(gw.grpc_target, key, timeout=10) as client:
            response = await client.chat(model="openai/gpt-4o-mini", messages=["in process"])
            assert response.message.content[0].text == "Fake reply to: in process"
            assert response.route.provider == "openai"
        assert (gw.data_dir / "ports.json").exists()
        target, data_dir = gw.grpc_target, gw.data_dir
    # Stopped: the port is closed and the helper removed its data dir.
    assert not data_dir.exists()
    async with grpc.aio.insecure_channel(target) as channel:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(channel.channel_ready(), 0.5)
