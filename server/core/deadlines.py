"""Cheap timeouts: one watchdog tick per event loop instead of a timer per wait.

``asyncio.timeout`` and ``loop.call_later`` cost several microseconds each (a TimerHandle, a
heap push, a cancel, a reschedule); one request used to arm four or five of them and a stream
one per chunk. A ``Watchdog`` instead checks its registered items every ``TICK`` while any is
registered, and registering is a set insert. A timeout so fires up to one tick late: nothing
here needs better than that (deadlines are seconds; the tests' shortest are tenths).

``within(seconds)`` is ``asyncio.timeout``'s contract on the watchdog: the block raises
``TimeoutError`` when it has not finished in time (its own cancellation is consumed; one from
outside propagates). The executor's attempt timers and the HTTP shim's disconnect watch are
watchdog items too: anything with ``due(now)`` and ``fire()``.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import Any, Protocol

from server.core.loops import running_loop

TICK = 0.02


class Watched(Protocol):
    """Something the watchdog checks each tick; ``fire`` runs once, when ``due`` turns true."""

    def due(self, now: float) -> bool: ...

    def fire(self) -> None: ...


class Watchdog:
    """Checks every registered item of one event loop each ``TICK`` seconds (module doc)."""

    __slots__ = ("_active", "_handle", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._active: set[Watched] = set()
        self._handle: asyncio.TimerHandle | None = None

    def add(self, item: Watched) -> None:
        """Watches ``item`` until it fires or is discarded."""
        self._active.add(item)
        if self._handle is None:
            self._handle = self.loop.call_later(TICK, self._tick)

    def discard(self, item: Watched) -> None:
        """Stops watching ``item`` (no-op when it is not watched)."""
        self._active.discard(item)

    def _tick(self) -> None:
        now = time.monotonic()
        for item in [i for i in self._active if i.due(now)]:
            self._active.discard(item)
            item.fire()
        self._handle = self.loop.call_later(TICK, self._tick) if self._active else None


_dogs: dict[asyncio.AbstractEventLoop, Watchdog] = {}


def watchdog() -> Watchdog:
    """The running loop's watchdog."""
    loop = running_loop()
    dog = _dogs.get(loop)
    if dog is None:
        for old in [old for old in _dogs if old.is_closed()]:
            del _dogs[old]
        dog = _dogs[loop] = Watchdog(loop)
    return dog


def task_and_watchdog() -> tuple[asyncio.Task[Any], Watchdog]:
    """The running task and its loop's watchdog; ``current_task`` is given the loop, or it
    would look it up again (``server.core.loops``)."""
    dog = watchdog()
    task = asyncio.current_task(dog.loop)
    assert task is not None, "needs a running task"
    return task, dog


class within:
    """``with within(seconds):`` raises TimeoutError when the block is still waiting after
    ``seconds`` (``asyncio.timeout``'s contract, at ``TICK`` precision). The same object may
    be entered again after it exits (``restart``), e.g. once per streamed chunk."""

    __slots__ = ("_cancelling", "_dog", "_fired", "_task", "when")

    def __init__(self, seconds: float) -> None:
        self._task, self._dog = task_and_watchdog()
        self._cancelling = 0
        self._fired = False
        self.when = time.monotonic() + seconds

    def restart(self, seconds: float) -> within:
        """The same timeout, counting ``seconds`` from now (enter it again)."""
        self.when = time.monotonic() + seconds
        self._fired = False
        return self

    def due(self, now: float) -> bool:
        return now >= self.when

    def fire(self) -> None:
        self._fired = True
        self._cancelling = self._task.cancelling()
        self._task.cancel()

    def __enter__(self) -> within:
        self._dog.add(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._dog.discard(self)
        if (
            self._fired
            and self._task.uncancel() <= self._cancelling
            and exc_type is asyncio.CancelledError
        ):
            raise TimeoutError from exc
