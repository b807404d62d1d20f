"""Start a REAL gateway for tests: ``python -m server serve`` in a subprocess (or in-process).

Usage (async, e.g. with a fake upstream)::

    from tests.support.server import running_gateway

    async with FakeOpenAI() as up, running_gateway(
        env={"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": up.base_url},
        config={"routes": [...]},          # optional: a mapping, YAML text or a Path
    ) as gw:
        gw.grpc_target                     # '127.0.0.1:PORT'
        gw.http_url                        # 'http://127.0.0.1:PORT'
        gw.master_key                      # the admin key (SWITCHBOARD_MASTER_KEY)
        key = gw.create_key("my-test")     # a fresh gateway key secret
        gw.output()                        # everything the server printed so far

Sync (module-scoped fixtures, any event loop): ``gw = start_gateway(...)`` ... ``gw.close()``.
Another source checkout (e.g. a worktree of an older commit, as bench/run.py --baseline does):
``start_gateway(repo_root=Path(...))`` runs that checkout's ``python -m server``.
In the current event loop instead of a subprocess: ``running_gateway_in_process(...)`` (same
object, ``process`` is None; no signals, no separate output).

How it works: the gateway is started on ephemeral ports (``--grpc-port 0 --http-port 0``) with
a temporary data dir; it writes the ports it bound to ``<data_dir>/ports.json``
(``{"pid", "host", "grpc_port", "http_port"}``), which this helper waits for, then it checks the
gRPC health service says SERVING. The child's environment is the test process's minus every
``*_API_KEY``, ``*_BASE_URL`` and ``SWITCHBOARD_*`` variable (hermetic), plus ``env``. Its stdout
and stderr go to ``<data_dir>/server.log``. ``close()`` sends SIGTERM, waits for a graceful exit,
and removes the data dir when the helper created it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import orjson
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MASTER_KEY = "sb-test-master-0123456789abcdefghijklmnopqrstuvwxyz"
LOG_FILENAME = "server.log"
_HERMETIC_SUFFIXES = ("_API_KEY", "_BASE_URL")

ConfigLike = Mapping[str, Any] | str | Path | None


@dataclass
class RunningGateway:
    """A started gateway: where it listens, its admin key, its data dir and output."""

    data_dir: Path
    grpc_target: str
    http_url: str
    master_key: str
    grpc_port: int
    http_port: int | None
    process: subprocess.Popen[bytes] | None = None
    owns_data_dir: bool = False
    repo_root: Path = REPO_ROOT
    _closed: bool = field(default=False, repr=False)

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_FILENAME

    def create_key(self, name: str = "test", **limits: Any) -> str:
        """A new gateway key written straight to the shared SQLite file (as the CLI does)."""
        from server.core.context import KeyLimits
        from server.store.embedded.keys import SqliteKeyStore

        store = SqliteKeyStore(self.data_dir)
        try:
            _, secret = store.create_sync(name, KeyLimits(**limits))
        finally:
            store.close()
        return secret

    def output(self) -> str:
        """What the server printed to stdout and stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def cli(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Runs ``python -m server <args> --data-dir <this data dir>`` from the same checkout."""
        return run_cli(
            *args, "--data-dir", str(self.data_dir), timeout=timeout, repo_root=self.repo_root
        )

    def terminate(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, then wait; returns the exit code (None when in-process)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
                raise AssertionError(
                    f"gateway did not exit within {timeout}s of SIGTERM:\n{self.output()}"
                ) from None
        return self.process.returncode

    def close(self) -> None:
        """Stops the server (if still running) and removes a data dir the helper created."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.process is not None and self.process.poll() is None:
                self.process.kill()
                self.process.wait(10)
        finally:
            if self.owns_data_dir:
                shutil.rmtree(self.data_dir, ignore_errors=True)


def hermetic_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test process's environment without provider keys/URLs or SWITCHBOARD_*, plus env."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SWITCHBOARD_") and not k.endswith(_HERMETIC_SUFFIXES)
    }
    base["PYTHONUNBUFFERED"] = "1"
    base.update(env or {})
    return base


def run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    repo_root: Path = REPO_ROOT,
) -> subprocess.CompletedProcess[str]:
    """Runs ``python -m server <args>`` (from ``repo_root``) and captures its output."""
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        env=hermetic_env(env),
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def write_config(data_dir: Path, config: ConfigLike) -> Path | None:
    """Writes a mapping or YAML text to ``<data_dir>/config.yaml``; a Path is used as is."""
    if config is None:
        return None
    if isinstance(config, Path):
        return config
    path = data_dir / "config.yaml"
    text = config if isinstance(config, str) else yaml.safe_dump(dict(config))
    path.write_text(text)
    return path


