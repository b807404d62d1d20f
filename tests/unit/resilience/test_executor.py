"""The executor's decisions: retries, fallback, Retry-After, circuits, key pools, deadlines,
streams before and after their first chunk, cancellation."""

from __future__ import annotations

import asyncio
import time

import pytest
from switchboard.v1 import chat_pb2, types_pb2

from server.config import CircuitConfig, Config, DeploymentConfig, RetryConfig, TimeoutConfig
from server.core import errors as e
from server.core.records import Execution
from server.resilience.executor import Executor
from server.routing.router import Router
from server.store.embedded.health import CircuitState, LocalHealth
from tests.unit.resilience.scripted import (
    ScriptedProvider,
    Step,
    catalog,
    config,
    ctx,
    request,
)

OUT = types_pb2

SERVER = e.UpstreamServerError("boom", provider="x", status=500)


def rate_limited(retry_after: float | None = None) -> e.UpstreamRateLimitedError:
    return e.UpstreamRateLimitedError(
        "slow down", provider="x", status=429, retry_after=retry_after
    )


def setup(
    *providers: ScriptedProvider, cfg: Config | None = None, keys: tuple[str, ...] = ("sk-one",)
) -> tuple[Router, Executor, LocalHealth]:
    cfg = cfg or config(*(p.name for p in providers))
    health = LocalHealth(cfg.circuit)
    router = Router(catalog(cfg, *providers, keys=keys), health=health, explore=0.0)
    return router, Executor(cfg, health=health), health


async def run_chat(
    router: Router, executor: Executor, within: float = 10.0, **fields: object
) -> tuple[chat_pb2.ChatResponse, Execution]:
    req = request(**fields)
    run = Execution()
    response = await executor.chat(router.plan(req), req, ctx(within), run)
    return response, run


async def run_stream(
    router: Router, executor: Executor, within: float = 10.0
) -> tuple[list[chat_pb2.StreamChatResponse], Execution]:
    req = request()
    run = Execution()
    frames = [
        f async for f in executor.stream(router.plan(req, stream=True), req, ctx(within), run)
    ]
    return frames, run


def outcomes(run: Execution) -> list[tuple[str, int]]:
    return [(a.deployment, a.outcome) for a in run.attempts]


# --- non-streamed ----------------------------------------------------------------------------


async def test_retryable_failures_retry_then_fall_back_to_the_healthy_one() -> None:
    a = ScriptedProvider("a", Step(error=SERVER), Step(error=SERVER))
    b = ScriptedProvider("b")
    router, executor, _ = setup(a, b)
    response, run = await run_chat(router, executor)
    assert response.message.content[0].text == "ok fine"
    assert run.deployment is not None and run.deployment.id == "b/m"
    assert outcomes(run) == [
        ("a/m", OUT.ATTEMPT_OUTCOME_SERVER_ERROR),
        ("a/m", OUT.ATTEMPT_OUTCOME_SERVER_ERROR),
        ("b/m", OUT.ATTEMPT_OUTCOME_SUCCESS),
    ]
    assert run.attempts[0].http_status == 500 and run.attempts[0].error_reason == SERVER.reason
    assert (run.retries, run.fallbacks) == (1, 1)
    assert len(a.calls) == 2 and len(b.calls) == 1


@pytest.mark.parametrize(
    "error",
    [
        e.UpstreamBadRequestError("bad temperature", provider="x", status=400),
        e.UpstreamNotFoundError("no such model", provider="x", status=404),
        e.UpstreamAuthError("credentials refused", provider="x", status=401),
    ],
)
async def test_non_retryable_failures_do_not_fall_back(error: e.GatewayError) -> None:
    a = ScriptedProvider("a", Step(error=error))
    b = ScriptedProvider("b")
    router, executor, _ = setup(a, b)
    with pytest.raises(type(error)) as info:
        await run_chat(router, executor)
    assert info.value is error
    assert len(a.calls) == 1 and b.calls == []


async def test_short_retry_after_is_honoured_on_the_same_deployment() -> None:
    a = ScriptedProvider("a", Step(error=rate_limited(0.2)))
    b = ScriptedProvider("b")
    router, executor, _ = setup(a, b)
    started = time.monotonic()
    _, run = await run_chat(router, executor)
    assert time.monotonic() - started >= 0.19
    assert run.deployment is not None and run.deployment.id == "a/m"
    assert len(a.calls) == 2 and b.calls == []


