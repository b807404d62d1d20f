"""The `switchboard` CLI and the server process: keys while serving, config errors, SIGTERM,
taken ports, the generated master key. Every command runs as `python -m server ...`."""

from __future__ import annotations

import asyncio
import shlex
import signal
import stat
import subprocess
import time
from pathlib import Path

import grpc
import grpc.aio
import httpx
import orjson
import pytest
from switchboard.v1 import admin_pb2, admin_pb2_grpc, chat_pb2, chat_pb2_grpc, types_pb2

from tests.fakes.openai_upstream import Delay, FakeOpenAI
from tests.support.server import (
    DEFAULT_MASTER_KEY,
    REPO_ROOT,
    RunningGateway,
    hermetic_env,
    run_cli,
    running_gateway,
    start_gateway,
)


def _request(model: str = "demo/echo", text: str = "hi") -> chat_pb2.ChatRequest:
    return chat_pb2.ChatRequest(
        model=model,
        messages=[
            types_pb2.Message(role=types_pb2.ROLE_USER, content=[types_pb2.ContentPart(text=text)])
        ],
    )


def _auth(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


async def test_cli_keys_take_effect_on_the_running_server_immediately(
    demo_gateway: RunningGateway, demo_channel: grpc.aio.Channel
) -> None:
    stub = chat_pb2_grpc.ChatServiceStub(demo_channel)
    created = await asyncio.to_thread(
        demo_gateway.cli, "keys", "create", "--name", "from-cli", "--json"
    )
    assert created.returncode == 0, created.stderr
    record = orjson.loads(created.stdout)
    secret, key_id = record["key"], record["id"]
    assert secret.startswith("sb-") and key_id.startswith("key_")

    response = await stub.Chat(_request(), metadata=_auth(secret))
    assert response.message.content[0].text == "Echo: hi"

    listed = await asyncio.to_thread(demo_gateway.cli, "keys", "list")
    assert listed.returncode == 0 and key_id in listed.stdout and "from-cli" in listed.stdout
    assert secret not in listed.stdout

    revoked = await asyncio.to_thread(demo_gateway.cli, "keys", "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Chat(_request(), metadata=_auth(secret))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED

    as_json = await asyncio.to_thread(demo_gateway.cli, "keys", "list", "--all", "--json")
    assert [k["revoked"] for k in orjson.loads(as_json.stdout) if k["id"] == key_id] == [True]

    unknown = await asyncio.to_thread(demo_gateway.cli, "keys", "revoke", "key_missing")
    assert unknown.returncode == 1 and "key_missing" in unknown.stderr

    output = demo_gateway.output()
    assert secret not in output and DEFAULT_MASTER_KEY not in output


def test_check_config_names_the_bad_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "server:\n  http_port: 99999\n"
        "routes:\n  - name: smart\n    strategy: bogus\n    deployments: [openai/gpt-4o]\n"
    )
    result = run_cli("check-config", "--config", str(bad))
    assert result.returncode != 0
    assert "server.http_port" in result.stderr and "routes.0.strategy" in result.stderr

    good = tmp_path / "good.yaml"
    good.write_text("routes:\n  - name: smart\n    deployments: [demo/echo]\n")
    ok = run_cli("check-config", "--config", str(good))
    assert ok.returncode == 0 and "valid" in ok.stdout

    served = run_cli("serve", "--config", str(bad), "--data-dir", str(tmp_path / "data"))
    assert served.returncode != 0 and "server.http_port" in served.stderr


def test_check_config_refuses_unknown_providers_and_warns_about_disabled_ones(
    tmp_path: Path,
) -> None:
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("routes:\n  - name: smart\n    deployments: [openia/gpt-4o]\n")
    result = run_cli("check-config", "--config", str(unknown))
    assert result.returncode == 1
    assert "routes.0 (smart) deployment 'openia/gpt-4o': unknown provider 'openia'" in result.stderr
    served = run_cli("serve", "--config", str(unknown), "--data-dir", str(tmp_path / "data"))
    assert served.returncode == 1 and "unknown provider 'openia'" in served.stderr

    disabled = tmp_path / "disabled.yaml"
    disabled.write_text(
        "deployments:\n  - provider: groq\n    model: llama-3.1-8b-instant\n"
        "routes:\n  - name: fast\n    deployments: [groq/llama-3.1-8b-instant, openai/gpt-4o]\n"
    )
    result = run_cli("check-config", "--config", str(disabled))
    assert result.returncode == 0
    assert "provider 'groq' is not enabled; set GROQ_API_KEY to serve it" in result.stdout
    assert "deployment 'openai/gpt-4o': provider 'openai' is not enabled" in result.stdout
    enabled = run_cli("check-config", "--config", str(disabled), env={"GROQ_API_KEY": "gsk_x"})
    assert "groq" not in enabled.stdout and "openai" in enabled.stdout


def test_taken_ports_are_refused_clearly(demo_gateway: RunningGateway, tmp_path: Path) -> None:
    env = {"SWITCHBOARD_MASTER_KEY": DEFAULT_MASTER_KEY}
    common = ("serve", "--data-dir", str(tmp_path), "--host", "127.0.0.1")
    grpc_taken = run_cli(
        *common, "--grpc-port", str(demo_gateway.grpc_port), "--http-port", "0", env=env
    )
    assert grpc_taken.returncode == 1
    assert f"cannot listen for gRPC on 127.0.0.1:{demo_gateway.grpc_port}" in grpc_taken.stderr
    if demo_gateway.http_port is not None:
        http_taken = run_cli(
            *common, "--grpc-port", "0", "--http-port", str(demo_gateway.http_port), env=env
        )
        assert http_taken.returncode == 1
        assert f"cannot listen for HTTP on 127.0.0.1:{demo_gateway.http_port}" in (
            http_taken.stderr
        )


async def test_sigterm_drains_in_flight_calls_then_exits_zero() -> None:
    async with (
        FakeOpenAI(api_key="sk-upstream-graceful-0123456789") as upstream,
        running_gateway(
            env={
                "OPENAI_API_KEY": "sk-upstream-graceful-0123456789",
                "OPENAI_BASE_URL": upstream.base_url,
            }
        ) as gw,
        grpc.aio.insecure_channel(gw.grpc_target) as channel,
    ):
        assert gw.process is not None
        upstream.script(Delay(1.0))
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        in_flight = asyncio.ensure_future(
            stub.Chat(_request("openai/gpt-4o-mini", "slow one"), metadata=_auth(gw.master_key))
        )
        await upstream.wait_for_requests(1)
        gw.process.send_signal(signal.SIGTERM)
        response = await asyncio.wait_for(in_flight, 10)
        assert response.message.content[0].text == "Fake reply to: slow one"
        code = await asyncio.to_thread(gw.process.wait, 15)
        assert code == 0
        output = gw.output()
        assert "shutting down" in output
        assert "sk-upstream-graceful" not in output and gw.master_key not in output
        assert not (gw.data_dir / "ports.json").exists()


def test_generated_master_key_is_stored_privately_and_printed_once(tmp_path: Path) -> None:
    first = start_gateway(data_dir=tmp_path, master_key=None)
    try:
        key_file = tmp_path / "master.key"
        master = key_file.read_text().strip()
        assert first.master_key == master and master.startswith("sb-")
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert first.terminate() == 0
        assert first.output().count(master) == 1
    finally:
        first.close()

    log_before = (tmp_path / "server.log").read_text()
    second = start_gateway(data_dir=tmp_path, master_key=None)
    try:
        assert second.master_key == master
        with grpc.insecure_channel(second.grpc_target) as channel:
            created = admin_pb2_grpc.AdminServiceStub(channel).CreateKey(
                admin_pb2.CreateKeyRequest(name="after-restart"), metadata=_auth(master)
            )
        assert created.secret.startswith("sb-")
        assert second.terminate() == 0
        restarted_output = second.output()[len(log_before) :]
        assert master not in restarted_output and "master.key" in restarted_output
        assert created.secret not in second.output()
    finally:
        second.close()


def test_make_run_and_the_keys_command_agree_on_the_data_dir(tmp_path: Path) -> None:
    """The server `make run` starts and a `switchboard keys create` typed in another shell,
    neither given a data dir, use the same one: the new key works at once."""
    planned = subprocess.run(
        ["make", "-n", "run", "ARGS=--http-port 0 --grpc-port 0"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (serve,) = [line for line in planned.splitlines() if "switchboard serve" in line]
    env = hermetic_env({"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "xdg")})
    data_dir = tmp_path / "xdg" / "switchboard"
    server = subprocess.Popen(
        shlex.split(serve),
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        ports = data_dir / "ports.json"
        deadline = time.monotonic() + 30
        while not ports.exists() and server.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ports.exists(), "the server did not start in the default data dir"
        http_port = orjson.loads(ports.read_bytes())["http_port"]
        cli = REPO_ROOT / shlex.split(serve)[0]  # as make runs it, from the repository
        created = subprocess.run(
            [str(cli), "keys", "create", "--name", "other-shell", "--json"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        key = orjson.loads(created.stdout)["key"]
        reply = httpx.post(
            f"http://127.0.0.1:{http_port}/v1/chat/completions",
            headers={"authorization": f"Bearer {key}"},
            json={"model": "demo/echo", "messages": [{"role": "user", "content": "hi"}]},
            timeout=10,
        )
        assert reply.status_code == 200, reply.text
    finally:
        server.terminate()
        server.wait(timeout=30)
