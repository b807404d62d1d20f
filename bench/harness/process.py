"""The processes under test: the fake upstream, the floor servicer and the gateways.

Also the CPU and RSS figures of those processes, read from /proc around a measured window.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from loadgen import cpu_seconds, rss_mb

from harness.config import CONFIG_YAML, PY
from tests.support.server import LOG_FILENAME, RunningGateway, start_gateway


def pin(cpus: set[int] | None) -> Callable[[], None] | None:
    """A Popen preexec_fn that pins the child to ``cpus`` (None: no pinning)."""
    if not cpus:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


# ---------------------------------------------------------------------------- CPU sampling


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each named process tree."""
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


def cpu_since(pids: dict[str, int], before: dict[str, float]) -> dict[str, float]:
    """CPU seconds each named process tree used since ``before`` (a cpu_snapshot)."""
    return {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}


def rss_snapshot(pids: dict[str, int]) -> dict[str, float]:
    """Resident memory (MB) of each named process tree now."""
    return {name: rss_mb(pid) for name, pid in pids.items()}


def cpu_entry(cpu_s: float, wall: float, requests: int) -> dict[str, Any]:
    """CPU seconds, % of one core and ms per request, as the report reads them."""
    return {
        "cpu_s": round(cpu_s, 3),
        "pct": round(100 * cpu_s / wall, 1) if wall else None,
        "ms_per_req": round(1000 * cpu_s / requests, 4) if requests else None,
    }


# ---------------------------------------------------------------------------- helper servers


def log_tail(log: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of a log file ('' when unreadable)."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class Proc:
    """A server subprocess in its own session, so stopping it stops all it started."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.popen.poll() is None

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM to the process group, SIGKILL after ``grace`` seconds."""
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait(5)


def start_listening(
    name: str, cmd: list[str], tmp: Path, cpus: set[int] | None, timeout: float = 20.0
) -> tuple[Proc, int]:
    """Starts a server that prints ``LISTENING <port>`` on stdout; returns it and its port."""
    log = tmp / f"{name}.log"
    with log.open("wb") as err:
        popen = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=pin(cpus),
        )
    proc = Proc(name, popen, log)
    assert popen.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = popen.stdout.readline().decode(errors="replace")
        if line.startswith("LISTENING "):
            return proc, int(line.split()[1])
        if not line and not proc.alive():
            break
    proc.stop()
    raise RuntimeError(f"{name} did not start:\n{log_tail(log)}")


@contextlib.contextmanager
def fake_upstream() -> Iterator[str]:
    """``bench/fake_upstream.py`` in a process of its own; yields its OpenAI base URL."""
    with tempfile.TemporaryDirectory(prefix="bench-upstream-") as tmp:
        script = str(Path(__file__).resolve().parents[1] / "fake_upstream.py")
        proc, port = start_listening("upstream", [PY, script, "--port", "0"], Path(tmp), None)
        try:
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            proc.stop()


# ---------------------------------------------------------------------------- gateways


@dataclass
class Gateway:
    """A gateway under test, started by tests/support/server.py, and how the bench calls it."""

    name: str  # "gateway", or "gateway@baseline" for the --baseline checkout
    running: RunningGateway
    command: list[str]
    http_problem: str | None = None  # None when the HTTP shim serves

    @property
    def pid(self) -> int:
        assert self.running.process is not None
        return self.running.process.pid

    @property
    def key(self) -> str:
        return self.running.master_key

    @property
    def url(self) -> str:
        return f"{self.running.http_url}/v1/chat/completions"

    @property
    def grpc_target(self) -> str:
        return self.running.grpc_target

    def info(self) -> dict[str, Any]:
        """What the JSON results record about this gateway."""
        return {
            "pid": self.pid,
            "cmd": self.command,
            "http_port": self.running.http_port or 0,
            "grpc_port": self.running.grpc_port,
        }

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM and a graceful exit, else SIGKILL; its log stays in the data dir."""
        try:
            self.running.terminate(grace)
        except AssertionError:
            pass  # the helper killed it after the grace period; the log shows where it hung
        finally:
            self.running.close()


def gateway_log(workdir: Path) -> Path:
    """Where the gateway started in ``workdir`` writes its stdout and stderr."""
    return workdir / "data" / LOG_FILENAME


def launch_gateway(
    name: str,
    repo_root: Path,
    workdir: Path,
    upstream_url: str,
    upstream_key: str,
    *,
    command: Sequence[str] | None,
    log_level: str | None,
    cpus: set[int] | None,
    timeout: float,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
) -> Gateway:
    """Starts the gateway of checkout ``repo_root`` against the fake upstream; waits for it.

    ``command`` replaces ``python -m server`` run in ``repo_root``. Ready means: the ports
    are in ``<data-dir>/ports.json``, gRPC health says SERVING and ``GET /healthz`` is 200.
    """
    workdir.mkdir(parents=True)
    config = workdir / "switchboard.yaml"
    config.write_text(CONFIG_YAML + (f"logging:\n  level: {log_level}\n" if log_level else ""))
    deadline = time.monotonic() + timeout
    try:
        running = start_gateway(
            env={"OPENAI_API_KEY": upstream_key, "OPENAI_BASE_URL": upstream_url, **(env or {})},
            config=config,
            data_dir=workdir / "data",
            master_key="sk-bench-" + secrets.token_hex(16),
            args=args,
            startup_timeout=timeout,
            repo_root=repo_root,
            server_command=command,
            preexec_fn=pin(cpus),
            # A Ctrl-C in the terminal must not stop it before the bench has stopped its load.
            start_new_session=True,
        )
    except (RuntimeError, TimeoutError, OSError, grpc.RpcError) as e:
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise RuntimeError(f"{first}\n{log_tail(gateway_log(workdir))}") from None
    used = list(command) if command else [PY, "-m", "server"]
    gw = Gateway(name, running, used)
    if running.http_port is None:
        gw.http_problem = "the gateway serves no HTTP shim (http_port null)"
        return gw
    if not _wait_healthz(f"{running.http_url}/healthz", deadline):
        gw.stop()
        raise RuntimeError(
            f"gateway not ready (/healthz) after {timeout:.0f}s:\n{log_tail(gw.running.log_path)}"
        )
    return gw


def _wait_healthz(url: str, deadline: float) -> bool:
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError, urllib.error.URLError),
            urllib.request.urlopen(url, timeout=1) as r,
        ):
            if r.status == 200:
                return True
        time.sleep(0.1)
    return False


def source_info(root: Path) -> dict[str, Any]:
    """The checkout a gateway runs from: its directory, commit and whether it has edits."""
    info: dict[str, Any] = {"dir": str(root), "commit": None, "dirty": None}

    def git(*args: str) -> str | None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10
            )
            if out.returncode == 0:
                return out.stdout.strip()
        return None

    info["commit"] = git("rev-parse", "--short", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    if status is not None:
        info["dirty"] = bool(status)
    return info
