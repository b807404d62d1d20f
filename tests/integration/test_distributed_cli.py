"""The CLI on the distributed backend: the same commands, through the same variables, reach
the same PostgreSQL state the gateway processes use; a key made by the CLI is served by a
running gateway and its revocation is refused there within a second; `usage` reads the
shared ledger."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import orjson

from tests.support.server import run_cli, running_gateway
from tests.support.stores import distributed_env

CHAT = {"model": "demo/echo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


async def test_keys_and_usage_commands_share_the_gateways_state(tmp_path: Path) -> None:
    with distributed_env() as (env, _store):
        # Each process gets its own data dir: nothing is shared through files.
        async with running_gateway(env=env) as gw:
            made = await asyncio.to_thread(
                run_cli,
                "keys", "create", "--name", "cli", "--env", "staging", "--json",
                "--data-dir", str(tmp_path / "cli"),
                env=env,
            )  # fmt: skip
            assert made.returncode == 0, made.stderr
            created = orjson.loads(made.stdout)
            assert created["prefix"].startswith("sb-staging-")
            headers = {"authorization": f"Bearer {created['key']}"}
            url = f"{gw.http_url}/v1/chat/completions"
            async with httpx.AsyncClient(timeout=15.0) as http:
                for _ in range(3):
                    assert (await http.post(url, headers=headers, json=CHAT)).status_code == 200

                async def usage() -> list[dict[str, object]]:
                    out = await asyncio.to_thread(
                        run_cli, "usage", "--json", "--data-dir", str(tmp_path / "cli"), env=env
                    )
                    assert out.returncode == 0, out.stderr
                    keys: list[dict[str, object]] = orjson.loads(out.stdout)["keys"]
                    return keys

                deadline = time.monotonic() + 10.0
                while (rows := await usage()) == [] or rows[0]["requests"] != 3:
                    assert time.monotonic() < deadline, rows
                    await asyncio.sleep(0.2)
                assert rows[0]["key_id"] == created["id"] and rows[0]["name"] == "cli"

                revoked = await asyncio.to_thread(
                    run_cli, "keys", "revoke", created["id"],
                    "--data-dir", str(tmp_path / "cli"), env=env,
                )  # fmt: skip
                assert revoked.returncode == 0, revoked.stderr
                at = time.monotonic()
                while (await http.post(url, headers=headers, json=CHAT)).status_code != 401:
                    assert time.monotonic() - at < 1.0, "revocation not seen within a second"
                    await asyncio.sleep(0.02)


def test_a_half_configured_distributed_backend_is_refused_by_name(tmp_path: Path) -> None:
    out = run_cli(
        "keys", "list", "--data-dir", str(tmp_path),
        env={"SWITCHBOARD_DATABASE_URL": "postgresql://user:hunter2@127.0.0.1:1/x"},
    )  # fmt: skip
    assert out.returncode == 1
    assert "needs both database_url and redis_url" in out.stderr
    assert "hunter2" not in out.stderr + out.stdout


def test_an_unreachable_database_is_reported_without_its_password(tmp_path: Path) -> None:
    out = run_cli(
        "keys", "list", "--data-dir", str(tmp_path),
        env={
            # Port 1 on loopback refuses at once.
            "SWITCHBOARD_DATABASE_URL": "postgresql://user:hunter2@127.0.0.1:1/x",
            "SWITCHBOARD_REDIS_URL": "redis://:hunter2@127.0.0.1:1/0",
        },
        timeout=30.0,
    )  # fmt: skip
    assert out.returncode == 1, out.stdout
    assert "PostgreSQL" in out.stderr and "unreachable" in out.stderr
    assert "hunter2" not in out.stderr + out.stdout
    assert "Traceback" not in out.stderr
