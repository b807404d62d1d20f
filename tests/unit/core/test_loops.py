"""``running_loop`` answers as ``asyncio.get_running_loop`` does, in every task and thread."""

from __future__ import annotations

import asyncio

import pytest

from server.core.loops import running_loop


def test_outside_a_loop_it_raises_as_asyncio_does() -> None:
    with pytest.raises(RuntimeError):
        running_loop()


def test_each_loop_run_one_after_another_gets_its_own() -> None:
    async def both() -> tuple[asyncio.AbstractEventLoop, asyncio.AbstractEventLoop]:
        return running_loop(), running_loop()  # the second from the task's cached answer

    first, again = asyncio.run(both())
    second, _ = asyncio.run(both())
    assert first is again
    assert first is not second


async def test_child_tasks_and_callbacks_see_the_same_loop() -> None:
    loop = running_loop()
    assert loop is asyncio.get_running_loop()

    async def in_child() -> asyncio.AbstractEventLoop:
        return running_loop()

    child = await asyncio.create_task(in_child())
    heard: list[asyncio.AbstractEventLoop] = []
    done = loop.create_future()
    loop.call_soon(lambda: (heard.append(running_loop()), done.set_result(None)))
    await done
    assert child is loop and heard == [loop]


async def test_a_worker_thread_running_its_own_loop_gets_that_loop() -> None:
    outer = running_loop()  # cached in this task's context, which to_thread copies

    def in_thread() -> tuple[asyncio.AbstractEventLoop, asyncio.AbstractEventLoop]:
        async def inner() -> tuple[asyncio.AbstractEventLoop, asyncio.AbstractEventLoop]:
            return running_loop(), asyncio.get_running_loop()

        return asyncio.run(inner())

    found, actual = await asyncio.to_thread(in_thread)
    assert found is actual and found is not outer


async def test_a_worker_thread_without_a_loop_is_refused() -> None:
    running_loop()

    def in_thread() -> None:
        with pytest.raises(RuntimeError):
            running_loop()

    await asyncio.to_thread(in_thread)
