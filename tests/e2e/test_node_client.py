"""The Node client (``clients/node``, @grpc/grpc-js) against a real gateway process.

``node clients/node/example.js`` (chat, stream, list models) and ``clients/node/test/errors.js``
(failing calls, one JSON line per case) run as subprocesses against ``python -m server serve``
(``tests/support/server.py``) on 127.0.0.1. The gateway serves the offline ``demo/echo`` model
and an ``openai`` deployment pointed at ``FakeOpenAI`` (a real aiohttp server) for the
rate-limit case. Answers are cross-checked against the Python client on the same gateway.
Skips when ``node``/``npm`` are missing; installs ``clients/node/node_modules`` with ``npm ci``
when absent (bounded; a failed install fails the test rather than hiding it).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
import pytest_asyncio
from switchboard_client import SwitchboardClient

from tests.fakes.common import Status
from tests.fakes.openai_upstream import FakeOpenAI
from tests.support.server import REPO_ROOT, running_gateway

pytestmark = pytest.mark.asyncio(loop_scope="module")

NODE_DIR = REPO_ROOT / "clients" / "node"
NPM_CI_TIMEOUT = 180.0
NODE_TIMEOUT = 60.0
# What index.js requires; a partial node_modules is reinstalled.
NODE_DEPS = ("@grpc/grpc-js", "@grpc/proto-loader", "protobufjs")
DEMO_MODEL = "demo/echo"
OPENAI_MODEL = "openai/gpt-4o-mini"
UPSTREAM_KEY = "sk-upstream-node-0123456789"
CONFIG: dict[str, Any] = {
    "retry": {"max_attempts_per_deployment": 1, "initial_delay": 0},
    "circuit": {"consecutive_failures": 1000, "min_requests": 1000},
}


@dataclass
class Stack:
    """The running gateway, a key for it, and the fake OpenAI upstream behind it."""

    target: str
    key: str
    up: FakeOpenAI
    node: str


def _node_tools() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm must be on PATH to test clients/node")
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
    async with FakeOpenAI(api_key=UPSTREAM_KEY) as up:
        env = {"OPENAI_API_KEY": UPSTREAM_KEY, "OPENAI_BASE_URL": up.base_url}
        async with running_gateway(env=env, config=CONFIG) as gw:
            yield Stack(gw.grpc_target, gw.create_key("node-client"), up, node)


@pytest.fixture
def gw(stack: Stack) -> Stack:
    stack.up.clear()
    return stack


async def run_node(gw: Stack, script: str, *args: str, key: str | None = None) -> list[Any]:
    """Runs a script from clients/node; returns its stdout's JSON lines (fails on exit != 0)."""
    env = {**os.environ, "SWITCHBOARD_GRPC_TARGET": gw.target}
    env.pop("SWITCHBOARD_MODEL", None)
    if key is not None:
        env["SWITCHBOARD_API_KEY"] = key
    process = await asyncio.create_subprocess_exec(
        gw.node,
        str(NODE_DIR / script),
        *args,
        cwd=NODE_DIR,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), NODE_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"node {script} did not finish within {NODE_TIMEOUT:.0f}s") from None
    assert process.returncode == 0, f"node {script} exited {process.returncode}:\n{out!r}\n{err!r}"
    return [orjson.loads(line) for line in out.splitlines() if line.strip()]


