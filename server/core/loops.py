"""The running event loop without a system call.

On CPython 3.11 every ``asyncio.get_running_loop()`` (and ``current_task()`` without a loop,
which makes one) calls ``getpid`` to notice a fork; a request made about six such calls (the
watchdog, the upstream client, the request log), each 0.75 us here. ``running_loop()`` asks
asyncio once per task and keeps the answer in a context variable: a task's context is its own
copy, so the answer is seen only by that task and the tasks and callbacks it starts, which run
on the same loop. The answer carries its thread: a context copied into a worker thread
(``asyncio.to_thread``), which may run a loop of its own, asks again. Python 3.12 dropped the
``getpid``; there this saves only the lookup.
"""

from __future__ import annotations

import asyncio
import threading
from contextvars import ContextVar

_get_ident = threading.get_ident
# (loop, thread id) as the first lookup in this task (or its parent) found them.
_here: ContextVar[tuple[asyncio.AbstractEventLoop, int]] = ContextVar("running_loop")


def running_loop() -> asyncio.AbstractEventLoop:
    """``asyncio.get_running_loop()``: the running loop, or RuntimeError outside one."""
    found = _here.get(None)
    if found is not None and found[1] == _get_ident():
        return found[0]
    loop = asyncio.get_running_loop()
    _here.set((loop, _get_ident()))
    return loop