async def test_long_retry_after_moves_to_the_next_candidate_at_once() -> None:
    a = ScriptedProvider("a", Step(error=rate_limited(30.0)))
    b = ScriptedProvider("b")
    router, executor, health = setup(a, b)
    started = time.monotonic()
    _, run = await run_chat(router, executor)
    assert time.monotonic() - started < 0.5
    assert run.deployment is not None and run.deployment.id == "b/m"
    assert len(a.calls) == 1
    # The key sits out for the Retry-After; the deployment's circuit is untouched.
    assert health.retry_in("a/m#0") > 25 and health.snapshot("a/m").state is CircuitState.CLOSED
    # The next request skips `a` without calling it.
    _, run2 = await run_chat(router, executor)
    assert outcomes(run2)[0] == ("a/m", OUT.ATTEMPT_OUTCOME_RATE_LIMITED)
    assert len(a.calls) == 1


async def test_all_rate_limited_is_429_with_the_smallest_retry_after() -> None:
    a = ScriptedProvider("a", Step(error=rate_limited(30.0)))
    b = ScriptedProvider("b", Step(error=rate_limited(20.0)))
    router, executor, _ = setup(a, b)
    with pytest.raises(e.AllAttemptsFailedError) as info:
        await run_chat(router, executor)
    err = info.value
    assert err.http_status == 429 and err.retry_after == 20.0
    assert len(err.errors) == 2 and "slow down" in err.message


async def test_a_429_on_one_key_cools_that_key_and_uses_the_next() -> None:
    a = ScriptedProvider("a", Step(error=rate_limited(30.0)))
    router, executor, health = setup(a, keys=("sk-one", "sk-two"))
    _, run = await run_chat(router, executor)
    assert [c.api_key for c in a.calls] == ["sk-one", "sk-two"]
    assert outcomes(run) == [
        ("a/m", OUT.ATTEMPT_OUTCOME_RATE_LIMITED),
        ("a/m", OUT.ATTEMPT_OUTCOME_SUCCESS),
    ]
    assert run.retries == 1
    # Later requests use only the key that is not cooling down; the provider is not cooled.
    for _ in range(3):
        await run_chat(router, executor)
    assert [c.api_key for c in a.calls[2:]] == ["sk-two"] * 3
    assert health.acquire("a/m")


async def test_circuit_opens_skips_and_recovers_through_a_half_open_probe() -> None:
    cfg = config(
        "a",
        "b",
        retry=RetryConfig(max_attempts_per_deployment=1),
        circuit=CircuitConfig(consecutive_failures=2, cooldown_seconds=0.2),
    )
    a = ScriptedProvider("a", Step(error=SERVER), Step(error=SERVER))
    b = ScriptedProvider("b")
    router, executor, health = setup(a, b, cfg=cfg)
    for _ in range(2):
        _, run = await run_chat(router, executor)
        assert run.deployment is not None and run.deployment.id == "b/m"
    assert health.snapshot("a/m").state is CircuitState.OPEN
    _, run = await run_chat(router, executor)
    assert outcomes(run) == [
        ("a/m", OUT.ATTEMPT_OUTCOME_CIRCUIT_OPEN),
        ("b/m", OUT.ATTEMPT_OUTCOME_SUCCESS),
    ]
    assert len(a.calls) == 2
    await asyncio.sleep(0.25)
    _, run = await run_chat(router, executor)
    assert run.deployment is not None and run.deployment.id == "a/m"
    assert health.snapshot("a/m").state is CircuitState.CLOSED


async def test_only_one_half_open_probe_at_a_time() -> None:
    cfg = config(
        "a",
        "b",
        retry=RetryConfig(max_attempts_per_deployment=1),
        circuit=CircuitConfig(consecutive_failures=1, cooldown_seconds=0.1),
    )
    a = ScriptedProvider("a", Step(error=SERVER), Step(delay=0.2))
    b = ScriptedProvider("b")
    router, executor, _ = setup(a, b, cfg=cfg)
    await run_chat(router, executor)
    await asyncio.sleep(0.15)
    (_, probe), (_, other) = await asyncio.gather(
        run_chat(router, executor), run_chat(router, executor)
    )
    assert probe.deployment is not None and probe.deployment.id == "a/m"
    assert outcomes(other) == [
        ("a/m", OUT.ATTEMPT_OUTCOME_CIRCUIT_OPEN),
        ("b/m", OUT.ATTEMPT_OUTCOME_SUCCESS),
    ]
    assert len(a.calls) == 2