async def run_cases(gw: Stack, *cases: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Runs test/errors.js over ``cases``; returns its result per case name."""
    lines = await run_node(gw, "test/errors.js", orjson.dumps(list(cases)).decode())
    results = {line["case"]: line for line in lines}
    assert sorted(results) == sorted(c["name"] for c in cases)
    return results


def _model_dict(model: Any) -> dict[str, Any]:
    """A ``switchboard.v1.Model`` as the Node client represents it (unset pricing is null)."""
    pricing = model.pricing if model.HasField("pricing") else None
    return {
        "id": model.id,
        "provider": model.provider,
        "demo": model.demo,
        "route": model.route,
        "description": model.description,
        "pricing": None
        if pricing is None
        else {f.name: getattr(pricing, f.name) for f in pricing.DESCRIPTOR.fields},
    }


def chat_case(name: str, key: str, model: str, *, stream: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "key": key,
        "stream": stream,
        "request": {"model": model, "messages": [f"{name} {uuid.uuid4().hex[:6]}"]},
    }


async def test_chat_stream_and_models(gw: Stack) -> None:
    prompt = f"node says hi {uuid.uuid4().hex[:8]}"
    async with SwitchboardClient(gw.target, gw.key) as py:
        # Listed before any chat: the catalog's listing can grow once a deployment is used.
        expected_models = [_model_dict(m) for m in await py.list_models()]
        lines = await run_node(gw, "example.js", prompt, key=gw.key)
        expected = await py.chat(model=DEMO_MODEL, messages=[prompt], max_tokens=64)
    expected_text = "".join(part.text for part in expected.message.content)
    expected_usage = {
        f.name: getattr(expected.usage, f.name) for f in expected.usage.DESCRIPTOR.fields
    }
    kinds = [line["kind"] for line in lines]
    assert kinds[:2] == ["models", "chat"], kinds
    assert set(kinds[2:]) == {"frame"}, kinds

    # The same catalog decoded by both clients (the openai provider alone lists many models).
    assert lines[0]["models"] == expected_models
    assert any(m["provider"] == "openai" and m["pricing"] for m in expected_models)

    chat = lines[1]["response"]
    assert prompt in lines[1]["text"]
    assert lines[1]["text"] == expected_text
    assert chat["message"]["role"] == "ROLE_ASSISTANT"
    assert [p["part"] for p in chat["message"]["content"]] == ["text"]
    assert chat["model"] == DEMO_MODEL
    assert chat["finish_reason"] == "FINISH_REASON_STOP"
    assert chat["usage"] == expected_usage
    assert chat["usage"]["input_tokens"] > 0 and chat["usage"]["output_tokens"] > 0
    assert chat["route"]["provider"] == "demo"
    assert chat["route"]["deployment"] == DEMO_MODEL
    assert [a["outcome"] for a in chat["route"]["attempts"]] == ["ATTEMPT_OUTCOME_SUCCESS"]
    assert chat["id"] and chat["created"] > 0

    frames = [line["frame"] for line in lines[2:]]
    names = [f["frame"] for f in frames]
    assert names[0] == "start" and names[-1] == "end", names
    assert set(names[1:-1]) == {"text"} and len(names) > 3, names
    start, end = frames[0]["start"], frames[-1]["end"]
    assert start["route"]["provider"] == "demo"
    assert start["model"] == DEMO_MODEL
    assert "".join(f["text"]["text"] for f in frames[1:-1]) == expected_text
    assert end["id"] == start["id"]
    assert end["finish_reason"] == "FINISH_REASON_STOP"
    assert end["usage"] == expected_usage
    assert end["route"]["provider"] == "demo"


async def test_unknown_model_is_not_found(gw: Stack) -> None:
    results = await run_cases(
        gw,
        chat_case("chat", gw.key, "nosuch/model"),
        chat_case("stream", gw.key, "nosuch/model", stream=True),
    )
    for name, result in results.items():
        assert result["thrown"] == "SwitchboardError" and result["isSwitchboardError"], result
        error = result["error"]
        assert (error["code"], error["codeName"]) == (5, "NOT_FOUND"), name
        assert error["reason"] == "MODEL_NOT_FOUND", name
        assert error["domain"] == "switchboard.dev"
        assert "nosuch/model" in error["message"]
        assert error["retryAfter"] is None
        assert error["requestId"], "x-request-id / ErrorInfo request_id not decoded"


async def test_bad_key_is_unauthenticated(gw: Stack) -> None:
    bad = "sb-not-a-key-" + uuid.uuid4().hex
    results = await run_cases(
        gw,
        chat_case("chat", bad, DEMO_MODEL),
        chat_case("stream", bad, DEMO_MODEL, stream=True),
    )
    for name, result in results.items():
        error = result["error"]
        assert result["isSwitchboardError"], result
        assert (error["code"], error["codeName"]) == (16, "UNAUTHENTICATED"), name
        assert error["reason"] == "INVALID_API_KEY", name
        assert bad not in orjson.dumps(result).decode(), "the key leaked into the error"


async def test_upstream_rate_limit_carries_retry_info(gw: Stack) -> None:
    # A fractional delay: RetryInfo carries seconds and nanos, both must be decoded.
    headers = {"retry-after-ms": "7250", "retry-after": "8"}
    gw.up.script(Status(429, headers=headers, code="rate_limit_exceeded"))
    results = await run_cases(gw, chat_case("limited", gw.key, OPENAI_MODEL))
    error = results["limited"]["error"]
    assert (error["code"], error["codeName"]) == (8, "RESOURCE_EXHAUSTED"), error
    assert error["reason"] == "UPSTREAM_RATE_LIMITED"
    assert error["retryAfter"] == pytest.approx(7.25)
    assert len(gw.up.requests) == 1


async def test_unknown_request_field_is_refused_before_sending(gw: Stack) -> None:
    case = chat_case("camel", gw.key, OPENAI_MODEL)
    case["request"]["maxTokens"] = 5
    results = await run_cases(gw, case)
    assert results["camel"]["thrown"] == "TypeError"
    assert "maxTokens" in results["camel"]["error"]["message"]
    assert gw.up.requests == []
