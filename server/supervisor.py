"""`switchboard serve --workers N`: N gateway processes on one HTTP and one gRPC port.

The supervisor is small and does no request work. It

1. settles what every worker must agree on before any starts: the master key (loaded or
   created once, then handed to each worker in its environment, so none races to create the
   key file) and the ports (a port 0 is resolved by binding a SO_REUSEPORT socket that is never
   listened on: it holds the port for the whole run, and the kernel only hands connections to
   listening sockets);
2. starts the workers (`python -m server serve ...` with the concrete ports and
   ``SWITCHBOARD_WORKER=<index>``); each serves with SO_REUSEPORT on both ports, so the kernel
   spreads connections over them, and writes ``<data-dir>/.worker-<i>.json`` once it serves;
3. when all N are ready, writes ``ports.json`` (with its own pid) and prints the banner once;
4. restarts a worker that exits while it is not stopping (backoff from 0.5 s, doubling to
   10 s, reset once the worker has served 30 s); a worker that exits before it is ready
   ``MAX_EARLY_EXITS`` times in a row (a bad config, a taken port; one not serving within
   ``READY_TIMEOUT`` is killed and counts) stops the whole run, exit 1; a worker is SIGTERMed
   by the kernel if the supervisor itself dies (PR_SET_PDEATHSIG), so none is orphaned;
5. on SIGTERM/SIGINT forwards SIGTERM to every worker (each drains: in-flight requests finish,
   its ledger rows are written), waits ``server.shutdown_grace`` plus a margin, SIGKILLs what
   is left, removes ``ports.json`` and exits 0 when every worker stopped cleanly.

It refuses nothing itself: the CLI refuses N > 1 on the embedded backend before calling it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import orjson

from server.app import (
    PORTS_FILENAME,
    WORKER_ENV,
    BoundPorts,
    ServeOptions,
    remove_own_ports_file,
    worker_ready_file,
    write_ports_file,
)
from server.policy.keys import MASTER_KEY_ENV, load_master_key

log = logging.getLogger("switchboard.supervisor")

# Consecutive exits before readiness that end the run (the worker cannot start at all).
MAX_EARLY_EXITS = 3
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 10.0
# A worker that served this long has its backoff reset.
HEALTHY_AFTER = 30.0
POLL = 0.1
# A worker not serving this long after its start is killed (and counts as failing to start).
READY_TIMEOUT = 60.0
STOP_MARGIN = 5.0


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    ready: bool = False
    early_exits: int = 0
    backoff: float = FIRST_BACKOFF
    restart_at: float | None = None
    restarts: int = 0


@dataclass
class Supervisor:
    """Runs ``workers`` gateway processes for ``options`` (module docstring)."""

    options: ServeOptions
    env: Mapping[str, str]
    workers: int
    # The --config file given to the supervisor (SWITCHBOARD_CONFIG is inherited anyway).
    config_path: str | None = None
    # argv of the gateway program before `serve` (tests run another checkout's).
    program: Sequence[str] = (sys.executable, "-m", "server")
    out: TextIO = sys.stdout
    _stopping: bool = False
    _pool: list[_Worker] = field(default_factory=list)

    def run(self) -> int:
        options = self.options
        master = load_master_key(options.data_dir, self.env)
        with _held_ports(options) as (http_port, grpc_port), self._signals():
            worker_env = {**self.env, MASTER_KEY_ENV: master.secret}
            self._pool = [_Worker(i) for i in range(self.workers)]
            argv = [
                *self.program,
                "serve",
                "--data-dir", str(options.data_dir),
                "--host", options.host,
                "--http-port", str(http_port),
                "--grpc-port", str(grpc_port),
            ]  # fmt: skip
            if self.config_path:
                argv += ["--config", self.config_path]
            ports_file = options.data_dir / PORTS_FILENAME
            announced = False
            code = 0
            try:
                for w in self._pool:
                    self._start(w, argv, worker_env)
                while not self._stopping:
                    failed = self._watch(argv, worker_env)
                    if failed is not None:
                        code = 1
                        break
                    if not announced and all(w.ready for w in self._pool):
                        ports = BoundPorts(os.getpid(), options.host, grpc_port, http_port)
                        write_ports_file(ports_file, ports)
                        self._announce(ports, master.source == "generated")
                        announced = True
                    time.sleep(POLL)
            finally:
                clean = self._stop_all()
                remove_own_ports_file(ports_file)
            return code if code else (0 if clean else 1)

    # --- workers ------------------------------------------------------------------------------

    def _start(self, w: _Worker, argv: list[str], env: Mapping[str, str]) -> None:
        ready = worker_ready_file(self.options.data_dir, w.index)
        ready.unlink(missing_ok=True)
        w.process = subprocess.Popen(
            argv,
            env={**env, WORKER_ENV: str(w.index)},
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        w.started = time.monotonic()
        w.ready = False
        w.restart_at = None

    def _watch(self, argv: list[str], env: Mapping[str, str]) -> int | None:
        """One pass over the workers; the index of one that cannot start, else None."""
        now = time.monotonic()
        for w in self._pool:
            if w.restart_at is not None:
                if now >= w.restart_at:
                    w.restarts += 1
                    self._start(w, argv, env)
                continue
            assert w.process is not None
            code = w.process.poll()
            if code is None:
                if not w.ready and _ready(self.options.data_dir, w):
                    w.ready = True
                    w.early_exits = 0
                elif not w.ready and now - w.started > READY_TIMEOUT:
                    log.error(
                        "worker %d not serving after %.0fs; killing it", w.index, now - w.started
                    )
                    w.process.kill()
                if w.ready and now - w.started >= HEALTHY_AFTER:
                    w.backoff = FIRST_BACKOFF
                continue
            if self._stopping:
                continue
            if not w.ready:
                w.early_exits += 1
                if w.early_exits >= MAX_EARLY_EXITS:
                    print(
                        f"error: worker {w.index} exited ({_how(code)}) before serving, "
                        f"{w.early_exits} times in a row; stopping",
                        file=sys.stderr,
                    )
                    return w.index
            log.warning(
                "worker %d (pid %d) exited (%s); restarting in %.1fs",
                w.index,
                w.process.pid,
                _how(code),
                w.backoff,
            )
            w.ready = False
            w.restart_at = now + w.backoff
            w.backoff = min(w.backoff * 2, MAX_BACKOFF)
        return None

    def _stop_all(self) -> bool:
        """SIGTERM to every worker, then wait; True when all exited 0 in time."""
        running = [w.process for w in self._pool if w.process and w.process.poll() is None]
        for p in running:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.options.config.server.shutdown_grace + STOP_MARGIN
        clean = True
        for p in running:
            try:
                code = p.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.error("worker pid %d did not stop in time; killing it", p.pid)
                p.kill()
                p.wait()
                clean = False
                continue
            clean = clean and code == 0
        for w in self._pool:
            worker_ready_file(self.options.data_dir, w.index).unlink(missing_ok=True)
        return clean

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        def stop(signum: int, frame: object) -> None:
            self._stopping = True

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _announce(self, ports: BoundPorts, generated: bool) -> None:
        print(
            f"Switchboard: {self.workers} workers serving HTTP on {ports.http_url} and gRPC on "
            f"{ports.grpc_target} (supervisor pid {ports.pid}; SIGTERM drains them all)",
            file=self.out,
            flush=True,
        )
        if generated:
            key_file = self.options.data_dir / "master.key"
            print(f"Master key generated and stored in {key_file}.", file=self.out, flush=True)


def _die_with_parent() -> None:
    """In the worker before exec: SIGTERM it (a clean drain) if the supervisor dies, even by
    SIGKILL, so no orphaned worker keeps holding the ports (Linux prctl; elsewhere a no-op)."""
    if sys.platform != "linux":
        return
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _ready(data_dir: Path, w: _Worker) -> bool:
    try:
        data = orjson.loads(worker_ready_file(data_dir, w.index).read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return False
    return w.process is not None and data.get("pid") == w.process.pid


def _how(code: int) -> str:
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"


@contextlib.contextmanager
def _held_ports(options: ServeOptions) -> Iterator[tuple[int, int]]:
    """The concrete HTTP and gRPC ports, held for the run by bound, never-listening
    SO_REUSEPORT sockets (port 0 picks free ones)."""
    held: list[socket.socket] = []
    try:
        ports = []
        for port in (options.http_port, options.grpc_port):
            family = socket.AF_INET6 if ":" in options.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            held.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            try:
                sock.bind((options.host, port))
            except OSError as exc:
                raise OSError(f"cannot listen on {options.host}:{port}: {exc.strerror}") from None
            ports.append(sock.getsockname()[1])
        yield ports[0], ports[1]
    finally:
        for sock in held:
            sock.close()
