"""The embedded ``HealthStore``: circuit breakers, cooldowns and latency averages in process.

The router reads it to order candidates (`fastest`, `available`); the executor asks it before
each attempt and reports every outcome to it (``server.core.state.HealthStore``). Names are
opaque strings: a deployment id, or ``<deployment id>#<key index>`` for one key of a pool
(never the key itself).

The breaker is the classic three-state one (closed → open → half-open → closed): it opens after
``consecutive_failures`` in a row or when the error rate over about ``window_seconds`` reaches
``error_rate`` with at least ``min_requests`` seen; after ``cooldown_seconds`` exactly one probe
request is let through, whose outcome closes or re-opens it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator

from server.config import CircuitConfig
from server.core.state import CircuitState, HealthSnapshot

# Weight of the newest sample in the latency moving averages.
EWMA_ALPHA = 0.2
# Names tracked at most; closed, idle entries are dropped past this (direct `provider/model`
# names come from callers, so the map must not grow without bound).
MAX_ENTRIES = 10_000


class _Entry:
    __slots__ = (
        "consecutive",
        "cool_until",
        "errors",
        "last",
        "latency",
        "open_until",
        "probe",
        "state",
        "total",
        "ttft",
    )

    def __init__(self, now: float) -> None:
        self.state = CircuitState.CLOSED
        self.consecutive = 0
        self.open_until = 0.0
        self.cool_until = 0.0
        self.probe = False
        # Exponentially decayed request / error counts (time constant = window).
        self.total = 0.0
        self.errors = 0.0
        self.last = now
        self.ttft: float | None = None
        self.latency: float | None = None


_READY = HealthSnapshot(CircuitState.CLOSED, 0.0, 0.0, None, None)


class LocalHealth:
    """In-process ``HealthStore``: one dict, no locks (the event loop serialises access)."""

    def __init__(
        self,
        config: CircuitConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        cfg = config or CircuitConfig()
        self._threshold = cfg.consecutive_failures
        self._rate = cfg.error_rate
        self._min_requests = float(cfg.min_requests)
        self._window = cfg.window_seconds
        self._cooldown = cfg.cooldown_seconds
        self._clock = clock
        self._max = max_entries
        self._entries: dict[str, _Entry] = {}
        # Called with (name, new state) on every transition (metrics, logs).
        self.listeners: list[Callable[[str, CircuitState], None]] = []

    # --- executor side --------------------------------------------------------------------

    def acquire(self, name: str) -> bool:
        e = self._entries.get(name)
        if e is None:
            return True
        if e.state is CircuitState.CLOSED and e.cool_until == 0.0:
            return True
        now = self._clock()
        if e.cool_until > now:
            return False
        e.cool_until = 0.0
        if e.state is CircuitState.CLOSED:
            return True
        if e.state is CircuitState.OPEN:
            if now < e.open_until:
                return False
            self._set(name, e, CircuitState.HALF_OPEN)
        if e.probe:
            return False
        e.probe = True
        return True

    def release(self, name: str) -> None:
        e = self._entries.get(name)
        if e is not None:
            e.probe = False

    def record_success(
        self, name: str, latency: float | None = None, ttft: float | None = None
    ) -> None:
        e = self._entries.get(name)
        if e is None:
            if latency is None and ttft is None:
                return
            e = self._new(name)
        now = self._clock()
        self._decay(e, now)
        e.total += 1.0
        e.consecutive = 0
        if e.state is not CircuitState.CLOSED:
            # The probe (or a call that started before the circuit opened) got through.
            e.probe = False
            e.total = 1.0
            e.errors = 0.0
            self._set(name, e, CircuitState.CLOSED)
        if latency is not None:
            e.latency = (
                latency if e.latency is None else e.latency + EWMA_ALPHA * (latency - e.latency)
            )
        if ttft is not None:
            e.ttft = ttft if e.ttft is None else e.ttft + EWMA_ALPHA * (ttft - e.ttft)

    def record_failure(self, name: str, *, trip: bool = False) -> None:
        e = self._entries.get(name) or self._new(name)
        now = self._clock()
        self._decay(e, now)
        e.total += 1.0
        e.errors += 1.0
        e.consecutive += 1
        if e.state is CircuitState.OPEN:
            return
        if (
            trip
            or e.state is CircuitState.HALF_OPEN
            or e.consecutive >= self._threshold
            or (e.total >= self._min_requests and e.errors / e.total >= self._rate)
        ):
            e.probe = False
            e.open_until = now + self._cooldown
            self._set(name, e, CircuitState.OPEN)

    def cool(self, name: str, seconds: float) -> None:
        if seconds <= 0:
            return
        e = self._entries.get(name) or self._new(name)
        until = self._clock() + seconds
        if until > e.cool_until:
            e.cool_until = until

    def retry_in(self, name: str) -> float:
        e = self._entries.get(name)
        if e is None:
            return 0.0
        now = self._clock()
        wait = e.cool_until - now
        if e.state is CircuitState.OPEN:
            wait = max(wait, e.open_until - now)
        return wait if wait > 0.0 else 0.0

    # --- router / metrics side ------------------------------------------------------------

    def snapshot(self, name: str) -> HealthSnapshot:
        e = self._entries.get(name)
        if e is None:
            return _READY
        now = self._clock()
        factor = math.exp(-(now - e.last) / self._window)
        # One phantom success keeps a single old failure from ranking a deployment last forever.
        score = (e.errors * factor) / (e.total * factor + 1.0)
        return HealthSnapshot(e.state, self.retry_in(name), score, e.ttft, e.latency)

    def states(self) -> Iterator[tuple[str, CircuitState]]:
        for name, e in list(self._entries.items()):
            yield name, e.state

    # --- internals ------------------------------------------------------------------------

    def _new(self, name: str) -> _Entry:
        if len(self._entries) >= self._max:
            self._evict()
        e = _Entry(self._clock())
        self._entries[name] = e
        return e

    def _evict(self) -> None:
        # Oldest-inserted closed and not cooling entries go first; O(n) but only when full.
        now = self._clock()
        victims = [
            n
            for n, e in self._entries.items()
            if e.state is CircuitState.CLOSED and e.cool_until <= now
        ][: max(1, self._max // 10)]
        for n in victims:
            del self._entries[n]
        if not victims:
            self._entries.pop(next(iter(self._entries)))

    def _decay(self, e: _Entry, now: float) -> None:
        elapsed = now - e.last
        if elapsed > 0.0:
            factor = math.exp(-elapsed / self._window)
            e.total *= factor
            e.errors *= factor
            e.last = now

    def _set(self, name: str, e: _Entry, state: CircuitState) -> None:
        e.state = state
        for listener in self.listeners:
            listener(name, state)
