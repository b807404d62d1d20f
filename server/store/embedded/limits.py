"""The embedded ``RateLimiter``: per-key requests and tokens per minute, in process.

Algorithm: a token bucket with continuous refill (the virtual-scheduling form is GCRA, ITU-T
I.371; Envoy's local rate limit and Stripe's limiter are buckets of this kind). A key with a
limit of N per minute owns a bucket of capacity N that refills at N / 60 per second; a request
takes 1 from its RPM bucket and its token estimate from its TPM bucket, and is refused while
either holds less than that. So a key may burst up to N at once and then sustains N per minute;
``retry_after`` is exactly when enough capacity will have refilled. O(1) time and memory per key.

Tokens reserve before the call (estimated input + ``max_tokens``) and reconcile after it: the
unused part is given back, and usage beyond the estimate is taken as well, which may leave the
bucket below zero (a debt that delays the key's next requests as the limit says it must). A
request estimated above the whole per-minute capacity is admitted only when the bucket is full
and reserves the capacity, rather than being refused forever.

Buckets are owned by the event loop thread: ``acquire`` and ``reconcile`` never suspend, so no
lock is needed. The distributed backend runs the same algorithm in one Redis script.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from server.core.context import limit_subject
from server.core.errors import QuotaViolation, RateLimitedError

# What a refusal for concurrency tells the caller to wait: requests usually end within
# seconds, and nothing predicts which one ends first.
CONCURRENCY_RETRY_AFTER = 1.0

# Capacity that remains after rounding error is not worth a refusal.
_EPSILON = 1e-9


def rate_limited(
    key_id: str,
    rpm: int | None,
    tpm: int | None,
    reserved: int,
    rpm_wait: float,
    tpm_wait: float,
) -> RateLimitedError:
    """The refusal of a request whose RPM (``rpm_wait`` > 0) and/or TPM bucket is short:
    ``retry_after`` is when both would admit it, one ``QuotaViolation`` per exhausted limit
    (shared with the Redis limiter so both backends refuse alike)."""
    subject, who = limit_subject(key_id)
    exhausted: list[str] = []
    violations: list[QuotaViolation] = []
    if rpm_wait > 0.0:
        exhausted.append(f"{rpm} requests per minute")
        violations.append(QuotaViolation(subject, f"requests_per_minute limit of {rpm} reached"))
    if tpm_wait > 0.0:
        exhausted.append(f"{tpm} tokens per minute; this request reserves {reserved}")
        violations.append(
            QuotaViolation(
                subject,
                f"tokens_per_minute limit of {tpm} reached "
                f"(this request reserves {reserved} tokens)",
            )
        )
    wait = max(rpm_wait, tpm_wait)
    return RateLimitedError(
        f"Rate limit reached for {who} ({', '.join(exhausted)}); retry in {wait:.3g}s.",
        retry_after=wait,
        quota_violations=violations,
    )


def concurrency_limited(name: str, limit: int) -> RateLimitedError:
    """The refusal of ``enter`` when all ``limit`` slots of ``name`` are held."""
    subject, who = limit_subject(name)
    return RateLimitedError(
        f"Concurrency limit reached for {who} ({limit} requests in flight); retry when "
        "one of them ends.",
        retry_after=CONCURRENCY_RETRY_AFTER,
        quota_violations=[QuotaViolation(subject, f"max_concurrent limit of {limit} reached")],
    )


class _Bucket:
    """One limit of one key: ``level`` units available as of ``updated`` (monotonic seconds)."""

    __slots__ = ("capacity", "level", "rate", "updated")

    def __init__(self, capacity: float, window: float, now: float) -> None:
        self.capacity = capacity
        self.rate = capacity / window
        self.level = capacity
        self.updated = now

    def refill(self, now: float) -> float:
        elapsed = now - self.updated
        if elapsed > 0.0:
            level = self.level + elapsed * self.rate
            self.level = level if level < self.capacity else self.capacity
            self.updated = now
        return self.level

    def resize(self, capacity: float, window: float) -> None:
        """The key's limit changed: keep the used part, at the new refill rate."""
        used = self.capacity - self.level
        self.capacity = capacity
        self.rate = capacity / window
        self.level = capacity - used

    def wait(self, amount: float) -> float:
        """Seconds until ``amount`` is available (0 when it is now)."""
        missing = amount - self.level
        return 0.0 if missing <= _EPSILON else missing / self.rate