async def test_failed_probe_reopens_the_circuit() -> None:
    cfg = config(
        "a",
        "b",
        retry=RetryConfig(max_attempts_per_deployment=1),
        circuit=CircuitConfig(consecutive_failures=1, cooldown_seconds=0.1),
    )
    a = ScriptedProvider("a", Step(error=SERVER), Step(error=SERVER))
    b = ScriptedProvider("b")
    router, executor, health = setup(a, b, cfg=cfg)
    await run_chat(router, executor)
    await asyncio.sleep(0.15)
    _, run = await run_chat(router, executor)
    assert [o for _, o in outcomes(run)] == [
        OUT.ATTEMPT_OUTCOME_SERVER_ERROR,
        OUT.ATTEMPT_OUTCOME_SUCCESS,
    ]
    assert health.snapshot("a/m").state is CircuitState.OPEN
    assert health.retry_in("a/m") > 0.05


async def test_deadline_bounds_the_whole_request_and_cancels_the_upstream() -> None:
    a = ScriptedProvider("a", Step(stall=True))
    b = ScriptedProvider("b", Step(stall=True))
    router, executor, health = setup(a, b)
    started = time.monotonic()
    with pytest.raises(e.DeadlineExceededError) as info:
        await run_chat(router, executor, within=0.3)
    assert 0.28 <= time.monotonic() - started < 0.6
    assert info.value.http_status == 504
    assert a.cancelled == 1 and b.calls == []
    # The caller's short deadline says nothing about the upstream's health.
    assert health.snapshot("a/m").error_score == 0.0


async def test_attempt_timeout_moves_on_to_the_next_candidate() -> None:
    cfg = config(
        "a",
        "b",
        retry=RetryConfig(max_attempts_per_deployment=1),
        timeouts=TimeoutConfig(attempt=0.1),
    )
    a = ScriptedProvider("a", Step(stall=True))
    b = ScriptedProvider("b")
    router, executor, health = setup(a, b, cfg=cfg)
    _, run = await run_chat(router, executor)
    assert outcomes(run) == [
        ("a/m", OUT.ATTEMPT_OUTCOME_TIMEOUT),
        ("b/m", OUT.ATTEMPT_OUTCOME_SUCCESS),
    ]
    assert a.cancelled == 1
    assert a.calls[0].timeout is not None and a.calls[0].timeout <= 0.1
    assert health.snapshot("a/m").error_score > 0


async def test_client_cancel_reaches_the_upstream_and_is_not_held_against_it() -> None:
    a = ScriptedProvider("a", Step(stall=True))
    router, executor, health = setup(a)
    task = asyncio.create_task(run_chat(router, executor))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert a.cancelled == 1
    assert health.snapshot("a/m").error_score == 0.0
    assert executor.inflight("a/m") == 0


async def test_a_deployment_at_its_concurrency_cap_is_skipped() -> None:
    cfg = Config(
        deployments=[
            DeploymentConfig(provider="a", model="m", max_concurrency=1),
            DeploymentConfig(provider="b", model="m"),
        ],
        routes=[{"name": "r", "deployments": ["a/m", "b/m"]}],  # type: ignore[list-item]
    )
    a = ScriptedProvider("a", Step(delay=0.1))
    b = ScriptedProvider("b")
    router, executor, _ = setup(a, b, cfg=cfg)
    (_, first), (_, second) = await asyncio.gather(
        run_chat(router, executor), run_chat(router, executor)
    )
    assert first.deployment is not None and first.deployment.id == "a/m"
    assert outcomes(second) == [
        ("a/m", OUT.ATTEMPT_OUTCOME_RATE_LIMITED),
        ("b/m", OUT.ATTEMPT_OUTCOME_SUCCESS),
    ]
    assert second.attempts[0].error_reason == "DEPLOYMENT_BUSY"


async def test_an_unsupported_feature_tries_the_next_candidate() -> None:
    a = ScriptedProvider("a", Step(error=e.UnsupportedFeatureError("no images here")))
    b = ScriptedProvider("b")
    router, executor, _ = setup(a, b)
    _, run = await run_chat(router, executor)
    assert run.deployment is not None and run.deployment.id == "b/m"


async def test_a_revoked_key_in_a_pool_is_skipped_for_the_next_key() -> None:
    a = ScriptedProvider("a", Step(error=e.UpstreamAuthError("refused", provider="a", status=401)))
    router, executor, health = setup(a, keys=("sk-old", "sk-new"))
    await run_chat(router, executor)
    assert [c.api_key for c in a.calls] == ["sk-old", "sk-new"]
    assert health.snapshot("a/m#0").state is CircuitState.OPEN
    await run_chat(router, executor)
    assert a.calls[-1].api_key == "sk-new"


# --- streamed --------------------------------------------------------------------------------


