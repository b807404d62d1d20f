"""core.deadlines: asyncio.timeout's contract on one watchdog tick per loop."""

from __future__ import annotations

import asyncio
import time

import pytest

from server.core.deadlines import TICK, watchdog, within


async def test_a_block_still_waiting_after_its_time_raises_timeout_error() -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError), within(0.05):
        await asyncio.sleep(10)
    # Never early; and it was the timeout, not the sleep, that ended the block.
    assert 0.05 <= time.monotonic() - started < 5


async def test_a_block_that_finishes_in_time_is_untouched_and_unwatched() -> None:
    with within(5):
        await asyncio.sleep(0)
    assert not watchdog()._active
    await asyncio.sleep(3 * TICK)  # nothing left to fire


async def test_a_cancel_from_outside_propagates_as_a_cancel() -> None:
    async def body() -> None:
        with within(5):
            await asyncio.sleep(10)

    task = asyncio.ensure_future(body())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_nested_timeouts_each_raise_for_their_own_expiry() -> None:
    with pytest.raises(TimeoutError), within(5):
        with within(0.03):
            await asyncio.sleep(10)
        pytest.fail("the inner timeout did not raise")
    # The outer one expires on its own terms.
    with pytest.raises(TimeoutError), within(0.03):
        try:
            with within(5):
                await asyncio.sleep(10)
        except TimeoutError:
            pytest.fail("the inner timeout took the outer one's expiry")


async def test_restart_reuses_one_timeout_per_wait() -> None:
    timeout = within(0.05)
    for _ in range(5):
        with timeout.restart(0.05):
            await asyncio.sleep(0.02)  # each wait is within its own 50 ms
    with pytest.raises(TimeoutError), timeout.restart(0.02):
        await asyncio.sleep(10)
