"""`switchboard serve --workers N` (server/supervisor.py) against real processes.

- On the embedded backend N > 1 is refused at start, saying why and what to set.
- On the distributed backend two workers serve one HTTP and one gRPC port (connections reach
  both), a SIGKILLed worker is restarted while the other keeps serving, and SIGTERM to the
  supervisor drains both: a slow in-flight request completes, every process exits 0, and
  ports.json is removed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import grpc
import grpc.aio
import httpx
import orjson
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.app import worker_ready_file
from tests.fakes.openai_upstream import Delay, FakeOpenAI
from tests.support.server import run_cli, running_gateway
from tests.support.stores import distributed_env

UPSTREAM_KEY = "sk-upstream-workers-0123456789"


def test_several_workers_on_the_embedded_backend_are_refused(tmp_path: Path) -> None:
    out = run_cli(
        "serve", "--workers", "2", "--http-port", "0", "--grpc-port", "0",
        "--data-dir", str(tmp_path),
    )  # fmt: skip
    assert out.returncode == 2, out.stdout + out.stderr
    assert "--workers 2 needs the distributed backend" in out.stderr
    assert "SWITCHBOARD_DATABASE_URL" in out.stderr and "SWITCHBOARD_REDIS_URL" in out.stderr
    assert not (tmp_path / "ports.json").exists()


def worker_pids(data_dir: Path, n: int) -> list[int]:
    pids = []
    for i in range(n):
        pids.append(int(orjson.loads(worker_ready_file(data_dir, i).read_bytes())["pid"]))
    return pids


async def workers_answering(url: str, tries: int = 60) -> set[int]:
    """The workers whose /healthz answered, each over a new connection."""
    seen: set[int] = set()
    for _ in range(tries):
        async with httpx.AsyncClient(timeout=5.0) as http:
            seen.add(int((await http.get(f"{url}/healthz")).json()["worker"]))
        if len(seen) == 2:
            break
    return seen


async def test_two_workers_share_the_ports_restart_and_drain() -> None:
    with distributed_env() as (env, store):
        async with FakeOpenAI(api_key=UPSTREAM_KEY) as upstream:
            gw_env = {**env, "OPENAI_API_KEY": UPSTREAM_KEY, "OPENAI_BASE_URL": upstream.base_url}
            async with running_gateway(
                env=gw_env, config={"store": store}, args=["--workers", "2"]
            ) as gw:
                assert gw.process is not None
                assert await workers_answering(gw.http_url) == {0, 1}
                async with grpc.aio.insecure_channel(gw.grpc_target) as channel:
                    health = health_pb2_grpc.HealthStub(channel)
                    reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
                    assert reply.status == health_pb2.HealthCheckResponse.SERVING

                first, second = worker_pids(gw.data_dir, 2)
                assert gw.process.pid not in (first, second)
                os.kill(first, signal.SIGKILL)
                # The other worker keeps serving meanwhile; the killed one comes back.
                deadline = time.monotonic() + 20.0
                while True:
                    async with httpx.AsyncClient(timeout=5.0) as http:
                        assert (await http.get(f"{gw.http_url}/healthz")).status_code == 200
                    try:
                        restarted = worker_pids(gw.data_dir, 2)[0]
                    except (FileNotFoundError, orjson.JSONDecodeError):
                        restarted = first
                    if restarted != first:
                        break
                    assert time.monotonic() < deadline, "the killed worker was not restarted"
                    await asyncio.sleep(0.1)
                assert await workers_answering(gw.http_url) == {0, 1}

                # SIGTERM while a slow request is in flight: it completes, then all exit.
                upstream.script(Delay(1.5))
                async with httpx.AsyncClient(timeout=30.0) as http:
                    slow = asyncio.ensure_future(
                        http.post(
                            f"{gw.http_url}/v1/chat/completions",
                            headers={"authorization": f"Bearer {gw.master_key}"},
                            json={
                                "model": "openai/gpt-4o-mini",
                                "messages": [{"role": "user", "content": "slow"}],
                            },
                        )
                    )
                    await asyncio.sleep(0.5)
                    pids = worker_pids(gw.data_dir, 2)
                    gw.process.send_signal(signal.SIGTERM)
                    reply = await slow
                    assert reply.status_code == 200, reply.text
                code = await asyncio.to_thread(gw.process.wait, 30)
                assert code == 0, gw.output()
                for pid in pids:
                    assert not _alive(pid), f"worker {pid} still running"
                assert not (gw.data_dir / "ports.json").exists()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie of an exited child counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
