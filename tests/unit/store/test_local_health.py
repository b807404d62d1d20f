"""LocalHealth: the three-state breaker, cooldowns and moving averages, on a fake clock."""

from __future__ import annotations

import pytest

from server.config import CircuitConfig
from server.store.embedded.health import CircuitState, LocalHealth


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def health(clock: Clock, **circuit: float) -> LocalHealth:
    cfg = CircuitConfig(
        **{"consecutive_failures": 3, "cooldown_seconds": 10.0, **circuit}  # type: ignore[arg-type]
    )
    return LocalHealth(cfg, clock=clock)


def test_unknown_names_are_usable_and_cost_no_entry(clock: Clock) -> None:
    h = health(clock)
    assert h.acquire("d") and h.retry_in("d") == 0.0
    h.record_success("d")
    assert list(h.states()) == []


def test_opens_after_consecutive_failures(clock: Clock) -> None:
    h = health(clock)
    for _ in range(2):
        h.record_failure("d")
    assert h.acquire("d")
    h.record_success("d")  # a success resets the streak
    for _ in range(2):
        h.record_failure("d")
    assert h.snapshot("d").state is CircuitState.CLOSED
    h.record_failure("d")
    assert h.snapshot("d").state is CircuitState.OPEN
    assert not h.acquire("d")
    assert h.retry_in("d") == pytest.approx(10.0)


def test_opens_on_error_rate_once_enough_requests_were_seen(clock: Clock) -> None:
    h = health(clock, consecutive_failures=100, error_rate=0.5, min_requests=10)
    for _ in range(4):
        h.record_success("d", latency=0.1)
        h.record_failure("d")
    assert h.snapshot("d").state is CircuitState.CLOSED  # 8 requests < min_requests
    h.record_success("d", latency=0.1)
    h.record_failure("d")
    assert h.snapshot("d").state is CircuitState.OPEN  # 10 requests, 50% errors


def test_old_failures_decay_out_of_the_error_rate(clock: Clock) -> None:
    h = health(clock, consecutive_failures=100, error_rate=0.5, min_requests=10, window_seconds=30)
    for _ in range(9):
        h.record_failure("d")
    clock.now += 300  # ten windows later the old failures weigh almost nothing
    h.record_failure("d")
    assert h.snapshot("d").state is CircuitState.CLOSED
    assert h.snapshot("d").error_score < 0.51


def test_half_open_lets_exactly_one_probe_through(clock: Clock) -> None:
    h = health(clock, consecutive_failures=1)
    h.record_failure("d")
    clock.now += 9.9
    assert not h.acquire("d")
    clock.now += 0.2
    assert h.acquire("d")  # the probe
    assert h.snapshot("d").state is CircuitState.HALF_OPEN
    assert not h.acquire("d")  # everyone else waits for its outcome
    h.record_success("d", latency=0.2)
    assert h.snapshot("d").state is CircuitState.CLOSED
    assert h.acquire("d") and h.acquire("d")


def test_a_failed_probe_reopens_for_another_cooldown(clock: Clock) -> None:
    h = health(clock, consecutive_failures=1)
    h.record_failure("d")
    clock.now += 10.0
    assert h.acquire("d")
    h.record_failure("d")
    assert h.snapshot("d").state is CircuitState.OPEN
    assert h.retry_in("d") == pytest.approx(10.0)


def test_a_released_probe_can_be_claimed_again(clock: Clock) -> None:
    h = health(clock, consecutive_failures=1)
    h.record_failure("d")
    clock.now += 10.0
    assert h.acquire("d")
    h.release("d")
    assert h.acquire("d")


def test_trip_opens_at_once(clock: Clock) -> None:
    h = health(clock, consecutive_failures=5)
    h.record_failure("k", trip=True)
    assert not h.acquire("k")


def test_cooldown_is_separate_from_the_circuit(clock: Clock) -> None:
    h = health(clock)
    h.cool("k", 5.0)
    assert not h.acquire("k")
    assert h.retry_in("k") == pytest.approx(5.0)
    assert h.snapshot("k").state is CircuitState.CLOSED
    h.cool("k", 1.0)  # a shorter cooldown does not shorten the current one
    assert h.retry_in("k") == pytest.approx(5.0)
    clock.now += 5.0
    assert h.acquire("k")


def test_latency_moving_averages(clock: Clock) -> None:
    h = health(clock)
    h.record_success("d", latency=1.0, ttft=0.5)
    assert h.snapshot("d").latency == 1.0 and h.snapshot("d").ttft == 0.5
    for _ in range(30):
        h.record_success("d", latency=0.1, ttft=0.05)
    snap = h.snapshot("d")
    assert snap.latency is not None and snap.latency == pytest.approx(0.1, abs=0.01)
    assert snap.ttft is not None and snap.ttft == pytest.approx(0.05, abs=0.01)


def test_state_transitions_reach_listeners(clock: Clock) -> None:
    h = health(clock, consecutive_failures=1)
    seen: list[tuple[str, CircuitState]] = []
    h.listeners.append(lambda name, state: seen.append((name, state)))
    h.record_failure("d")
    clock.now += 10
    h.acquire("d")
    h.record_success("d")
    assert seen == [
        ("d", CircuitState.OPEN),
        ("d", CircuitState.HALF_OPEN),
        ("d", CircuitState.CLOSED),
    ]


def test_entries_are_bounded(clock: Clock) -> None:
    h = LocalHealth(CircuitConfig(), clock=clock, max_entries=50)
    h.record_failure("keep", trip=True)
    for i in range(500):
        h.record_success(f"d{i}", latency=0.1)
    names = dict(h.states())
    assert len(names) <= 50
    assert names["keep"] is CircuitState.OPEN  # open circuits are not evicted