def start_gateway(
    *,
    env: Mapping[str, str] | None = None,
    config: ConfigLike = None,
    data_dir: Path | None = None,
    master_key: str | None = DEFAULT_MASTER_KEY,
    args: Sequence[str] = (),
    startup_timeout: float = 30.0,
    repo_root: Path | None = None,
    server_command: Sequence[str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
    start_new_session: bool = False,
) -> RunningGateway:
    """Starts ``python -m server serve`` on ephemeral ports and waits until it serves.

    ``master_key=None`` leaves SWITCHBOARD_MASTER_KEY unset (the server generates and stores
    one; ``master_key`` is then read from the data dir).

    ``repo_root`` runs the server from another source checkout: it becomes the cwd (so
    ``python -m server`` imports that checkout's ``server``), and its ``gen/python`` goes first
    on PYTHONPATH, because the venv's editable install would otherwise supply the generated
    stubs of the checkout it was installed from. ``server_command`` replaces
    ``python -m server`` (e.g. an installed ``switchboard`` script). ``preexec_fn`` and
    ``start_new_session`` are passed to Popen (e.g. CPU pinning, or keeping a terminal's
    Ctrl-C from reaching the server before its owner stops it).
    """
    owns = data_dir is None
    data_dir = Path(tempfile.mkdtemp(prefix="switchboard-test-")) if data_dir is None else data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    child_env = hermetic_env(env)
    if master_key is not None:
        child_env["SWITCHBOARD_MASTER_KEY"] = master_key
    root = REPO_ROOT if repo_root is None else repo_root.resolve()
    if repo_root is not None and (root / "gen" / "python").is_dir():
        paths = [str(root / "gen" / "python"), child_env.get("PYTHONPATH", "")]
        child_env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    program = [sys.executable, "-m", "server"] if server_command is None else server_command
    command = [*program, "serve", "--data-dir", str(data_dir)]
    command += ["--host", "127.0.0.1", "--grpc-port", "0", "--http-port", "0"]
    config_path = write_config(data_dir, config)
    if config_path is not None:
        command += ["--config", str(config_path)]
    command += list(args)
    with open(data_dir / LOG_FILENAME, "ab") as log:
        process = subprocess.Popen(
            command,
            env=child_env,
            cwd=root,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec_fn,
            start_new_session=start_new_session,
        )
    try:
        ports = _wait_for_ports(data_dir, process, startup_timeout)
        gw = RunningGateway(
            data_dir=data_dir,
            grpc_target=f"127.0.0.1:{ports['grpc_port']}",
            http_url=f"http://127.0.0.1:{ports['http_port']}",
            master_key=master_key or (data_dir / "master.key").read_text().strip(),
            grpc_port=ports["grpc_port"],
            http_port=ports["http_port"],
            process=process,
            owns_data_dir=owns,
            repo_root=root,
        )
        _wait_serving(gw.grpc_target, startup_timeout)
    except BaseException:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        if owns:
            shutil.rmtree(data_dir, ignore_errors=True)
        raise
    return gw


@contextlib.asynccontextmanager
async def running_gateway(
    *,
    env: Mapping[str, str] | None = None,
    config: ConfigLike = None,
    data_dir: Path | None = None,
    master_key: str | None = DEFAULT_MASTER_KEY,
    args: Sequence[str] = (),
    startup_timeout: float = 30.0,
    repo_root: Path | None = None,
) -> AsyncIterator[RunningGateway]:
    """``start_gateway`` for async tests; startup and SIGTERM run off the event loop (a fake
    upstream in this loop keeps answering meanwhile)."""
    gw = await asyncio.to_thread(
        start_gateway,
        env=env,
        config=config,
        data_dir=data_dir,
        master_key=master_key,
        args=args,
        startup_timeout=startup_timeout,
        repo_root=repo_root,
    )
    try:
        yield gw
    finally:
        try:
            await asyncio.to_thread(gw.terminate)
        finally:
            gw.close()


@contextlib.asynccontextmanager
async def running_gateway_in_process(
    *,
    env: Mapping[str, str] | None = None,
    config: ConfigLike = None,
    data_dir: Path | None = None,
    master_key: str = DEFAULT_MASTER_KEY,
) -> AsyncIterator[RunningGateway]:
    """The gateway served from the current event loop (``server.app.serve``), same object."""
    from server.app import BoundPorts, ServeOptions, serve
    from server.config import load_config

    owns = data_dir is None
    data_dir = Path(tempfile.mkdtemp(prefix="switchboard-test-")) if data_dir is None else data_dir
    child_env = {k: v for k, v in (env or {}).items()}
    child_env["SWITCHBOARD_MASTER_KEY"] = master_key
    loaded = load_config(write_config(data_dir, config))
    options = ServeOptions(loaded, data_dir, "127.0.0.1", 0, 0)
    stop = asyncio.Event()
    ready: asyncio.Future[BoundPorts] = asyncio.get_running_loop().create_future()
    sink = await asyncio.to_thread(open, data_dir / LOG_FILENAME, "a")
    task = asyncio.create_task(
        serve(
            options,
            child_env,
            stop=stop,
            on_ready=ready.set_result,
            handle_signals=False,
            out=sink,
        )
    )
    try:
        waiting: list[asyncio.Future[Any]] = [task, ready]
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            raise RuntimeError(f"in-process gateway failed to start (exit {task.result()})")
        ports = ready.result()
        yield RunningGateway(
            data_dir=data_dir,
            grpc_target=ports.grpc_target,
            http_url=ports.http_url,
            master_key=master_key,
            grpc_port=ports.grpc_port,
            http_port=ports.http_port,
            owns_data_dir=owns,
        )
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)
        sink.close()
        if owns:
            shutil.rmtree(data_dir, ignore_errors=True)


def _wait_for_ports(
    data_dir: Path, process: subprocess.Popen[bytes], timeout: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    path = data_dir / "ports.json"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"gateway exited with {process.returncode} during startup:\n"
                + (data_dir / LOG_FILENAME).read_text(errors="replace")
            )
        with contextlib.suppress(FileNotFoundError, orjson.JSONDecodeError):
            ports: dict[str, Any] = orjson.loads(path.read_bytes())
            if ports.get("pid") == process.pid:
                return ports
        time.sleep(0.05)
    raise TimeoutError(
        f"gateway did not write {path} within {timeout}s:\n"
        + (data_dir / LOG_FILENAME).read_text(errors="replace")
    )


def _wait_serving(target: str, timeout: float) -> None:
    with grpc.insecure_channel(target) as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=timeout, wait_for_ready=True
        )
    if response.status != health_pb2.HealthCheckResponse.SERVING:
        raise RuntimeError(f"gateway health is {response.status}, not SERVING")
