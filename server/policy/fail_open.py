"""`limits.on_store_error: allow`: serve a request whose limits cannot be checked.

By default a shared limit store that cannot be reached fails closed: ``acquire``, ``enter``
and ``reserve`` raise ``StoreUnavailableError`` and the caller gets 503 STORE_UNAVAILABLE.
An operator who prefers availability to exact limits wraps the backend's limiter and budgets
in these: a check the store cannot answer admits the request and takes nothing, so what
the request later gives back (``reconcile``/``leave``/``settle`` of nothing) is a no-op, while
its actual spend is still added when the store answers again (``settle(name, 0, actual)``).
Each fail-open admission is counted (``admitted_unchecked``) and logged, at most once a
second per process, so the gap is visible.
"""

from __future__ import annotations

import logging
import time

from server.core.errors import StoreUnavailableError
from server.core.state import BudgetStore, RateLimiter

log = logging.getLogger(__name__)


class _Unchecked:
    """Counts and logs the admissions made without a check (shared by both wrappers)."""

    def __init__(self) -> None:
        self.admitted_unchecked = 0
        self._logged = 0.0

    def note(self, what: str, exc: StoreUnavailableError) -> None:
        self.admitted_unchecked += 1
        now = time.monotonic()
        if now - self._logged >= 1.0:
            self._logged = now
            log.warning(
                "%s not checked (%s); admitted because limits.on_store_error is allow "
                "(%d unchecked so far)",
                what,
                exc.message,
                self.admitted_unchecked,
            )


class FailOpenLimiter:
    """A ``RateLimiter`` that admits when its store is unreachable."""

    def __init__(self, inner: RateLimiter, unchecked: _Unchecked | None = None) -> None:
        self.inner = inner
        self.unchecked = unchecked or _Unchecked()
        # Names whose slot was admitted without one: their ``leave`` must not free a real one.
        self._phantom: dict[str, int] = {}

    async def acquire(self, key_id: str, rpm: int | None, tpm: int | None, tokens: int) -> int:
        try:
            return await self.inner.acquire(key_id, rpm, tpm, tokens)
        except StoreUnavailableError as exc:
            self.unchecked.note("rate limit", exc)
            return 0

    def reconcile(self, key_id: str, reserved: int, actual: int) -> None:
        self.inner.reconcile(key_id, reserved, actual)

    def refund(self, key_id: str, requests: int, tokens: int) -> None:
        self.inner.refund(key_id, requests, tokens)

    async def enter(self, name: str, limit: int) -> None:
        try:
            await self.inner.enter(name, limit)
        except StoreUnavailableError as exc:
            self.unchecked.note("concurrency limit", exc)
            self._phantom[name] = self._phantom.get(name, 0) + 1

    def leave(self, name: str) -> None:
        held = self._phantom.get(name, 0)
        if held:
            if held == 1:
                del self._phantom[name]
            else:
                self._phantom[name] = held - 1
            return
        self.inner.leave(name)


class FailOpenBudgets:
    """A ``BudgetStore`` that admits when its store is unreachable (reserves nothing)."""

    def __init__(self, inner: BudgetStore, unchecked: _Unchecked | None = None) -> None:
        self.inner = inner
        self.unchecked = unchecked or _Unchecked()

    async def reserve(self, key_id: str, limit: int, estimate: int) -> int:
        try:
            return await self.inner.reserve(key_id, limit, estimate)
        except StoreUnavailableError as exc:
            self.unchecked.note("budget", exc)
            return 0

    def settle(self, key_id: str, reserved: int, actual: int) -> None:
        self.inner.settle(key_id, reserved, actual)

    async def spent(self, key_id: str) -> int:
        return await self.inner.spent(key_id)


def fail_open(limiter: RateLimiter, budgets: BudgetStore) -> tuple[RateLimiter, BudgetStore]:
    """Both wrappers, sharing one count of unchecked admissions."""
    unchecked = _Unchecked()
    return FailOpenLimiter(limiter, unchecked), FailOpenBudgets(budgets, unchecked)
