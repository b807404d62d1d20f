"""Runs a plan: tries its candidates in order, with retries, circuit breakers and deadlines.

One attempt loop (``Executor._run``) serves chat and stream alike, as openai-python's
``_base_client.request()`` serves both: the two differ only in what one attempt does. A chat
attempt is the adapter's ``chat`` call; a stream attempt is the adapter's ``stream`` read up to
its first content frame, which commits the request to that deployment. The loop returns the
attempt's result and a ``_Lease`` on the deployment; a committed stream is then relayed after
the loop has returned, so no fallback after the first chunk follows from the structure: there
is no loop left to fall back in.

Per candidate: skip it when its circuit is open (or every pool key is cooling down, or it is at
its concurrency cap); otherwise call it with the remaining deadline. What a failure does comes
from its class (``server.core.errors``): a ``retryable`` one is retried on the same deployment
after capped exponential backoff with full jitter, or after the upstream's Retry-After when that
fits the deadline and ``retry.max_retry_after`` (a longer one moves on to the next candidate at
once); a key-scoped one (``HealthEffect.COOL_KEY`` after a 429, ``TRIP_KEY`` after a refused
key) first tries the next key of the pool at once; a non-retryable one with ``fallback``
(``UnsupportedFeatureError``) moves to the next candidate; any other ends the request. When a
pass over the candidates skipped some that become usable soon (cooling key, open circuit), the
executor waits for the first one and makes another pass (``retry.max_rounds``). When every
candidate fails the caller gets one ``AllAttemptsFailedError`` listing each attempt (or that one
error when there was only one). Skipped candidates are recorded as attempts without a call.

After the first chunk a failure (an idle stall past ``timeouts.stream_idle``, the request
deadline, a stream ending without its final frame) raises, so the transport ends the stream
with an error instead of a silent truncation; the committed attempt's record and the health
store learn it through the same bookkeeping as a failed call.

Timeouts are checked by the event loop's one watchdog tick (``core.deadlines``) over the
in-flight attempts instead of an ``asyncio.timeout`` per attempt and per streamed chunk, which
measured ~9 µs per chunk on this machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from switchboard.v1 import chat_pb2, types_pb2

from server.config import Config
from server.core import errors as e
from server.core.context import CallContext
from server.core.deadlines import Watchdog, watchdog
from server.core.errors import GatewayError, HealthEffect
from server.core.records import Execution, Plan
from server.core.state import CircuitState, HealthStore
from server.providers.base import Capability, Embedder, UpstreamCall
from server.providers.http_client import upstream_traceparent
from server.resilience.retry import RetryPolicy
from server.routing.catalog import Deployment
from server.store.embedded.health import LocalHealth

if TYPE_CHECKING:
    from server.observability.metrics import Metrics
    from server.observability.tracing import Tracing

# Longest a key sits out after a 429 whose Retry-After is huge (or malicious).
MAX_KEY_COOLDOWN = 300.0
# A retry is not worth starting with less time than this left before the deadline.
MIN_ATTEMPT_TIME = 0.01
# Shortest wait between passes over the candidates (so passes cannot spin).
MIN_ROUND_WAIT = 0.005
_DEADLINE_SLACK = 0.002
# Per-deployment counters kept at most (direct `provider/model` names come from callers).
MAX_SLOTS = 8192

_SUCCESS = types_pb2.ATTEMPT_OUTCOME_SUCCESS

T = TypeVar("T")
Frame = chat_pb2.StreamChatResponse
# What one attempt does with a deployment and its call: a completion, or an opened stream.
AttemptFn = Callable[[Deployment, UpstreamCall], Awaitable[T]]


class Executor:
    """Fallback executor with retries, per-deployment/per-key circuits and deadlines."""

    def __init__(
        self,
        config: Config,
        *,
        health: HealthStore | None = None,
        metrics: Metrics | None = None,
        policy: RetryPolicy | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.config = config
        # One CLIENT span per attempt when tracing is on (observability.tracing).
        self.tracing = tracing
        self.health: HealthStore = health if health is not None else LocalHealth(config.circuit)
        self.metrics = metrics
        self.policy = policy or RetryPolicy(config.retry)
        self._attempt_timeout = config.timeouts.attempt
        self._idle_timeout = config.timeouts.stream_idle
        self._request_timeout = config.timeouts.request
        self._slots: dict[str, _Slot] = {}

    # --- the two kinds of call ------------------------------------------------------------

    async def chat(
        self, plan: Plan, request: chat_pb2.ChatRequest, ctx: CallContext, run: Execution
    ) -> chat_pb2.ChatResponse:
        """One completion from the first candidate that answers."""
        response, lease = await self._run(plan, ctx, run, lambda d, c: d.provider.chat(request, c))
        lease.succeeded(run)
        return response

    async def stream(
        self, plan: Plan, request: chat_pb2.ChatRequest, ctx: CallContext, run: Execution
    ) -> AsyncGenerator[Frame, None]:
        """Frames from the first candidate that produces a chunk; no fallback after that.

        The loop ends at the first chunk; what follows relays the committed stream under the
        idle and deadline timer and ends its lease (inline, not a nested generator: a layer per
        streamed chunk is measurable)."""
        (first, upstream, run.meter), lease = await self._run(
            plan, ctx, run, lambda d, c: _first_frame(d, c, request)
        )
        timer = lease.timer
        lease.committed(run)
        timer.rearm(self._idle_timeout)
        saw_end = first.WhichOneof("frame") == "end"
        delivered = _chars(first)
        try:
            timer.waiting = False
            yield first
            timer.last = time.monotonic()
            timer.waiting = True
            try:
                # Per chunk: two attribute writes and a clock read; the watchdog does the
                # timing (idle stall, request deadline) while we wait.
                async for frame in upstream:
                    timer.waiting = False
                    kind = frame.WhichOneof("frame")
                    if kind == "text":
                        delivered += len(frame.text.text)
                    elif kind == "end":
                        saw_end = True
                    else:
                        delivered += _chars(frame)
                    yield frame
                    timer.last = time.monotonic()
                    timer.waiting = True
            except asyncio.CancelledError:
                if not timer.expired():
                    raise
                if time.monotonic() >= timer.deadline - _DEADLINE_SLACK:
                    raise e.DeadlineExceededError(
                        "The request deadline passed while streaming."
                    ) from None
                raise e.UpstreamTimeoutError(
                    f"{lease.d.id}: the stream stalled for more than {self._idle_timeout:g}s",
                    provider=lease.d.provider_name,
                ) from None
            if not saw_end:
                raise e.UpstreamStreamError(
                    f"{lease.d.id}: the stream ended without its final frame",
                    provider=lease.d.provider_name,
                )
        except GatewayError as err:
            # After the first chunk: the transport ends the stream with this error.
            lease.failed_after_commit(err)
            raise
        except BaseException:
            if saw_end:
                # Closed right after the final frame (transports stop reading there): a
                # complete stream.
                lease.succeeded(run)
            else:
                # The client went away (GeneratorExit / cancelled): not the upstream's fault.
                lease.abandon()
            raise
        else:
            lease.succeeded(run)
        finally:
            run.delivered = delivered
            timer.stop()
            await _close(upstream)

    async def embed(
        self, plan: Plan, request: chat_pb2.EmbedRequest, ctx: CallContext, run: Execution
    ) -> chat_pb2.EmbedResponse:
        """Embedding vectors from the first candidate that answers (the same attempt loop)."""
        response, lease = await self._run(plan, ctx, run, lambda d, c: _embed(d, c, request))
        lease.succeeded(run)
        return response

    async def count_tokens(
        self, plan: Plan, request: chat_pb2.ChatRequest, ctx: CallContext, run: Execution
    ) -> int:
        """A provider's exact input token count (the candidates must offer ``count_tokens``)."""
        count, lease = await self._run(
            plan,
            ctx,
            run,
            lambda d, c: d.provider.count_tokens(request, c),  # type: ignore[attr-defined]
        )
        lease.succeeded(run)
        return count

    def inflight(self, deployment_id: str) -> int:
        """Calls in flight on a deployment (for max_concurrency; tests read it too)."""
        slot = self._slots.get(deployment_id)
        return 0 if slot is None else slot.inflight

    # --- the one attempt loop -------------------------------------------------------------

    async def _run(
        self, plan: Plan, ctx: CallContext, run: Execution, once: AttemptFn[T]
    ) -> tuple[T, _Lease]:
        """The first successful attempt's result and its lease (the caller ends the lease)."""
        deadline = ctx.deadline
        if deadline is None:
            deadline = time.monotonic() + self._request_timeout
        t = _Tries(run, deadline)
        rounds = 0
        while True:
            skipped: list[Deployment] = []
            for d in plan.candidates:
                if t.errors:
                    self._fallback(plan, run)
                slot = self._enter(d, t)
                if slot is None:
                    skipped.append(d)
                    continue
                handed_out = False
                try:
                    tries = 0
                    while True:
                        lease = self._lease(d, slot, t)
                        if lease is None:
                            skipped.append(d)
                            break
                        t.calls += 1
                        traced = None
                        if self.tracing is not None and run.span is not None:
                            lease.span, traceparent = self.tracing.attempt(run.span, d, plan)
                            traced = upstream_traceparent.set(traceparent)
                        try:
                            result = await self._try(once, lease)
                        except GatewayError as exc:
                            tries += 1
                            try:
                                again = await self._after_failure(t, lease, exc, tries)
                            finally:
                                lease.trace(run.attempts[-1] if run.attempts else None)
                            if again:
                                continue
                            break
                        finally:
                            if traced is not None:
                                upstream_traceparent.reset(traced)
                        handed_out = lease.owns_slot = True
                        return result, lease
                finally:
                    if not handed_out:
                        slot.inflight -= 1
            rounds += 1
            wait = self._round_wait(t, plan, skipped, rounds)
            if wait is None:
                raise t.exhausted()
            run.retries += 1
            t.waited += wait
            await asyncio.sleep(wait)

    async def _try(self, once: AttemptFn[T], lease: _Lease) -> T:
        """One attempt under its timer; a timeout becomes ``UpstreamTimeoutError``. The timer
        stays armed on success: the lease's owner stops or re-arms it."""
        timer = lease.timer
        try:
            return await once(lease.d, lease.call)
        except asyncio.CancelledError:
            if not timer.expired():
                # Cancelled from outside (the client went away): no verdict on the upstream.
                lease.abandon()
                raise
            raise _timeout_error(lease.d, lease.call.timeout or 0.0) from None
        except GatewayError:
            timer.stop()
            raise
        except Exception:
            # An adapter bug, not an upstream failure: no verdict on its health.
            timer.stop()
            lease.abandon()
            raise

    # --- steps ----------------------------------------------------------------------------

    def _slot(self, d: Deployment) -> _Slot:
        slot = self._slots.get(d.id)
        if slot is None:
            if len(self._slots) >= MAX_SLOTS:
                for name in [n for n, s in self._slots.items() if not s.inflight]:
                    del self._slots[name]
            slot = self._slots[d.id] = _Slot()
        return slot

    def _enter(self, d: Deployment, t: _Tries) -> _Slot | None:
        """Admits a candidate (circuit, concurrency cap) and counts it in flight."""
        if not self.health.acquire(d.id):
            wait = self.health.retry_in(d.id)
            self._skip(
                d,
                t,
                e.CircuitOpenError(
                    f"{d.id}: circuit open, skipped", provider=d.provider_name, retry_after=wait
                ),
            )
            return None
        slot = self._slot(d)
        cap = d.max_concurrency
        if cap is not None and slot.inflight >= cap:
            self.health.release(d.id)
            self._skip(
                d,
                t,
                e.DeploymentBusyError(
                    f"{d.id}: at its limit of {cap} concurrent requests",
                    provider=d.provider_name,
                ),
            )
            return None
        slot.inflight += 1
        return slot

    def _lease(self, d: Deployment, slot: _Slot, t: _Tries) -> _Lease | None:
        """The next attempt on ``d``: a usable key, its call and its timer; None (recorded as
        a skip) when every key is cooling down or open. Raises when the deadline has passed."""
        started = time.monotonic()
        remaining = t.deadline - started
        if remaining <= 0.0:
            self.health.release(d.id)
            raise t.deadline_error()
        limit = d.timeout or self._attempt_timeout
        budget = limit if limit < remaining else remaining
        k = self._pick_key(d, slot)
        if k < 0:
            self._no_key(d, t)
            return None
        call = self._call(d, slot, k, budget, limit)
        timer = _Timer(watchdog(), budget, t.deadline)
        return _Lease(self, d, slot, k, call, started, timer)

    def _call(
        self, d: Deployment, slot: _Slot, k: int, budget: float, limit: float
    ) -> UpstreamCall:
        """The attempt's UpstreamCall; the common full-budget ones are built once per key."""
        if budget == limit:
            calls = slot.calls
            if calls is None or calls[0].timeout != budget:
                calls = slot.calls = tuple(
                    UpstreamCall(model=d.model, api_key=key, timeout=budget) for key in d.api_keys
                )
            return calls[k]
        return UpstreamCall(model=d.model, api_key=d.api_keys[k], timeout=budget)

    def _pick_key(self, d: Deployment, slot: _Slot) -> int:
        """Index of a usable key of the pool (round-robin), or -1 when all are cooling/open."""
        names = d.key_names
        n = len(names)
        if n == 1:
            return 0 if self.health.acquire(names[0]) else -1
        start = slot.next_key
        slot.next_key = (start + 1) % n
        for i in range(n):
            idx = (start + i) % n
            if self.health.acquire(names[idx]):
                return idx
        return -1

    def _no_key(self, d: Deployment, t: _Tries) -> None:
        health = self.health
        health.release(d.id)
        wait = min(health.retry_in(name) for name in d.key_names)
        exc: GatewayError
        if all(health.snapshot(name).state is CircuitState.OPEN for name in d.key_names):
            exc = e.CircuitOpenError(
                f"{d.id}: every key's circuit is open, skipped",
                provider=d.provider_name,
                retry_after=wait,
            )
        else:
            exc = e.KeysCoolingError(
                f"{d.id}: rate limited, every key is cooling down",
                provider=d.provider_name,
                retry_after=wait,
            )
        self._skip(d, t, exc)

    def _skip(self, d: Deployment, t: _Tries, exc: GatewayError) -> None:
        now = time.monotonic()
        t.run.attempts.append(_attempt(d, exc.outcome, now, exc, now))
        t.errors.append(exc)
        if self.metrics is not None:
            self.metrics.upstream_error(d.id, exc.reason)

    def _fallback(self, plan: Plan, run: Execution) -> None:
        run.fallbacks += 1
        if self.metrics is not None:
            self.metrics.fallback(plan.route.name)

    def _settle_failure(self, lease: _Lease, exc: GatewayError, deadline_hit: bool) -> None:
        """Tells the health store what this failure says about the deployment and the key."""
        health = self.health
        d = lease.d
        key = d.key_names[lease.k]
        effect = exc.health
        if deadline_hit and effect is HealthEffect.COUNT_AGAINST_DEPLOYMENT:
            # Our own deadline cut the attempt short: no verdict on the upstream.
            effect = HealthEffect.NONE
        if effect is HealthEffect.COOL_KEY:
            # The key (not the provider) is limited; the deployment's circuit is untouched.
            ra = exc.retry_after
            cool = self.policy.rate_limit_cooldown if ra is None else ra
            health.cool(key, min(cool, MAX_KEY_COOLDOWN))
            health.release(key)
            health.release(d.id)
        elif effect is HealthEffect.TRIP_KEY:
            health.record_failure(key, trip=True)
            health.release(d.id)
        elif effect is HealthEffect.COUNT_AGAINST_DEPLOYMENT:
            health.release(key)
            health.record_failure(d.id)
        else:
            health.release(key)
            health.release(d.id)
        if self.metrics is not None:
            self.metrics.upstream_error(d.id, exc.reason)

    async def _after_failure(self, t: _Tries, lease: _Lease, exc: GatewayError, tries: int) -> bool:
        """Records a failed attempt; True to try the deployment again (after any wait), False
        to move on. Raises when the request must end here (non-retryable, deadline)."""
        d = lease.d
        run = t.run
        now = time.monotonic()
        deadline_hit = now >= t.deadline - _DEADLINE_SLACK
        self._settle_failure(lease, exc, deadline_hit)
        run.attempts.append(_attempt(d, exc.outcome, lease.started, exc, now))
        t.errors.append(exc)
        if deadline_hit:
            raise t.deadline_error()
        health = self.health
        n_keys = len(d.key_names)
        # The key was at fault (limited or refused): another key of the pool may work now.
        other_key = (
            n_keys > 1
            and exc.health.key_scoped
            and any(health.retry_in(name) <= 0.0 for name in d.key_names)
        )
        if not exc.retryable:
            if other_key and tries < n_keys:
                return self._count_retry(d, run)
            if exc.fallback:
                return False
            raise exc
        if tries >= self.policy.max_attempts + n_keys - 1:
            return False
        if health.retry_in(d.id) > 0.0:
            # This failure opened the deployment's circuit.
            return False
        if other_key:
            return self._count_retry(d, run)
        delay = self.policy.delay(exc, tries)
        if delay is None:
            return False
        key_wait = min(health.retry_in(name) for name in d.key_names)
        if key_wait > delay:
            if key_wait > self.policy.max_retry_after:
                return False
            delay = key_wait
        if time.monotonic() + delay + MIN_ATTEMPT_TIME >= t.deadline:
            return False
        self._count_retry(d, run)
        # The attempt's span ends before the wait, which is on it as its retry delay.
        lease.trace(run.attempts[-1], delay)
        if delay > 0.0:
            await asyncio.sleep(delay)
        return True

    def _round_wait(
        self, t: _Tries, plan: Plan, skipped: list[Deployment], rounds: int
    ) -> float | None:
        """Seconds to wait before another pass over the candidates, or None to give up.

        Another pass happens when some candidates were skipped without a call (cooling keys,
        open circuit, at capacity), every failure so far was retryable, and the first of them
        is usable again soon enough: within ``retry.max_retry_after``, which also bounds the
        waiting between passes in all, and before the deadline. The calls a request makes are
        bounded too: ``retry.max_rounds`` times the full retry budget of every candidate. So
        a burst of rate limits that blocks every candidate at once costs a short wait, not
        the request."""
        if not skipped or not all(x.retryable for x in t.errors):
            return None
        budget = self.policy.max_rounds * self.policy.max_attempts * len(plan.candidates)
        if t.calls >= budget:
            return None
        health = self.health
        wait = min(
            max(health.retry_in(d.id), min(health.retry_in(k) for k in d.key_names))
            for d in skipped
        )
        if wait <= 0.0:
            # At capacity (no known end): a short backoff instead of spinning.
            wait = self.policy.backoff(rounds)
        wait = max(wait, MIN_ROUND_WAIT)
        limit = self.policy.max_retry_after
        if t.waited + wait > limit:
            return None
        if time.monotonic() + wait + MIN_ATTEMPT_TIME >= t.deadline:
            return None
        return wait

    def _count_retry(self, d: Deployment, run: Execution) -> bool:
        run.retries += 1
        if self.metrics is not None:
            self.metrics.retry(d.id)
        return True


