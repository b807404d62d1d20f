"""Every snippet in README.md (and the Node client's README) runs as pasted against a real
gateway on the demo provider, offline; so do the commands `switchboard serve` prints.

The README's addresses (127.0.0.1:8080 and :50051) become the test gateway's ports; nothing else
is changed. Bash blocks run in one shell, in order, from the repository root with the gateway's
data dir as ``SWITCHBOARD_DATA_DIR`` (they create the key the others use); Python blocks run as
scripts; the Node block as an ES module.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import REPO_ROOT, RunningGateway, hermetic_env, start_gateway

FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def blocks(path: Path, language: str) -> list[str]:
    return [code for lang, code in FENCE.findall(path.read_text()) if lang == language]


@pytest.fixture(scope="module")
def gw() -> Iterator[RunningGateway]:
    gateway = start_gateway()
    try:
        yield gateway
    finally:
        gateway.terminate()
        gateway.close()


def localize(code: str, gw: RunningGateway) -> str:
    http = gw.http_url.removeprefix("http://")
    return code.replace("127.0.0.1:8080", http).replace("127.0.0.1:50051", gw.grpc_target)


def run_bash(script: str, gw: RunningGateway) -> str:
    # The gateway's master key, as an operator who set SWITCHBOARD_MASTER_KEY has it.
    env = hermetic_env(
        {"SWITCHBOARD_DATA_DIR": str(gw.data_dir), "SWITCHBOARD_MASTER_KEY": gw.master_key}
    )
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{script}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def api_key(gw: RunningGateway) -> str:
    """The key the README's bash blocks create (they must produce one)."""
    setup = [code for code in blocks(REPO_ROOT / "README.md", "bash") if "make " not in code]
    script = "\n".join(localize(code, gw) for code in setup)
    out = run_bash(script + '\necho "KEY=$SWITCHBOARD_API_KEY"\n', gw)
    assert out.count('"content":"Echo: Hello"') == 1, out  # the plain call
    assert '"content":"Echo:"' in out and "data: [DONE]" in out  # the stream
    key = out.rsplit("KEY=", 1)[1].strip()
    assert key.startswith("sb-")
    return key


def python_blocks() -> list[str]:
    return blocks(REPO_ROOT / "README.md", "python")


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_each_python_snippet_runs_as_a_script(gw: RunningGateway, api_key: str, index: int) -> None:
    code = localize(python_blocks()[index], gw)
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=hermetic_env({"SWITCHBOARD_API_KEY": api_key}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{code}\n--- stderr\n{done.stderr}"
    assert "Echo" in done.stdout or "The tool weather returned" in done.stdout, done.stdout


def test_the_node_snippet_runs_as_a_module(gw: RunningGateway, api_key: str) -> None:
    from tests.e2e.test_node_client import _ensure_node_modules, _node_tools

    node, npm = _node_tools()
    _ensure_node_modules(npm)
    (code,) = blocks(REPO_ROOT / "clients" / "node" / "README.md", "js")
    script = REPO_ROOT / f".readme-snippet-{uuid.uuid4().hex[:8]}.mjs"
    script.write_text(localize(code, gw))
    try:
        done = subprocess.run(
            [node, str(script)],
            cwd=REPO_ROOT,
            env={**os.environ, "SWITCHBOARD_API_KEY": api_key},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        script.unlink()
    assert done.returncode == 0, done.stderr
    assert "Echo: Hello" in done.stdout and "NOT_FOUND MODEL_NOT_FOUND" in done.stdout


def test_the_commands_serve_prints_work_when_pasted(gw: RunningGateway) -> None:
    printed = gw.output().split("Create an application key", 1)[1]
    lines = printed.splitlines()[1:]
    commands = [line[2:] for line in lines if line.startswith("  ")][:6]
    out = run_bash("\n".join(commands), gw)
    assert '"content":"Echo: Hello!"' in out