async def test_stream_falls_back_before_its_first_chunk() -> None:
    a = ScriptedProvider(
        "a", Step(error=e.UpstreamStreamError("cut", provider="a")), Step(no_end=True)
    )
    b = ScriptedProvider("b", Step(text="from b"))
    router, executor, _ = setup(a, b)
    frames, run = await run_stream(router, executor)
    assert [f.text.text for f in frames if f.HasField("text")] == ["from ", "b "]
    assert frames[-1].HasField("end")
    assert outcomes(run) == [
        ("a/m", OUT.ATTEMPT_OUTCOME_STREAM_ERROR),
        ("a/m", OUT.ATTEMPT_OUTCOME_STREAM_ERROR),
        ("b/m", OUT.ATTEMPT_OUTCOME_SUCCESS),
    ]
    assert a.closed_streams == 2


async def test_stream_that_stalls_before_its_first_chunk_falls_back() -> None:
    cfg = config(
        "a",
        "b",
        retry=RetryConfig(max_attempts_per_deployment=1),
        timeouts=TimeoutConfig(attempt=0.1),
    )
    a = ScriptedProvider("a", Step(stall=True))
    b = ScriptedProvider("b")
    router, executor, _ = setup(a, b, cfg=cfg)
    frames, run = await run_stream(router, executor)
    assert frames[-1].HasField("end")
    assert outcomes(run)[0] == ("a/m", OUT.ATTEMPT_OUTCOME_TIMEOUT)
    assert a.cancelled == 1 and a.closed_streams == 1


async def test_stream_cut_after_its_first_chunk_ends_with_an_error_not_a_fallback() -> None:
    a = ScriptedProvider(
        "a", Step(text="one two three", after=1, error=e.UpstreamStreamError("cut", provider="a"))
    )
    b = ScriptedProvider("b")
    router, executor, _ = setup(a, b)
    run = Execution()
    req = request()
    got: list[chat_pb2.StreamChatResponse] = []
    with pytest.raises(e.UpstreamStreamError):
        async for frame in executor.stream(router.plan(req), req, ctx(), run):
            got.append(frame)
    assert [f.text.text for f in got] == ["one "]
    assert b.calls == []
    assert outcomes(run) == [("a/m", OUT.ATTEMPT_OUTCOME_STREAM_ERROR)]


async def test_stream_that_ends_without_its_final_frame_is_an_error() -> None:
    a = ScriptedProvider("a", Step(text="one two three", after=2, no_end=True))
    router, executor, _ = setup(a)
    with pytest.raises(e.UpstreamStreamError, match="final frame"):
        await run_stream(router, executor)


async def test_stream_that_stalls_after_its_first_chunk_times_out() -> None:
    cfg = config("a", timeouts=TimeoutConfig(stream_idle=0.1))
    a = ScriptedProvider("a", Step(text="one two", after=1, stall=True))
    router, executor, health = setup(a, cfg=cfg)
    started = time.monotonic()
    with pytest.raises(e.UpstreamTimeoutError, match="stalled"):
        await run_stream(router, executor)
    assert 0.09 <= time.monotonic() - started < 0.5
    assert a.cancelled == 1 and a.closed_streams == 1
    assert health.snapshot("a/m").error_score > 0


async def test_slow_consumer_does_not_count_as_an_upstream_stall() -> None:
    cfg = config("a", timeouts=TimeoutConfig(stream_idle=0.05))
    a = ScriptedProvider("a", Step(text="one two three"))
    router, executor, _ = setup(a, cfg=cfg)
    req = request()
    frames = []
    async for frame in executor.stream(router.plan(req), req, ctx(), Execution()):
        frames.append(frame)
        await asyncio.sleep(0.1)
    assert frames[-1].HasField("end") and len(frames) == 4


async def test_consumer_going_away_closes_the_upstream_stream() -> None:
    a = ScriptedProvider("a", Step(text="one two three four", chunk_delay=0.01))
    router, executor, health = setup(a)
    req = request()
    gen = executor.stream(router.plan(req), req, ctx(), Execution())
    first = await gen.__anext__()
    assert first.text.text == "one "
    await gen.aclose()
    assert a.closed_streams == 1
    assert health.snapshot("a/m").error_score == 0.0
    assert executor.inflight("a/m") == 0


async def test_stream_deadline_applies_after_the_first_chunk_too() -> None:
    a = ScriptedProvider("a", Step(text="one two", after=1, stall=True))
    router, executor, _ = setup(a)
    with pytest.raises(e.DeadlineExceededError):
        await run_stream(router, executor, within=0.2)
    assert a.cancelled == 1