class _Tries:
    """One request's way through the attempt loop: what it recorded and what failed so far."""

    __slots__ = ("calls", "deadline", "errors", "run", "waited")

    def __init__(self, run: Execution, deadline: float) -> None:
        self.run = run
        self.deadline = deadline
        self.errors: list[GatewayError] = []
        # Upstream calls made, and seconds spent waiting between passes.
        self.calls = 0
        self.waited = 0.0

    def deadline_error(self) -> GatewayError:
        errors = self.errors
        attempts = len(self.run.attempts)
        tried = "; ".join(f"{getattr(x, 'provider', '') or 'gateway'}: {x.message}" for x in errors)
        detail = f" after {attempts} attempt(s): {tried}" if errors else ""
        return e.DeadlineExceededError(
            f"The request deadline passed{detail}.", metadata={"attempts": str(attempts)}
        )

    def exhausted(self) -> GatewayError:
        """The one error for a request whose candidates all failed or were skipped."""
        errors = self.errors
        if not errors:
            return e.UpstreamConnectionError("No deployment could be tried for this model.")
        if len(errors) == 1:
            return errors[0]
        if all(isinstance(x, e.UnsupportedFeatureError) for x in errors):
            return errors[0]
        return e.all_attempts_failed(errors, self.run.attempts)