class MemoryRateLimiter:
    """RPM and TPM token buckets and in-flight counters per gateway key or project
    (``server.core.state.RateLimiter``)."""

    def __init__(
        self, *, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        # `window` is a minute in production; unit tests shorten it together with `clock`.
        self.window = window
        self._clock = clock
        self._rpm: dict[str, _Bucket] = {}
        self._tpm: dict[str, _Bucket] = {}
        self._in_flight: dict[str, int] = {}

    async def acquire(self, key_id: str, rpm: int | None, tpm: int | None, tokens: int) -> int:
        """Counts one request and reserves ``tokens``; returns the tokens actually reserved.

        Raises ``RateLimitedError`` (nothing taken) with ``retry_after`` = when both limits
        would admit this request, and one ``QuotaViolation`` per exhausted limit.
        """
        now = self._clock()
        rb = tb = None
        rpm_wait = tpm_wait = 0.0
        if rpm is not None:
            rb = self._bucket(self._rpm, key_id, rpm, now)
            rpm_wait = rb.wait(1.0)
        reserved = 0
        if tpm is not None:
            tb = self._bucket(self._tpm, key_id, tpm, now)
            reserved = tokens if tokens < tpm else tpm
            tpm_wait = tb.wait(float(reserved))
        if rpm_wait > 0.0 or tpm_wait > 0.0:
            raise rate_limited(key_id, rpm, tpm, reserved, rpm_wait, tpm_wait)
        if rb is not None:
            rb.level -= 1.0
        if tb is not None:
            tb.level -= reserved
        return reserved

    def reconcile(self, key_id: str, reserved: int, actual: int) -> None:
        """Replaces a reservation of ``reserved`` tokens by the ``actual`` count."""
        if reserved == actual:
            return
        tb = self._tpm.get(key_id)
        if tb is None:
            return
        tb.refill(self._clock())
        level = tb.level + (reserved - actual)
        tb.level = level if level < tb.capacity else tb.capacity

    def refund(self, key_id: str, requests: int, tokens: int) -> None:
        """Gives back ``requests`` and ``tokens`` taken by ``acquire`` (capped at capacity)."""
        now = self._clock()
        for buckets, amount in ((self._rpm, requests), (self._tpm, tokens)):
            bucket = buckets.get(key_id)
            if bucket is not None and amount:
                level = bucket.refill(now) + amount
                bucket.level = level if level < bucket.capacity else bucket.capacity

    async def enter(self, name: str, limit: int) -> None:
        """Takes one of ``limit`` concurrent slots of ``name``, or raises ``RateLimitedError``
        (nothing taken)."""
        held = self._in_flight.get(name, 0)
        if held >= limit:
            raise concurrency_limited(name, limit)
        self._in_flight[name] = held + 1

    def leave(self, name: str) -> None:
        """Gives back a slot taken by ``enter``."""
        held = self._in_flight.get(name, 0) - 1
        if held > 0:
            self._in_flight[name] = held
        else:
            self._in_flight.pop(name, None)

    def in_flight(self, name: str) -> int:
        """Concurrent slots of ``name`` held now."""
        return self._in_flight.get(name, 0)

    def available(self, key_id: str, kind: str = "tpm") -> float | None:
        """Capacity left now in a key's ``rpm`` or ``tpm`` bucket (None: never limited)."""
        bucket = (self._rpm if kind == "rpm" else self._tpm).get(key_id)
        return None if bucket is None else bucket.refill(self._clock())

    def _bucket(self, buckets: dict[str, _Bucket], key_id: str, limit: int, now: float) -> _Bucket:
        bucket = buckets.get(key_id)
        if bucket is None:
            bucket = buckets[key_id] = _Bucket(float(limit), self.window, now)
            return bucket
        if bucket.capacity != limit:
            bucket.refill(now)
            bucket.resize(float(limit), self.window)
        bucket.refill(now)
        return bucket
