"""RecentTimings: what the requests page shows beside a ledger row (TTFT, attempts)."""

from __future__ import annotations

from switchboard.v1 import chat_pb2, types_pb2

from server.core.context import CallContext, Principal
from server.core.records import RequestRecord
from server.ui.timings import AttemptView, RecentTimings, Timing


def record(request_id: str, *, ttft: float | None = None) -> RequestRecord:
    ctx = CallContext(request_id, Principal("key-1", "one"))
    rec = RequestRecord(ctx, chat_pb2.ChatRequest(model="m"), stream=ttft is not None)
    rec.run.attempts.append(
        types_pb2.Attempt(
            deployment="a/m",
            outcome=types_pb2.ATTEMPT_OUTCOME_RATE_LIMITED,
            http_status=429,
            latency_ms=12.5,
        )
    )
    rec.run.attempts.append(
        types_pb2.Attempt(deployment="b/m", outcome=types_pb2.ATTEMPT_OUTCOME_SUCCESS)
    )
    if ttft is not None:
        rec.run.first_chunk_at = rec.run.started + ttft
    return rec


def test_get_returns_the_ttft_in_ms_and_each_attempt() -> None:
    timings = RecentTimings()
    timings.finish(record("r1", ttft=0.25))
    assert timings.get("r1") == Timing(
        250.0,
        (AttemptView("a/m", "rate_limited", 429, 12.5), AttemptView("b/m", "success", 0, 0.0)),
    )


def test_a_unary_request_has_no_ttft_and_an_unknown_id_no_timing() -> None:
    timings = RecentTimings()
    timings.finish(record("r1"))
    got = timings.get("r1")
    assert got is not None and got.ttft_ms is None and len(got.attempts) == 2
    assert timings.get("r2") is None


def test_only_the_newest_capacity_requests_are_kept() -> None:
    timings = RecentTimings(capacity=3)
    for i in range(5):
        timings.finish(record(f"r{i}"))
    assert [timings.get(f"r{i}") is not None for i in range(5)] == [False, False, True, True, True]


def test_attempts_added_to_the_run_after_finish_are_not_shown() -> None:
    timings = RecentTimings()
    rec = record("r1")
    timings.finish(rec)
    rec.run.attempts.append(types_pb2.Attempt(deployment="c/m"))
    got = timings.get("r1")
    assert got is not None and [a.deployment for a in got.attempts] == ["a/m", "b/m"]