class _Slot:
    """The executor's own counters for one deployment (never written into the catalog)."""

    __slots__ = ("calls", "inflight", "next_key")

    def __init__(self) -> None:
        self.inflight = 0
        self.next_key = 0
        # Per-key UpstreamCalls for the usual full attempt budget, built once.
        self.calls: tuple[UpstreamCall, ...] | None = None


class _Lease:
    """One attempt's hold on a deployment: its key, in-flight slot, timer and record.

    Exactly one of ``succeeded``, ``failed_after_commit`` or ``abandon`` ends it (a failure
    before a commit is ended by the attempt loop), releasing the slot and telling the health
    store the outcome, so a chat call and a relayed stream are booked the same way."""

    __slots__ = (
        "_done",
        "_executor",
        "attempt",
        "call",
        "d",
        "k",
        "owns_slot",
        "slot",
        "span",
        "started",
        "timer",
    )

    def __init__(
        self,
        executor: Executor,
        d: Deployment,
        slot: _Slot,
        k: int,
        call: UpstreamCall,
        started: float,
        timer: _Timer,
    ) -> None:
        self._executor = executor
        self.d = d
        self.slot = slot
        self.k = k
        self.call = call
        self.started = started
        self.timer = timer
        # The success record of a committed stream, updated when the stream ends.
        self.attempt: types_pb2.Attempt | None = None
        # Set when the attempt loop hands the lease out; until then the loop frees the slot.
        self.owns_slot = False
        self._done = False
        # The attempt's trace span (tracing on), ended once by ``trace``.
        self.span: object = None

    def trace(self, attempt: types_pb2.Attempt | None, retry_delay: float | None = None) -> None:
        """Ends the attempt's span with its record (no-op when untraced or already ended)."""
        span = self.span
        if span is not None:
            self.span = None
            tracing = self._executor.tracing
            if tracing is not None:
                tracing.end_attempt(span, attempt, retry_delay)

    def committed(self, run: Execution) -> None:
        """The stream's first chunk is out: from here on the request belongs to this lease."""
        now = time.monotonic()
        run.deployment = self.d
        run.first_chunk_at = now
        self.attempt = _attempt(self.d, _SUCCESS, self.started, None, now)
        run.attempts.append(self.attempt)

    def succeeded(self, run: Execution) -> None:
        """A completion returned, or a stream delivered its final frame."""
        if self._end():
            return
        now = time.monotonic()
        total = now - self.started
        if self.attempt is None:
            run.deployment = self.d
            run.attempts.append(_attempt(self.d, _SUCCESS, self.started, None, now))
            # A completion's first token arrives with its last: both averages see `total`.
            ttft = total
        else:
            self.attempt.latency_ms = total * 1000.0
            ttft = (run.first_chunk_at or now) - self.started
        if self.span is not None:
            self.trace(self.attempt or run.attempts[-1])
        health = self._executor.health
        health.record_success(self.d.id, total, ttft)
        health.record_success(self.d.key_names[self.k])

    def failed_after_commit(self, exc: GatewayError) -> None:
        """A committed stream broke: its record and the health store learn why."""
        if self._end():
            return
        now = time.monotonic()
        attempt = self.attempt
        if attempt is not None:
            attempt.outcome = exc.outcome  # type: ignore[assignment]
            attempt.error_reason = exc.reason
            attempt.http_status = getattr(exc, "status", 0)
            attempt.latency_ms = (now - self.started) * 1000.0
        if self.span is not None:
            self.trace(attempt)
        self._executor._settle_failure(self, exc, now >= self.timer.deadline - _DEADLINE_SLACK)

    def abandon(self) -> None:
        """Ended without an outcome (cancelled, an adapter bug): return any probe it held."""
        if self._end():
            return
        if self.span is not None:
            self.trace(None)
        health = self._executor.health
        health.release(self.d.key_names[self.k])
        health.release(self.d.id)

    def _end(self) -> bool:
        """Stops the timer and frees the slot once; True when the lease had already ended."""
        self.timer.stop()
        if self._done:
            return True
        self._done = True
        if self.owns_slot:
            self.slot.inflight -= 1
        return False


