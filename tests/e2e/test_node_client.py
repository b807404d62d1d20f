"""The Node client (``clients/node``) against a real gateway process.

One gateway (``python -m server serve``, ``tests/support/server.py``) serves the offline
``demo/echo`` model and two loopback fake upstreams (``FakeOpenAI``, real aiohttp servers): the
``openai`` provider, which answers every request 429 with ``retry-after-ms: 7250`` (the
RetryInfo case), and a ``slow`` OpenAI-compatible provider that waits 30 s before answering
(deadlines and cancellation). Against it:

- ``node --test`` runs the client's own suite (``clients/node/test/*.test.js``: every RPC of
  ChatService and AdminService, a Converse tool round trip, errors with ErrorInfo, RetryInfo,
  QuotaFailure and BadRequest, the request id, deadlines, AbortSignal). It must pass with no
  test failed, cancelled, skipped or todo.
- ``node example.js`` prints models, a chat and a stream as proto3 JSON, which must equal what
  the Python client decodes from the same gateway (``MessageToDict``).

Needs ``node`` and ``npm`` (skips without them, unless ``SWITCHBOARD_REQUIRE_NODE=1``, as in
CI, makes that a failure); installs ``clients/node/node_modules`` with ``npm ci`` when absent.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
import pytest_asyncio
from google.protobuf.json_format import MessageToDict
from switchboard_client import SwitchboardClient

from tests.fakes.common import Delay, Status
from tests.fakes.openai_upstream import FakeOpenAI
from tests.support.server import REPO_ROOT, running_gateway

pytestmark = pytest.mark.asyncio(loop_scope="module")

NODE_DIR = REPO_ROOT / "clients" / "node"
NPM_CI_TIMEOUT = 300.0
NODE_SUITE_TIMEOUT = 240.0
NODE_TIMEOUT = 60.0
# What the client imports at run time; a partial node_modules is reinstalled.
NODE_DEPS = ("@grpc/grpc-js", "@bufbuild/protobuf")
DEMO_MODEL = "demo/echo"
RATE_LIMITED_MODEL = "openai/gpt-4o-mini"
SLOW_MODEL = "slow/any-model"
UPSTREAM_KEY = "sk-upstream-node-0123456789"
CONFIG: dict[str, Any] = {
    # max_retry_after: an upstream delay over 1 s fails the call with it rather than waiting.
    "retry": {"max_attempts_per_deployment": 1, "initial_delay": 0, "max_retry_after": 1},
    "circuit": {"consecutive_failures": 1000, "min_requests": 1000},
}
TAP_COUNT = re.compile(r"^# (tests|pass|fail|cancelled|skipped|todo) (\d+)$", re.M)


@dataclass
class Stack:
    """The running gateway, its keys, and the fake upstreams behind it."""

    target: str
    key: str
    master_key: str
    limited: FakeOpenAI
    slow: FakeOpenAI
    node: str


def _node_tools() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        reason = "node and npm must be on PATH to test clients/node"
        if os.environ.get("SWITCHBOARD_REQUIRE_NODE") == "1":
            pytest.fail(reason + "; SWITCHBOARD_REQUIRE_NODE=1 requires them")
        pytest.skip(reason)
    return node, npm


def _ensure_node_modules(npm: str) -> None:
    if all((NODE_DIR / "node_modules" / dep / "package.json").is_file() for dep in NODE_DEPS):
        return
    command = [npm, "ci", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund"]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=NPM_CI_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"`{' '.join(command)}` did not finish within {NPM_CI_TIMEOUT:.0f}s")
    if done.returncode != 0:
        pytest.fail(f"`{' '.join(command)}` failed ({done.returncode}):\n{done.stderr[-4000:]}")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack() -> AsyncIterator[Stack]:
    node, npm = _node_tools()
    await asyncio.to_thread(_ensure_node_modules, npm)
    limited_reply = Status(
        429, headers={"retry-after-ms": "7250", "retry-after": "8"}, code="rate_limit_exceeded"
    )
    async with (
        FakeOpenAI(api_key=UPSTREAM_KEY, default=limited_reply) as limited,
        FakeOpenAI(api_key=UPSTREAM_KEY, default=Delay(30.0)) as slow,
    ):
        env = {
            "OPENAI_API_KEY": UPSTREAM_KEY,
            "OPENAI_BASE_URL": limited.base_url,
            "SLOW_API_KEY": UPSTREAM_KEY,
        }
        provider = {"name": "slow", "base_url": slow.base_url, "api_key_env": "SLOW_API_KEY"}
        config = {**CONFIG, "providers": [provider]}
        async with running_gateway(env=env, config=config) as gw:
            yield Stack(
                gw.grpc_target, gw.create_key("node-client"), gw.master_key, limited, slow, node
            )


async def _run(
    command: list[str], env: dict[str, str], limit: float
) -> tuple[int | None, str, str]:
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=NODE_DIR,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), limit)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"{command} did not finish within {limit:.0f}s") from None
    return process.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def _node_env(gw: Stack, key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.update(
        SWITCHBOARD_GRPC_TARGET=gw.target,
        SWITCHBOARD_API_KEY=key,
        SWITCHBOARD_MASTER_KEY=gw.master_key,
        SWITCHBOARD_TEST_RATE_LIMITED_MODEL=RATE_LIMITED_MODEL,
        SWITCHBOARD_TEST_SLOW_MODEL=SLOW_MODEL,
    )
    return env


async def test_the_node_test_suite_passes(stack: Stack) -> None:
    files = sorted(str(p.relative_to(NODE_DIR)) for p in (NODE_DIR / "test").glob("*.test.js"))
    assert len(files) >= 5, files
    command = [stack.node, "--test", "--test-reporter=tap", *files]
    code, out, err = await _run(command, _node_env(stack, stack.key), NODE_SUITE_TIMEOUT)
    counts = {name: int(n) for name, n in TAP_COUNT.findall(out)}
    report = f"node --test exited {code}: {counts}\n{out[-12000:]}\n--- stderr\n{err[-4000:]}"
    assert code == 0, report
    assert counts.get("tests", 0) >= 25 and counts["pass"] == counts["tests"], report
    assert all(counts[n] == 0 for n in ("fail", "cancelled", "skipped", "todo")), report
    # The RetryInfo case really went upstream, as did the deadline cases.
    assert len(stack.limited.requests) == 1, report
    assert len(stack.slow.requests) >= 1, report


async def test_example_output_equals_the_python_clients_decoding(stack: Stack) -> None:
    prompt = f"node says hi {uuid.uuid4().hex[:8]}"
    async with SwitchboardClient(stack.target, stack.key) as py:
        # Listed before any chat: the catalog's listing can grow once a deployment is used.
        expected_models = [MessageToDict(m) for m in await py.list_models()]
        env = {**_node_env(stack, stack.key), "SWITCHBOARD_MODEL": DEMO_MODEL}
        code, out, err = await _run([stack.node, "example.js", prompt], env, NODE_TIMEOUT)
        assert code == 0, f"{out}\n{err}"
        expected = await py.chat(model=DEMO_MODEL, messages=[prompt], max_tokens=64)
        frames = [
            MessageToDict(f) async for f in py.stream_chat(model=DEMO_MODEL, messages=[prompt])
        ]
    lines = [orjson.loads(line) for line in out.splitlines() if line.strip()]
    kinds = [line["kind"] for line in lines]
    assert kinds[:2] == ["models", "chat"] and set(kinds[2:]) == {"frame"}, kinds

    # The same catalog, byte for byte the same JSON from both clients (prices included).
    assert lines[0]["models"] == expected_models
    assert any(m["provider"] == "openai" and m.get("pricing") for m in expected_models)

    # The same answer: equal except for what identifies the request (id, created).
    def anonymous(message: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in message.items() if k not in ("id", "created")}
        for attempt in out["route"]["attempts"]:
            attempt.pop("latencyMs", None)
        return out

    chat = lines[1]["response"]
    assert lines[1]["text"] == f"Echo: {prompt}"
    assert anonymous(chat) == anonymous(MessageToDict(expected))
    node_frames = [line["frame"] for line in lines[2:]]
    assert [list(f) for f in node_frames] == [list(f) for f in frames]
    assert node_frames[1:-1] == frames[1:-1]  # the text deltas
    assert anonymous(node_frames[-1]["end"]) == anonymous(frames[-1]["end"])
