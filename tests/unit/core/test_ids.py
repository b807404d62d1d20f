"""Request ids stay unique whatever else the process does with ``random``."""

from __future__ import annotations

import os
import random

from server.core.ids import new_request_id


def test_seeding_the_shared_random_module_does_not_repeat_ids() -> None:
    # Hypothesis seeds `random` for every example it replays; so may any library.
    random.seed(0)
    first = new_request_id()
    random.seed(0)
    assert new_request_id() != first


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, to the parent
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    parent = new_request_id()
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert len(child) == 24 and child != parent