async def _first_frame(
    d: Deployment, call: UpstreamCall, request: chat_pb2.ChatRequest
) -> tuple[Frame, AsyncIterator[Frame], types_pb2.Usage]:
    """A stream attempt: opens the upstream stream and reads up to its first content frame
    (role-only empty deltas do not commit); the open stream and the usage meter the adapter
    reports into go to the relay."""
    meter = types_pb2.Usage()
    upstream = d.provider.stream(request, dataclasses.replace(call, meter=meter))
    try:
        while True:
            frame = await anext(upstream)
            if frame.WhichOneof("frame") != "text" or frame.text.text:
                return frame, upstream, meter
    except StopAsyncIteration:
        await _close(upstream)
        raise e.UpstreamStreamError(
            f"{d.id}: the stream ended before its first chunk", provider=d.provider_name
        ) from None
    except BaseException:
        await _close(upstream)
        raise


async def _embed(
    d: Deployment, call: UpstreamCall, request: chat_pb2.EmbedRequest
) -> chat_pb2.EmbedResponse:
    """An embedding attempt; a provider without embeddings is skipped for the next candidate."""
    provider = d.provider
    if not isinstance(provider, Embedder) or Capability.EMBEDDINGS not in provider.capabilities:
        raise e.UnsupportedFeatureError(
            f"{d.id} does not serve embeddings ({d.provider.kind} provider)", param="model"
        )
    return await provider.embed(request, call)