async def test_when_every_candidate_is_briefly_blocked_it_waits_for_the_first_one() -> None:
    a = ScriptedProvider("a", Step(error=rate_limited(0.3)))
    b = ScriptedProvider("b", Step(error=rate_limited(0.15)))
    cfg = config("a", "b", retry=RetryConfig(max_attempts_per_deployment=1, max_retry_after=1.0))
    router, executor, _ = setup(a, b, cfg=cfg)
    with pytest.raises(e.AllAttemptsFailedError):
        await run_chat(router, executor)  # both answer 429 once: nothing was skipped yet
    started = time.monotonic()
    _, run = await run_chat(router, executor)
    # Both keys are cooling: skip both, wait for `b` (the sooner), then call it.
    assert 0.1 <= time.monotonic() - started < 0.3
    assert outcomes(run) == [
        ("a/m", OUT.ATTEMPT_OUTCOME_RATE_LIMITED),
        ("b/m", OUT.ATTEMPT_OUTCOME_RATE_LIMITED),
        ("a/m", OUT.ATTEMPT_OUTCOME_RATE_LIMITED),  # second pass: `a` still cooling
        ("b/m", OUT.ATTEMPT_OUTCOME_SUCCESS),
    ]
    assert run.attempts[0].error_reason == "UPSTREAM_RATE_LIMITED"
    assert len(a.calls) == 1 and len(b.calls) == 2


async def test_skip_only_passes_wait_at_most_max_retry_after_in_all() -> None:
    # Other requests keep every key cooling: this one waits, but no longer than the bound, and
    # passes that only skipped do not use up retry.max_rounds (1 here).
    cfg = config(
        "a",
        "b",
        retry=RetryConfig(max_attempts_per_deployment=1, max_retry_after=0.3, max_rounds=1),
    )
    a, b = ScriptedProvider("a"), ScriptedProvider("b")
    router, executor, health = setup(a, b, cfg=cfg)
    health.cool("a/m#0", 5.0)
    health.cool("b/m#0", 0.2)
    started = time.monotonic()
    _, run = await run_chat(router, executor)
    assert 0.15 <= time.monotonic() - started < 0.35 and a.calls == [] and len(b.calls) == 1
    assert outcomes(run)[-1] == ("b/m", OUT.ATTEMPT_OUTCOME_SUCCESS)
    health.cool("a/m#0", 5.0)
    health.cool("b/m#0", 5.0)
    started = time.monotonic()
    with pytest.raises(e.AllAttemptsRateLimitedError):
        await run_chat(router, executor)
    assert time.monotonic() - started < 0.05  # 5 s is past max_retry_after: no wait at all


async def test_no_second_pass_when_the_wait_is_too_long() -> None:
    cfg = config(
        "a",
        retry=RetryConfig(max_attempts_per_deployment=1, max_retry_after=1.0),
        circuit=CircuitConfig(consecutive_failures=1, cooldown_seconds=5.0),
    )
    a = ScriptedProvider("a", Step(error=SERVER))
    router, executor, _ = setup(a, cfg=cfg)
    with pytest.raises(e.UpstreamServerError):
        await run_chat(router, executor)
    started = time.monotonic()
    with pytest.raises(e.UpstreamConnectionError, match="circuit open"):
        await run_chat(router, executor)
    assert time.monotonic() - started < 0.05


@pytest.mark.parametrize("streamed", [False, True])
async def test_an_adapter_bug_propagates_and_leaves_no_timer_behind(streamed: bool) -> None:
    cfg = config("a", "b", timeouts=TimeoutConfig(attempt=0.1, stream_idle=0.1))
    a = ScriptedProvider("a", Step(error=RuntimeError("adapter bug")))  # type: ignore[arg-type]
    b = ScriptedProvider("b")
    router, executor, health = setup(a, b, cfg=cfg)
    with pytest.raises(RuntimeError):
        if streamed:
            await run_stream(router, executor)
        else:
            await run_chat(router, executor)
    assert b.calls == []
    await asyncio.sleep(0.2)  # a forgotten timer would cancel this sleep
    assert health.acquire("a/m") and executor.inflight("a/m") == 0


async def test_closing_right_after_the_final_frame_counts_as_a_complete_stream() -> None:
    # Transports stop reading at the end frame and close the generator there.
    a = ScriptedProvider("a", Step(text="one two"))
    router, executor, health = setup(a)
    req = request()
    run = Execution()
    gen = executor.stream(router.plan(req, stream=True), req, ctx(), run)
    async for frame in gen:
        if frame.HasField("end"):
            break
    await gen.aclose()
    snap = health.snapshot("a/m")
    assert snap.ttft is not None and snap.latency is not None
    assert outcomes(run) == [("a/m", OUT.ATTEMPT_OUTCOME_SUCCESS)]
    assert run.attempts[0].latency_ms > 0