def _chars(frame: Frame) -> int:
    """Characters a frame delivers (text, reasoning, a tool call's name and arguments)."""
    kind = frame.WhichOneof("frame")
    if kind == "text":
        return len(frame.text.text)
    if kind == "tool_call":
        return len(frame.tool_call.name) + len(frame.tool_call.arguments)
    if kind == "reasoning":
        return len(frame.reasoning.text)
    return 0


class _Timer:
    """One attempt's timeout: cancels the calling task when the upstream stays silent past
    `limit` seconds (since `last`) or the request deadline passes while it waits on it. While
    `waiting` is False (a streamed chunk is with the consumer) nothing is held against it."""

    __slots__ = (
        "_cancelling",
        "_task",
        "_watchdog",
        "deadline",
        "fired",
        "last",
        "limit",
        "waiting",
    )

    def __init__(self, watchdog: Watchdog, limit: float, deadline: float) -> None:
        # The watchdog's loop is the running one: no second lookup (core.deadlines).
        task = asyncio.current_task(watchdog.loop)
        assert task is not None
        self._task = task
        self._watchdog = watchdog
        self._cancelling = 0
        self.limit = limit
        self.deadline = deadline
        self.last = time.monotonic()
        self.waiting = True
        self.fired = False
        watchdog.add(self)

    def due(self, now: float) -> bool:
        return self.waiting and (now >= self.deadline or now - self.last >= self.limit)

    def fire(self) -> None:
        self.fired = True
        self._cancelling = self._task.cancelling()
        self._task.cancel()

    def rearm(self, limit: float) -> None:
        self.limit = limit
        self.last = time.monotonic()

    def stop(self) -> None:
        self._watchdog.discard(self)

    def expired(self) -> bool:
        """True when this timer caused the CancelledError being handled (it is then consumed);
        False when the cancellation came from outside (client gone) and must propagate."""
        self.stop()
        if not self.fired:
            return False
        return self._task.uncancel() <= self._cancelling


async def _close(upstream: AsyncIterator[Frame]) -> None:
    aclose = getattr(upstream, "aclose", None)
    if aclose is not None:
        # A broken stream's close error adds nothing to the error already being handled.
        with contextlib.suppress(Exception):
            await aclose()


def _timeout_error(d: Deployment, budget: float) -> GatewayError:
    return e.UpstreamTimeoutError(
        f"{d.id}: no response within {budget:.3g}s", provider=d.provider_name
    )


def _attempt(
    d: Deployment, outcome: int, started: float, error: GatewayError | None, ended: float
) -> types_pb2.Attempt:
    return types_pb2.Attempt(
        provider=d.provider_name,
        model=d.model,
        deployment=d.id,
        outcome=outcome,  # type: ignore[arg-type]
        http_status=getattr(error, "status", 0) if error is not None else 200,
        error_reason=error.reason if error is not None else "",
        latency_ms=(ended - started) * 1000.0,
    )
